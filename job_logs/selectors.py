from .models import LogLine


def log_lines_after(*, job_id, after: int, limit: int) -> list[LogLine]:
    return list(LogLine.objects.for_job(job_id).after(after).order_by("event_id")[:limit])
