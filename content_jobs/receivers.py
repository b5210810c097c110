"""Signal receivers: the event publisher, and the embedded worker's wake-up."""
from django.dispatch import receiver
from django_tasks.signals import task_enqueued

from . import events, worker
from .signals import job_changed


@receiver(job_changed, dispatch_uid="content_jobs.publish_job_event")
def publish_job_event(sender, event, **kwargs) -> None:
    events.publish_job_event(event)


@receiver(task_enqueued, dispatch_uid="content_jobs.wake_embedded_worker")
def wake_embedded_worker(sender, task_result, **kwargs) -> None:
    worker.wake()
