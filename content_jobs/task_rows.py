"""django-tasks-db's task rows, claimed and closed by written-out statements.

The library's worker loop builds its ORM queries anew for every task: reading the next ready
row, claiming it and closing it were 55–60% of a no-op job's time in a worker, more than the
job's own start, end and two stored events. Here the same rows move through the same states
(READY → RUNNING → SUCCESSFUL or FAILED), in the library's order (priority, then run_after,
then enqueued_at), with one statement each, built once per database (content_jobs.statements):
- a claim takes the next ready row (on PostgreSQL passing over rows that another worker is
  claiming this moment: FOR UPDATE SKIP LOCKED, as the library's get_locked does);
- a close marks the claimed row successful, unless the reaper closed it meanwhile.
A run that raised is closed by the library's own set_failed, which writes its traceback.
"""
import functools

from django.db import connection
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult, get_date_max

from .statements import column, columns, instance_from_row, prepared, row_fields, table, update_returning


@functools.cache
def _claim_sql(vendor: str) -> str:
    c = functools.partial(column, DBTaskResult)
    if vendor == "postgresql":
        added = f"{c('worker_ids')} || jsonb_build_array(%s::text)"
        lock = " FOR UPDATE SKIP LOCKED"
    else:  # SQLite: its write lock, taken when the transaction starts, keeps other claims out
        added = f"json_insert({c('worker_ids')}, '$[#]', %s)"
        lock = ""
    names = row_fields(DBTaskResult)
    return (
        f"UPDATE {table(DBTaskResult)} SET {c('status')} = %s, {c('started_at')} = %s, {c('worker_ids')} = {added} "
        f"WHERE {c('pk')} = (SELECT {c('pk')} FROM {table(DBTaskResult)} "
        f"WHERE {c('status')} = %s AND {c('backend_name')} = %s AND ({c('run_after')} = %s OR {c('run_after')} <= %s) "
        f"ORDER BY {c('priority')} DESC, {c('run_after')} ASC, {c('enqueued_at')} ASC LIMIT 1{lock}) "
        f"AND {c('status')} = %s RETURNING {columns(DBTaskResult, names)}"
    )


def claim_next(*, worker_id: str, backend_name: str) -> DBTaskResult | None:
    """Claim the next ready task row of `backend_name` for `worker_id` (RUNNING, started now,
    the worker named last in its worker_ids), as the library's worker claims it; None when no
    row is ready. Call it inside a transaction."""
    now, latest = prepared(DBTaskResult, {"started_at": timezone.now(), "run_after": get_date_max()})
    params = [
        TaskResultStatus.RUNNING, now, worker_id,
        TaskResultStatus.READY, backend_name, latest, now,
        TaskResultStatus.READY,  # checked again once the row is locked (a claim that waited for it)
    ]
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(connection.vendor), params)
        row = cursor.fetchone()
    return None if row is None else instance_from_row(DBTaskResult, row)


def close_successful(*, task_row: DBTaskResult) -> bool:
    """Mark a claimed task row successful, as the library's set_successful does (the run task
    returns nothing); False when it is not running any more (the reaper closed it as lost)."""
    return update_returning(
        DBTaskResult,
        values={"status": TaskResultStatus.SUCCESSFUL, "finished_at": timezone.now(), "return_value": None,
                "exception_class_path": "", "traceback": ""},
        where={"id": task_row.pk, "status": TaskResultStatus.RUNNING},
        returning=("id",),
    ) is not None
