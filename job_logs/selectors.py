from .models import LogLine


def log_lines_after(*, job_id, after: int, limit: int) -> list[LogLine]:
    return list(LogLine.objects.for_job(job_id).after(after).order_by("event_id")[:limit])


def latest_log_lines(*, job_id, limit: int) -> list[LogLine]:
    """The job's last `limit` lines, oldest first."""
    return list(reversed(LogLine.objects.for_job(job_id).order_by("-event_id")[:limit]))
