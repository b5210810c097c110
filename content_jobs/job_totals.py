"""The counters /metrics reads from the database: finished runs' durations by job type, and the
log lines the line cap dropped.

They are read at scrape time from the jobs still in the table, plus JobTotals: what the runs
that left the table had added (fold), so that a prune, a retry or a deletion never takes a
counter down. Prometheus reads a counter that went down as a restart from zero, and its rate()
would then count every run again.
"""
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum

from .models import ContentJob, JobTotals

# The histogram's bounds. JobTotals keeps its counts by bound: a bound added later would have
# none of the runs already folded (they cannot be counted again from their sums), so a change of
# the bounds starts the folded totals anew (a migration that empties JobTotals).
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


def _empty() -> dict:
    return {"runs": 0, "seconds": 0.0, "buckets": [0] * len(DURATION_BUCKETS), "log_lines_dropped": 0}


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


def _dropped(jobs: QuerySet | None) -> dict[str, int]:
    """The log lines the line cap dropped, by job type: of `jobs`, or of every job."""
    from job_logs.models import LogCursor

    cursors = LogCursor.objects.all() if jobs is None else LogCursor.objects.filter(job__in=jobs)
    rows = cursors.values("job__job_type").annotate(n=Sum("dropped")).order_by()
    return {row["job__job_type"]: row["n"] for row in rows if row["n"]}


def _stored() -> dict[str, dict]:
    totals = {}
    for row in JobTotals.objects.order_by("job_type"):
        entry = totals[row.job_type] = _empty()
        entry["runs"], entry["seconds"] = row.runs, row.seconds
        entry["buckets"] = [row.buckets.get(str(bound), 0) for bound in DURATION_BUCKETS]
        entry["log_lines_dropped"] = row.log_lines_dropped
    return totals


def read() -> dict[str, dict]:
    """Every job type's counters: the jobs in the table and the folded totals, added up.

    A fold commits with the change that takes its runs out of the table, but the table and the
    totals are read by separate statements: the totals are read again after the table, and the
    whole is read again if they changed in between (a fold committed), so a scrape never misses
    the runs a prune took out, nor counts them twice."""
    for _ in range(5):
        stored = _stored()
        durations, dropped = _durations(ContentJob.objects.all()), _dropped(None)
        if _stored() == stored:
            break
    totals = stored
    for job_type, live in durations.items():
        entry = totals.setdefault(job_type, _empty())
        entry["runs"] += live["runs"]
        entry["seconds"] += live["seconds"]
        entry["buckets"] = [a + b for a, b in zip(entry["buckets"], live["buckets"])]
    for job_type, n in dropped.items():
        totals.setdefault(job_type, _empty())["log_lines_dropped"] += n
    return totals


def fold(jobs: QuerySet, *, log_lines: bool = True) -> None:
    """Add the finished runs of `jobs` (and, with `log_lines`, the lines their line cap dropped)
    to JobTotals, before they leave the table: in the caller's transaction, with the change that
    takes them out. A retry keeps the job's log, so its dropped lines stay counted where they are."""
    durations = _durations(jobs)
    dropped = _dropped(jobs) if log_lines else {}
    types = sorted(set(durations) | set(dropped))
    if not types:
        return
    # Every caller is in its transaction already: no savepoint (two more round trips).
    with transaction.atomic(savepoint=False):
        JobTotals.objects.bulk_create([JobTotals(job_type=t) for t in types], ignore_conflicts=True)
        for row in JobTotals.objects.select_for_update().filter(job_type__in=types).order_by("job_type"):
            added = durations.get(row.job_type)
            if added is not None:
                row.runs += added["runs"]
                row.seconds += added["seconds"]
                row.buckets = {str(bound): row.buckets.get(str(bound), 0) + n
                               for bound, n in zip(DURATION_BUCKETS, added["buckets"])}
            row.log_lines_dropped += dropped.get(row.job_type, 0)
            row.save()
