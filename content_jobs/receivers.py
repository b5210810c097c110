"""Signal receivers: the event publisher, the embedded worker's wake-up, and the metrics'
totals of a deleted company's jobs."""
from django.conf import settings
from django.db import transaction
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django_tasks.signals import task_enqueued

from . import events, job_totals, services, worker
from .models import Company, ContentJob
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


@receiver(pre_delete, sender=Company, dispatch_uid="content_jobs.company_jobs_leaving")
def company_jobs_leaving(sender, instance, **kwargs) -> None:
    # Sent in the deletion's transaction, before its jobs go with it: the metrics keep counting
    # their runs (content_jobs.job_totals), and their artifact files go once it commits.
    jobs = ContentJob.objects.filter(company=instance)
    job_totals.leaving(jobs)
    services.artifacts_delete_on_commit(job_ids=list(jobs.values_list("pk", flat=True)))
