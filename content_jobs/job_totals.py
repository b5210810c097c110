"""The job figures /metrics reads from the database: jobs by status and type, finished runs'
durations by job type, and the log lines the line cap dropped.

A scrape first counts the jobs that finished since the last one into JobTotals (count_finished:
their runs' durations, and the jobs by status) and marks them counted. It then reads the totals
and, row by row, only the jobs not counted yet (the active ones and those that finished since):
a partial index holds just those, so a scrape costs the same with a million jobs kept as with
ten.

The durations and the dropped lines are counters. When a job leaves the table (a prune, a
deletion) or its run is cleared (a retry), leaving() adds what was not counted yet to the
totals and takes the job out of their count by status, in the caller's transaction, so that a
counter never goes down: Prometheus reads a counter that went down as a restart from zero, and
its rate() would then count every run again. A deletion around the services (a shell's
QuerySet.delete()) would leave its jobs in the count by status: the prune counts them anew.
"""
import sqlite3
from collections import defaultdict
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum

from .models import ContentJob, JobTotals
from .statements import db

# The histogram's bounds. JobTotals keeps its counts by bound: a bound added later would have
# none of the runs already counted (they cannot be counted again from their sums), so a change of
# the bounds starts the totals anew (a migration that empties JobTotals and marks every job not
# counted).
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)

# A scrape counts at most this many finished jobs (in transactions of COUNT_BATCH): after an
# upgrade that finds many jobs finished and not counted, the first scrapes share the work, and
# each reads the rest row by row meanwhile (as every scrape did before).
COUNT_BATCH = 2_000
COUNT_PER_SCRAPE = 20_000
# A batch's statements name each of its jobs' ids, beside at most this many values of their own.
STATEMENT_VALUES = 50


def _batch_size() -> int:
    """COUNT_BATCH, or fewer where one statement may take fewer values: SQLite built before 3.32
    takes 999 (3.32 and later 32,766), and its build may set another limit."""
    conn = db()
    limit = conn.features.max_query_params
    if conn.vendor == "sqlite":
        conn.ensure_connection()
        limit = conn.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return COUNT_BATCH if limit is None else max(1, min(COUNT_BATCH, limit - STATEMENT_VALUES))


def _empty() -> dict:
    return {"runs": 0, "seconds": 0.0, "buckets": [0] * len(DURATION_BUCKETS), "log_lines_dropped": 0,
            "jobs": {}}


def _durations(jobs: QuerySet) -> dict[str, dict]:
    """The finished runs among `jobs` by job type: how many, their seconds, and how many at or
    under each bound. One aggregate statement."""
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    bounds = {f"le_{i}": Count("id", filter=Q(duration__lte=timedelta(seconds=bound)))
              for i, bound in enumerate(DURATION_BUCKETS)}
    rows = (
        jobs.filter(status__in=ContentJob.TERMINAL, started_at__isnull=False, finished_at__isnull=False)
        .annotate(duration=duration)
        .values("job_type")
        .annotate(total=Count("id"), seconds=Sum("duration"), **bounds)
        .order_by()
    )
    totals = {}
    for row in rows:
        entry = totals[row["job_type"]] = _empty()
        entry["runs"] = row["total"]
        entry["seconds"] = row["seconds"].total_seconds() if row["seconds"] is not None else 0.0
        entry["buckets"] = [row[f"le_{i}"] for i in range(len(DURATION_BUCKETS))]
    return totals


def _by_status(jobs: QuerySet, sign: int = 1) -> dict[str, dict]:
    """`jobs` counted by job type and status (times `sign`)."""
    totals: dict[str, dict] = defaultdict(_empty)
    for row in jobs.values("job_type", "status").annotate(n=Count("id")).order_by():
        totals[row["job_type"]]["jobs"][row["status"]] = sign * row["n"]
    return totals


def _dropped(jobs: QuerySet | None) -> dict[str, dict]:
    """The log lines the line cap dropped, by job type: of `jobs`, or of every job."""
    from job_logs.models import LogCursor

    cursors = LogCursor.objects.filter(dropped__gt=0)  # the few a partial index holds
    if jobs is not None:
        cursors = cursors.filter(job__in=jobs)
    totals = {}
    for row in cursors.values("job__job_type").annotate(n=Sum("dropped")).order_by():
        entry = totals[row["job__job_type"]] = _empty()
        entry["log_lines_dropped"] = row["n"]
    return totals


def _plus(entry: dict, added: dict) -> None:
    """Add the figures of `added` to `entry` (both as _empty() makes them)."""
    entry["runs"] += added["runs"]
    entry["seconds"] += added["seconds"]
    entry["buckets"] = [a + b for a, b in zip(entry["buckets"], added["buckets"])]
    entry["log_lines_dropped"] += added["log_lines_dropped"]
    jobs = dict(entry["jobs"])
    for status, n in added["jobs"].items():
        jobs[status] = jobs.get(status, 0) + n
    entry["jobs"] = {status: n for status, n in jobs.items() if n}


