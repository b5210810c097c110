"""Signal receivers: publish stored log lines to their job's log stream."""
from django.dispatch import receiver

from content_jobs import events
from content_jobs.signals import log_appended

from .serializers import log_payloads


@receiver(log_appended, dispatch_uid="job_logs.publish_log_lines")
def publish_log_lines(sender, job_id, lines, **kwargs) -> None:
    events.publish_log_lines(job_id=job_id, payloads=log_payloads(lines, job_id))
