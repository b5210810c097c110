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
On PostgreSQL, where a worker's time is its round trips, the worker's loop sends four of its
statements as one (claim_and_start): the end of the job run that ended, the close of its row,
the claim of the next row and the start of that row's job.
"""
import functools

from django.db.models.signals import post_save, pre_save
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks.signals import task_enqueued
from django_tasks_db.compat import normalize_json
from django_tasks_db.models import DBTaskResult, get_date_max

from .statements import (column, columns, db, inserted, instance_from_row, prepared, row_fields, row_parts,
                         table, update_returning, update_statement)


def enqueue_row(task, *args) -> DBTaskResult:
    """The task row that `task.enqueue(*args)` stores, made as the library's backend makes it
    (its check of the task, its id, its values, the model's pre_save receivers: the library's
    sets run_after), but not stored: its INSERT goes in the statement of the change that
    enqueues it (services._create_job; statements.insert_statement). Once that is stored,
    enqueued() finishes what the library's enqueue does."""
    backend = task.get_backend()
    backend.validate_task(task)
    row = DBTaskResult(id=backend._get_id(), args_kwargs=normalize_json({"args": args, "kwargs": {}}),
                       priority=task.priority, task_path=task.module_path, queue_name=task.queue_name,
                       run_after=task.run_after, backend_name=backend.alias)
    pre_save.send(sender=DBTaskResult, instance=row, raw=False, using=db().alias, update_fields=None)
    return row


def enqueued(row: DBTaskResult) -> None:
    """The row of enqueue_row is stored: mark it so, and send post_save and task_enqueued, as
    the row's save and the library's enqueue send them (content_jobs.receivers wakes the
    workers on commit)."""
    inserted(row, row.pk)
    post_save.send(sender=DBTaskResult, instance=row, created=True, raw=False, using=db().alias,
                   update_fields=None)
    result = row.task_result
    task_enqueued.send(type(result.task.get_backend()), task_result=result)


def _status_literal(status: TaskResultStatus) -> str:
    """A task status written into a statement's text, where a parameter would be.

    The library's index of ready rows is partial (WHERE status = 'READY'), and a database can
    use a partial index only for a statement whose text implies its condition. With `status =
    %s` both databases planned the claim anew on every run, from the value bound: PostgreSQL
    kept to custom plans, because the one generic plan it could have prepared read every row
    the queue ever had (3.8 ms with 20,000 finished rows, against 0.05 ms by the index); SQLite
    re-prepared it (85 µs a claim with 5,000 finished rows, against 11 µs)."""
    assert status.value.isalpha(), status
    return f"'{status.value}'"


@functools.cache
def _claim_sql(vendor: str) -> str:
    c = functools.partial(column, DBTaskResult)
    ready = _status_literal(TaskResultStatus.READY)
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
        f"WHERE {c('status')} = {ready} AND {c('backend_name')} = %s AND ({c('run_after')} = %s OR {c('run_after')} <= %s) "
        f"ORDER BY {c('priority')} DESC, {c('run_after')} ASC, {c('enqueued_at')} ASC LIMIT 1{lock}) "
        # checked again once the row is locked (a claim that waited for it)
        f"AND {c('status')} = {ready} RETURNING {columns(DBTaskResult, names)}"
    )


def claim_next(*, worker_id: str, backend_name: str) -> DBTaskResult | None:
    """Claim the next ready task row of `backend_name` for `worker_id` (RUNNING, started now,
    the worker named last in its worker_ids), as the library's worker claims it; None when no
    row is ready. Call it inside a transaction."""
    params = _claim_params(worker_id, backend_name)
    conn = db()
    with conn.cursor() as cursor:
        cursor.execute(_claim_sql(conn.vendor), params)
        row = cursor.fetchone()
    return None if row is None else instance_from_row(DBTaskResult, row)


def _claim_params(worker_id: str, backend_name: str) -> list:
    """The parameters of _claim_sql."""
    now, latest = prepared(DBTaskResult, {"started_at": timezone.now(), "run_after": get_date_max()})
    return [TaskResultStatus.RUNNING, now, worker_id, backend_name, latest, now]