def _sum(*parts: dict[str, dict]) -> dict[str, dict]:
    """Figures by job type, added up."""
    totals: dict[str, dict] = {}
    for part in parts:
        for job_type, added in part.items():
            _plus(totals.setdefault(job_type, _empty()), added)
    return totals


def _entry(row: JobTotals) -> dict:
    return {"runs": row.runs, "seconds": row.seconds,
            "buckets": [row.buckets.get(str(bound), 0) for bound in DURATION_BUCKETS],
            "log_lines_dropped": row.log_lines_dropped, "jobs": dict(row.jobs)}


def _stored() -> dict[str, dict]:
    return {row.job_type: _entry(row) for row in JobTotals.objects.order_by("job_type")}


def read() -> dict[str, dict]:
    """Every job type's figures: the totals, and the jobs not counted yet, added up. Each
    entry: "runs", "seconds", "buckets" and "log_lines_dropped" (counters), and "jobs", the
    jobs in the table by status.

    A count or a leaving commits its change to the totals with its change to the jobs, but the
    table and the totals are read by separate statements: the totals are read again after the
    table, and the whole is read again if they changed in between, so a scrape never misses
    the jobs another one counted or a prune took out, nor counts them twice."""
    for _ in range(5):
        stored = _stored()
        uncounted = ContentJob.objects.filter(counted=False)
        live = _sum(_durations(uncounted), _by_status(uncounted), _dropped(None))
        if _stored() == stored:
            break
    return _sum(stored, live)


def count_finished() -> int:
    """Count the finished jobs not counted yet into the totals (COUNT_PER_SCRAPE at most), and
    mark them counted; returns how many. Each batch is one transaction; jobs that another
    transaction holds (another scrape's batch, a prune, a retry) are passed over where the
    database can."""
    finished = ContentJob.objects.filter(counted=False, status__in=ContentJob.TERMINAL)
    counted, batch = 0, _batch_size()
    while counted < COUNT_PER_SCRAPE:
        with transaction.atomic():
            ids = list(finished.select_for_update(skip_locked=True).values_list("pk", flat=True)
                       [:min(batch, COUNT_PER_SCRAPE - counted)])
            if not ids:
                break
            jobs = ContentJob.objects.filter(pk__in=ids)
            _add(_sum(_durations(jobs), _by_status(jobs)))
            jobs.update(counted=True)
        counted += len(ids)
    return counted


def leaving(jobs: QuerySet, *, log_lines: bool = True) -> None:
    """`jobs` leave the table, or their runs are cleared: in the caller's transaction, with that
    change, lock them, add what the totals have not counted of their runs, and take the counted
    ones out of the totals' count by status. With `log_lines`, the lines their line cap dropped
    are added too (a retry keeps the job's log, so its dropped lines stay counted where they
    are)."""
    # Locked first: a scrape counting one of them meanwhile is waited for, or passes it over.
    list(jobs.select_for_update().values_list("pk", flat=True))
    _add(_sum(_durations(jobs.filter(counted=False)), _by_status(jobs.filter(counted=True), sign=-1),
              _dropped(jobs) if log_lines else {}))


def recount() -> None:
    """Count the counted jobs by status anew from the table. A deletion that went around the
    services (a shell's QuerySet.delete()) leaves its jobs in the totals' count; this puts the
    count right. It reads the whole table: the prune runs it, never a scrape."""
    with transaction.atomic():
        # The totals locked first: a scrape counting jobs meanwhile waits, or went first and is
        # read here with its jobs.
        rows = list(JobTotals.objects.select_for_update().order_by("job_type"))
        counts = _by_status(ContentJob.objects.filter(counted=True))
        for row in rows:
            jobs = counts[row.job_type]["jobs"] if row.job_type in counts else {}
            if jobs != row.jobs:
                row.jobs = jobs
                row.save(update_fields=["jobs"])


def _add(figures: dict[str, dict]) -> None:
    """Add these figures (by job type) to the job types' totals, in the caller's transaction."""
    if not figures:
        return
    # Every caller is in its transaction already: no savepoint (two more round trips).
    with transaction.atomic(savepoint=False):
        types = sorted(figures)
        JobTotals.objects.bulk_create([JobTotals(job_type=t) for t in types], ignore_conflicts=True)
        for row in JobTotals.objects.select_for_update().filter(job_type__in=types).order_by("job_type"):
            entry = _entry(row)
            _plus(entry, figures[row.job_type])
            row.runs, row.seconds, row.log_lines_dropped, row.jobs = (
                entry["runs"], entry["seconds"], entry["log_lines_dropped"], entry["jobs"])
            row.buckets = {str(bound): n for bound, n in zip(DURATION_BUCKETS, entry["buckets"])}
            row.save()
