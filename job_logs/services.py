"""The only code that writes log lines."""
from functools import cache, partial

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from content_jobs.counters import increment
from content_jobs.errors import LogMessageTooLong
from content_jobs.models import ContentJob
from content_jobs.services import job_check_lease
from content_jobs.signals import log_appended
from content_jobs.statements import column, columns, db, insert_sql, prepared, table

from .models import LogCursor, LogLine

S = ContentJob.Status

TRUNCATION_MESSAGE = "Log truncated: this job reached its limit of {limit} stored lines; further lines are counted, not stored."


def _check(message: str) -> None:
    limit = settings.NEXUS_LOG_MAX_MESSAGE_BYTES
    if len(message) > limit or len(message.encode("utf-8")) > limit:
        raise LogMessageTooLong(limit)


def log_append_many(*, job_id, entries: list[tuple[str, str]], attempt: int | None = None) -> list[LogLine]:
    """Store lines (message, severity) in order as the job's next lines; publish them on commit.

    Past the job's line limit one truncation line is stored and the rest are only counted.
    A runner passes its `attempt`: once that attempt has lost the job, its lines are refused
    (content_jobs.errors.LeaseLost).
    """
    for message, _severity in entries:
        _check(message)
    conn = db()
    if attempt is not None and conn.vendor == "postgresql" and not conn.in_atomic_block:
        lines = _append_in_one_statement(job_id, entries, attempt)
        if lines is not None:
            log_appended.send(sender=LogLine, job_id=job_id, lines=lines)  # committed
            return lines
    return _append(job_id, entries, attempt)


@transaction.atomic
def _append(job_id, entries: list[tuple[str, str]], attempt: int | None) -> list[LogLine]:
    if attempt is not None:
        job_check_lease(job_id=job_id, attempt=attempt)
    # The cursor's row lock orders a job's lines: ids are handed out and committed in order.
    # One statement takes the lock and the ids in the usual case (below the line limit).
    count = len(entries)
    last = increment(LogCursor, job_id, "last_event_id", count)
    if last is None:  # the job's first lines: its cursor, unless a concurrent first chunk made it
        LogCursor.objects.bulk_create([LogCursor(job_id=job_id)], ignore_conflicts=True)
        last = increment(LogCursor, job_id, "last_event_id", count)
    limit = settings.NEXUS_LOG_MAX_LINES
    now = timezone.now()
    if last <= limit:
        lines = _numbered(job_id, entries, last - count + 1, now)
    else:
        lines = _append_at_the_limit(job_id, entries, last - count, limit, now)
    _insert(job_id, lines, now)
    if lines:  # one signal for the chunk: its lines reach each stream in one hand-off
        transaction.on_commit(partial(log_appended.send, sender=LogLine, job_id=job_id, lines=lines))
    return lines


# Rows per INSERT: 5 parameters each, well under SQLite's and PostgreSQL's parameter limits.
INSERT_ROWS = 500
LINE_FIELDS = ("job", "event_id", "message", "severity", "created_at")


def _insert(job_id, lines: list[LogLine], now) -> None:
    """Insert the lines of one job, all stamped `now`, in one statement per INSERT_ROWS.

    bulk_create prepares every field of every line through its model field: when jobs write
    lines in bursts, a fifth of the worker's time (1.9 ms for a chunk of 50 on SQLite, where
    this takes 0.7). Here the job and the time are prepared once, by their fields, and each
    line adds its number, message and severity. The lines keep no primary key (none reads it).
    """
    if not lines:
        return
    job, when = prepared(LogLine, {"job": job_id, "created_at": now})
    with db().cursor() as cursor:
        for start in range(0, len(lines), INSERT_ROWS):
            batch = lines[start:start + INSERT_ROWS]
            cursor.execute(
                insert_sql(LogLine, LINE_FIELDS, len(batch)),
                [value for line in batch for value in (job, line.event_id, line.message, line.severity, when)],
            )


def _append_in_one_statement(job_id, entries: list[tuple[str, str]], attempt: int) -> list[LogLine] | None:
    """A run's lines on PostgreSQL, in the usual case, as one statement in its own transaction:
    the lease check (the job's row locked), the line numbers and the insert. Outside a
    transaction there is no BEGIN to send: one round trip and one commit, against five round
    trips for the same work in a transaction (0.16 ms each here). None when it stored nothing:
    the attempt lost the job, the job has no cursor yet (its first lines) or the lines reach
    its line limit; the transaction path then decides, as for every other caller."""
    count = len(entries)
    if count > INSERT_ROWS:
        return None
    now = timezone.now()
    job, when = prepared(LogLine, {"job": job_id, "created_at": now})
    params = [job, S.RUNNING, attempt, count, count, settings.NEXUS_LOG_MAX_LINES, count, when]
    for number, (message, severity) in enumerate(entries, 1):
        params += [number, message, severity]
    with db().cursor() as cursor:
        cursor.execute(_one_statement_sql(count), params)
        stored = [row[0] for row in cursor.fetchall()]
    if not stored:
        return None
    return _numbered(job_id, entries, min(stored), now)


def _numbered(job_id, entries: list[tuple[str, str]], first: int, now) -> list[LogLine]:
    """The entries as the job's lines `first`, `first` + 1, ..., all stamped `now`.

    Built from values in the model's field order (id, job, event_id, message, severity,
    created_at), as Django builds the rows it reads: half the cost of keyword arguments, for
    every line a job writes."""
    return [LogLine(None, job_id, first + i, message, severity, now) for i, (message, severity) in enumerate(entries)]


@cache
def _one_statement_sql(count: int) -> str:
    job, cursor, line = ContentJob, LogCursor, LogLine
    last, owner = column(cursor, "last_event_id"), column(cursor, "job")
    rows = ", ".join(["(%s::bigint, %s::text, %s::text)"] * count)
    return (
        f"WITH held AS (SELECT {column(job, 'pk')} AS id FROM {table(job)} WHERE {column(job, 'pk')} = %s"
        f" AND {column(job, 'status')} = %s AND {column(job, 'attempt')} = %s FOR UPDATE),"
        f" numbered AS (UPDATE {table(cursor)} SET {last} = {last} + %s"
        f" WHERE {owner} = (SELECT id FROM held) AND {last} + %s <= %s RETURNING {last}, {owner} AS job)"
        f" INSERT INTO {table(line)} ({columns(line, LINE_FIELDS)})"
        f" SELECT numbered.job, numbered.{last} - %s + given.number, given.message, given.severity, %s"
        f" FROM numbered, (VALUES {rows}) AS given (number, message, severity)"
        f" RETURNING {column(line, 'event_id')}"
    )


def _append_at_the_limit(job_id, entries, previous: int, limit: int, now) -> list[LogLine]:
    """The lines that reach or pass the line limit: one truncation line is stored at the
    limit, the rest are only counted; the cursor (locked) is set to what was stored."""
    last_id, dropped, lines = previous, 0, []
    for message, severity in entries:
        if last_id > limit:
            dropped += 1
            continue
        if last_id == limit:
            message, severity = TRUNCATION_MESSAGE.format(limit=limit), LogLine.Severity.WARNING
            dropped += 1
        last_id += 1
        lines.append(LogLine(job_id=job_id, event_id=last_id, message=message, severity=severity, created_at=now))
    LogCursor.objects.filter(job_id=job_id).update(last_event_id=last_id, dropped=F("dropped") + dropped)
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
