"""The only code that writes log lines."""
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from content_jobs.errors import LogMessageTooLong
from content_jobs.services import job_check_lease
from content_jobs.signals import log_appended

from .models import LogCursor, LogLine

TRUNCATION_MESSAGE = "Log truncated: this job reached its limit of {limit} stored lines; further lines are counted, not stored."


def _check(message: str) -> None:
    limit = settings.NEXUS_LOG_MAX_MESSAGE_BYTES
    if len(message) > limit or len(message.encode("utf-8")) > limit:
        raise LogMessageTooLong(limit)


@transaction.atomic
def log_append_many(*, job_id, entries: list[tuple[str, str]], attempt: int | None = None) -> list[LogLine]:
    """Store lines (message, severity) in order as the job's next lines; publish each on commit.

    Past the job's line limit one truncation line is stored and the rest are only counted.
    A runner passes its `attempt`: once that attempt has lost the job, its lines are refused
    (content_jobs.errors.LeaseLost).
    """
    for message, _severity in entries:
        _check(message)
    if attempt is not None:
        job_check_lease(job_id=job_id, attempt=attempt)
    LogCursor.objects.get_or_create(job_id=job_id)
    # The cursor's row lock orders a job's lines: ids are handed out and committed in order.
    cursor = LogCursor.objects.select_for_update().get(job_id=job_id)
    limit = settings.NEXUS_LOG_MAX_LINES
    now = timezone.now()
    lines: list[LogLine] = []
    dropped = 0
    for message, severity in entries:
        if cursor.last_event_id > limit:
            dropped += 1
            continue
        if cursor.last_event_id == limit:
            message, severity = TRUNCATION_MESSAGE.format(limit=limit), LogLine.Severity.WARNING
            dropped += 1
        cursor.last_event_id += 1
        lines.append(
            LogLine(job_id=job_id, event_id=cursor.last_event_id, message=message, severity=severity, created_at=now)
        )
    cursor.dropped += dropped
    cursor.save(update_fields=["last_event_id", "dropped"])
    LogLine.objects.bulk_create(lines)
    for line in lines:
        transaction.on_commit(partial(log_appended.send, sender=LogLine, job_id=line.job_id, line=line))
    return lines


def log_append(
    *, job_id, message: str, severity: str = LogLine.Severity.INFO, attempt: int | None = None
) -> LogLine | None:
    """Store one line as the job's next line; None when the job's line limit dropped it."""
    lines = log_append_many(job_id=job_id, entries=[(message, severity)], attempt=attempt)
    return lines[0] if lines else None


def logs_delete_for_jobs(*, job_ids) -> int:
    """Delete every line (and cursor) of these jobs in bulk; returns the number of lines."""
    LogCursor.objects.filter(job_id__in=job_ids).delete()
    return LogLine.objects.filter(job_id__in=job_ids).delete()[0]
