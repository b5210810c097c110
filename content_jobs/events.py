"""The only module that names stream channels and publishes stream events.

A job change is stored as a JobEvent in the same transaction as the change (so a committed
change always has its event, and a rolled-back one never does); the domain signal that carries
it to subscribers is sent on commit.
"""
import json
import threading
from contextlib import contextmanager
from functools import partial

from django.db import transaction
from django.utils import timezone

from .counters import insert_numbered
from .models import Company, ContentJob, JobEvent
from .representation import job_representation
from .signals import job_changed
from .statements import db

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
    Inside stored_together() the event is stored at the block's end.
    """
    event = job_event(job, event_type)
    waiting = getattr(_together, "events", None)
    if waiting is not None and _savepoints() == _together.savepoints:
        waiting.append(event)
    else:
        # The company's counter row stays locked until commit, and every worker's events take
        # it: it is taken last, with everything else ready, by the statement that stores the event.
        _store([event])
    published_on_commit(event)
    return event


def job_event(job: ContentJob, event_type: str) -> JobEvent:
    """The job's current state as its next stream event (numbered `job.event_seq`), not stored."""
    data = encode(job_representation(job))
    # Built from values in the model's field order (id, job, company, seq, company_seq, type,
    # data, created_at), as Django builds the rows it reads: keyword arguments cost twice as
    # much, on every event. company_seq is handed out where the event is stored.
    return JobEvent(None, job.pk, job.company_id, job.event_seq, None, event_type, data, timezone.now())


def store_with(event: JobEvent, along: list[tuple[str, list]]) -> None:
    """Store the event with the rows of the statements `along` (INSERTs that return nothing),
    which go first: on PostgreSQL one statement stores them all, and outside a transaction that
    is its commit too (a submission: the job, its run and its event in one round trip). Then
    publish it with published_on_commit."""
    _store([event], along)


def published_on_commit(event: JobEvent) -> None:
    """Publish a stored event once its transaction commits (at once outside one)."""
    transaction.on_commit(
        partial(job_changed.send, sender=ContentJob, job_id=event.job_id, company_id=event.company_id, event=event)
    )


_together = threading.local()  # this thread's stored_together() block: its events, the savepoints at its start


@contextmanager
def stored_together(*, commit: bool = False):
    """Store the job events recorded in this block at its end, one statement for a company's
    events, instead of each where it is recorded. Use it as the last thing inside a transaction:
    the company's counter row, which each stored event takes and which stays locked until
    commit, is then held only from the block's end to the commit, not across the writes
    between (the worker's loop: a run's end, its row's close, the next claim and that job's
    start), and a run's end and the next job's start store their events together. Companies'
    counters are taken in the order of their ids, so two such blocks never wait on each
    other's. An event recorded inside a savepoint taken within the block is stored at once
    (a rolled-back savepoint undoes it); blocks nested in a block are part of it.

    commit=True: the block ends its transaction, an outermost atomic block (`with
    transaction.atomic(), stored_together(commit=True)`). On PostgreSQL the COMMIT then goes
    with the statement of the last company's events, in its round trip (the database backend's
    commit_with_next); the atomic block's commit finds it done and runs its on_commit."""
    if getattr(_together, "events", None) is not None:
        yield
        return
    waiting: list[JobEvent] = []
    _together.events, _together.savepoints = waiting, _savepoints()
    try:
        yield
    finally:
        _together.events = None
    by_company: dict = {}
    for event in waiting:
        by_company.setdefault(event.company_id, []).append(event)
    companies = sorted(by_company)
    for company_id in companies:
        if commit and company_id == companies[-1] and hasattr(db(), "commit_with_next"):
            db().commit_with_next()  # PostgreSQL's backend (nexus_site.postgresql)
        _store(by_company[company_id])


def _savepoints() -> list:
    """The savepoints taken now (an atomic block without one counts as None there)."""
    return [sid for sid in db().savepoint_ids if sid is not None]


def _store(events: list[JobEvent], along: list[tuple[str, list]] = ()) -> None:
    """Store one company's events, in order, numbered by its counter (with the statements
    `along`: counters.insert_numbered)."""
    insert_numbered(events, EVENT_FIELDS, number="company_seq", counter=Company, counter_pk=events[0].company_id,
                    counter_field="event_seq", along=along)


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
