"""Signal receivers: the event publisher, and the embedded worker's wake-up."""
from django.conf import settings
from django.db import transaction
from django.dispatch import receiver
from django_tasks.signals import task_enqueued

from . import events, worker
from .signals import job_changed


@receiver(job_changed, dispatch_uid="content_jobs.publish_job_event")
def publish_job_event(sender, event, **kwargs) -> None:
    events.publish_job_event(event)


@receiver(task_enqueued, dispatch_uid="content_jobs.wake_workers")
def wake_workers(sender, task_result, **kwargs) -> None:
    # A run is enqueued in the transaction of the job's change: wake the workers once it is
    # committed (at once outside a transaction), so that they find it.
    transaction.on_commit(_wake_workers)


def _wake_workers() -> None:
    # This process's worker, at once; when it was not sleeping (or there is none here), one
    # sleeping in any process.
    if not worker.wake() and settings.REDIS_URL:
        from .stream_hub import hub

        hub.wake_workers()
