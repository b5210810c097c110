"""The only module that names stream channels and publishes stream events.

A job change is stored as a JobEvent in the same transaction as the change (so a committed
change always has its event, and a rolled-back one never does); the domain signal that carries
it to subscribers is sent on commit.
"""
import json
from functools import partial

from django.db import transaction
from django.utils import timezone

from .counters import insert_numbered
from .models import Company, ContentJob, JobEvent
from .representation import job_representation
from .signals import job_changed

STATUS = "content_job.status"
RUNNING = "content_job.running"
PROGRESS = "content_job.progress"
TERMINAL_BY_STATUS = {
    ContentJob.Status.DONE: "content_job.done",
    ContentJob.Status.FAILED: "content_job.failed",
    ContentJob.Status.CANCELLED: "content_job.cancelled",
}


# One encoder for every event: json.dumps with these options builds a new one per call, a
# quarter of the cost of encoding a log line's payload.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(data) -> str:
    return _ENCODER.encode(data)


EVENT_FIELDS = ("job", "company", "seq", "type", "data", "created_at")  # and company_seq, numbered


def record_job_event(job: ContentJob, event_type: str) -> JobEvent:
    """Store the job's current state as its next stream event; publish it after commit.

    The caller has numbered this event in `job.event_seq` and saved that with the job's change,
    holding the job's row lock (select_for_update), which orders a job's events; the company's
    counter, added to here, orders the company's events (its row stays locked until commit).
    """
    data = encode(job_representation(job))
    event = JobEvent(
        job_id=job.pk,
        company_id=job.company_id,
        seq=job.event_seq,
        type=event_type,
        data=data,
        created_at=timezone.now(),
    )
    # The company's counter row stays locked until commit, and every worker's events take it:
    # it is taken last, with everything else ready, by the statement that stores the event.
    insert_numbered(event, EVENT_FIELDS, number="company_seq", counter=Company, counter_pk=job.company_id,
                    counter_field="event_seq")
    transaction.on_commit(
        partial(job_changed.send, sender=ContentJob, job_id=job.pk, company_id=job.company_id, event=event)
    )
    return event


# Channels and groups -----------------------------------------------------------------------
# django-eventstream channels (the ids of a stream are numbered per channel) and the channel
# layer groups that carry them between processes.
JOB_CHANNEL = "job"
COMPANY_CHANNEL = "company"
LOG_CHANNEL = "joblog"


def job_channel(job_id) -> str:
    return f"{JOB_CHANNEL}-{job_id}"


def company_channel(company_id) -> str:
    return f"{COMPANY_CHANNEL}-{company_id}"


def log_channel(job_id) -> str:
    return f"{LOG_CHANNEL}-{job_id}"


def job_group(job_id) -> str:
    return f"job.{job_id}"


def company_group(company_id) -> str:
    return f"company.{company_id}"


# The channel-layer message of a stream event (content_jobs.stream_hub hands it to the streams).
MESSAGE_TYPE = "nexus.event"


def _message(channel: str, event_type: str | None, event_id: int, data: str) -> dict:
    return {"type": MESSAGE_TYPE, "channel": channel, "event": event_type, "id": event_id, "data": data}


def publish_job_event(event: JobEvent) -> None:
    """Push a stored job event to the job's and the company's subscribers, in every process."""
    from .stream_hub import hub

    hub.publish(job_group(event.job_id), _message(job_channel(event.job_id), event.type, event.seq, event.data))
    hub.publish(
        company_group(event.company_id),
        _message(company_channel(event.company_id), event.type, event.company_seq, event.data),
    )


def publish_log_lines(*, job_id, payloads: list[dict]) -> None:
    """Push stored log lines (their payloads, in order) to the job's log subscribers, in every
    process."""
    from .stream_hub import hub

    channel = log_channel(job_id)
    hub.publish_many(job_group(job_id), [_message(channel, None, p["event_id"], encode({"log": p})) for p in payloads])
