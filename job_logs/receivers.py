"""Signal receivers: publish each stored log line to its job's log stream."""
from django.dispatch import receiver

from content_jobs import events
from content_jobs.signals import log_appended

from .serializers import log_payload


@receiver(log_appended, dispatch_uid="job_logs.publish_log_line")
def publish_log_line(sender, job_id, line, **kwargs) -> None:
    events.publish_log_line(job_id=job_id, event_id=line.event_id, payload=log_payload(line, job_id))
