"""The only module that names stream channels and publishes stream events.

A job change is stored as a JobEvent in the same transaction as the change (so a committed
change always has its event, and a rolled-back one never does); the domain signal that carries
it to subscribers is sent on commit.
"""
import json
from functools import partial

from django.db import transaction
from django.utils import timezone

from .models import ContentJob, JobEvent
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


def encode(data) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def record_job_event(job: ContentJob, event_type: str) -> JobEvent:
    """Store the job's current state as its next stream event; publish it after commit.

    The caller holds the job's row lock (select_for_update), which orders a job's events.
    """
    job.event_seq += 1
    ContentJob.objects.filter(pk=job.pk).update(event_seq=job.event_seq)
    event = JobEvent.objects.create(
        job_id=job.pk,
        company_id=job.company_id,
        seq=job.event_seq,
        type=event_type,
        data=encode(job_representation(job)),
        created_at=timezone.now(),
    )
    transaction.on_commit(
        partial(job_changed.send, sender=ContentJob, job_id=job.pk, company_id=job.company_id, event=event)
    )
    return event