def close_successful(*, task_row: DBTaskResult) -> bool:
    """Mark a claimed task row successful, as the library's set_successful does (the run task
    returns nothing); False when it is not running any more (the reaper closed it as lost)."""
    return update_returning(DBTaskResult, **_closing(task_row.pk)) is not None


def _closing(pk) -> dict:
    """The UPDATE of close_successful, for the row `pk`."""
    return {
        "values": {"status": TaskResultStatus.SUCCESSFUL, "finished_at": timezone.now(), "return_value": None,
                   "exception_class_path": "", "traceback": ""},
        "where": {"id": pk, "status": TaskResultStatus.RUNNING},
        "returning": ("id",),
    }


# A job's run names its job by id, in the text the run's enqueue writes (str of a UUID).
_UUID_TEXT = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def claim_and_start(*, worker_id: str, backend_name: str, close: DBTaskResult | None, task_path: str,
                    job_model, start: dict, add_one: tuple[str, ...], queued: str,
                    end: tuple[str, list] | None = None):
    """On PostgreSQL, one statement for a worker's loop: write `end` (the run's end that came
    before: an UPDATE that returns, with its parameters) and close `close` (its run's row) as
    close_successful does, claim the next ready row as claim_next does, and start that row's
    job if it is a run of `task_path` naming a `job_model` row whose status is `queued`: set
    `start` (field: value) and add one to each field in `add_one`, as services.job_start's
    UPDATE does. Returns (the claimed row or None, the started job or None, the row `end`
    returned or None). A claimed run whose job it did not start (not queued any more, or named
    in another text) is left to the caller. Call it inside a transaction."""
    close_sql, closing = update_statement(DBTaskResult, **_closing(getattr(close, "pk", None)))
    end_sql, ending = end if end is not None else (None, [])
    claim = _claim_params(worker_id, backend_name)
    params = [*ending, *closing, *claim, *prepared(job_model, start), task_path, _UUID_TEXT, queued]
    conn = db()
    sql = _claim_and_start_sql(conn.vendor, close_sql, job_model, tuple(start), add_one, end_sql)
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    task_part, job_part, end_part = row_parts(row, DBTaskResult, job_model)
    claimed = None if task_part[0] is None else instance_from_row(DBTaskResult, task_part)
    job = None if job_part[0] is None else instance_from_row(job_model, job_part)
    held = None if end is None or end_part[0] is None else end_part
    return claimed, job, held


@functools.cache
def _claim_and_start_sql(vendor: str, close_sql: str, job_model, start_names: tuple, add_one: tuple,
                         end_sql: str | None = None) -> str:
    c = functools.partial(column, DBTaskResult)
    j = functools.partial(column, job_model)
    task_names, job_names = row_fields(DBTaskResult), row_fields(job_model)
    sets = [f"{j(name)} = %s" for name in start_names] + [f"{j(name)} = {j(name)} + 1" for name in add_one]
    job_id = f"claimed.{c('args_kwargs')} -> 'args' ->> 0"
    # The ended job is running and the started one queued: never the same row.
    ended = f"ended AS ({end_sql}), " if end_sql else ""
    return (
        f"WITH {ended}closed AS ({close_sql}), "
        f"claimed AS ({_claim_sql(vendor)}), "
        f"started AS (UPDATE {table(job_model)} SET {', '.join(sets)} WHERE {j('pk')} = ("
        f"SELECT CASE WHEN claimed.{c('task_path')} = %s AND jsonb_typeof(claimed.{c('args_kwargs')} -> 'args') = 'array' "
        f"AND jsonb_array_length(claimed.{c('args_kwargs')} -> 'args') = 1 AND ({job_id}) ~ %s "
        f"THEN ({job_id})::uuid END FROM claimed) AND {j('status')} = %s "
        f"RETURNING {columns(job_model, job_names)}) "
        f"SELECT {', '.join(f'claimed.{c(n)}' for n in task_names)}, {', '.join(f'started.{j(n)}' for n in job_names)}"
        f"{', ended.*' if end_sql else ''} "
        f"FROM (SELECT count(*) FROM closed) AS done LEFT JOIN claimed ON true LEFT JOIN started ON true"
        f"{' LEFT JOIN ended ON true' if end_sql else ''}"
    )
