"""Signal receivers: wake the embedded worker when a run task is enqueued."""
from django.dispatch import receiver
from django_tasks.signals import task_enqueued

from . import worker


@receiver(task_enqueued, dispatch_uid="content_jobs.wake_embedded_worker")
def wake_embedded_worker(sender, task_result, **kwargs) -> None:
    worker.wake()
