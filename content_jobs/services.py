"""The only code that writes content jobs.

Every state change is checked against TRANSITIONS, stored together with its stream event, and
announced (signal, enqueue) only after the transaction commits.
"""
import hashlib
import json
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import events, job_totals, registry, statements, task_rows
from .errors import IdempotencyConflict, InvalidTransition, LeaseLost, RunLost
from .models import Company, ContentJob

S = ContentJob.Status
WORKER_LOST = "worker_lost"  # the error code of a job whose worker stopped on its last attempt

# The one transition table: from a status, the statuses a job may move to.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.DONE, S.FAILED, S.CANCELLED, S.QUEUED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELLED: frozenset({S.QUEUED}),
}


def _enqueue_run(job_id) -> None:
    """Store the job's run task in the current transaction: it commits (or rolls back) with the
    job's change, in one commit; the workers are woken after the commit (receivers.py)."""
    # Imported here: the tasks module imports the runner, which imports this module.
    from .tasks import run_content_job

    run_content_job.enqueue(str(job_id))


def _move(job: ContentJob, target: str, *, event_type: str | None = None, **fields: Any) -> ContentJob:
    """Move a locked job to `target`, save the named fields and store the event."""
    if target not in TRANSITIONS[job.status]:
        raise InvalidTransition(job.status, target)
    now = timezone.now()
    job.status = target
    job.updated_at = now
    if target in ContentJob.TERMINAL:
        job.finished_at = now
    for name, value in fields.items():
        setattr(job, name, value)
    job.event_seq += 1  # the number of the event stored below, saved with the change
    job.save(update_fields=["status", "updated_at", "finished_at", "event_seq", *fields])
    events.record_job_event(job, event_type or events.TERMINAL_BY_STATUS.get(target, events.STATUS))
    return job


def _locked(job_or_id) -> ContentJob:
    """The job, read again and row-locked."""
    return ContentJob.objects.select_for_update().get(pk=getattr(job_or_id, "pk", job_or_id))


def _lease_until():
    return timezone.now() + timedelta(seconds=settings.NEXUS_LEASE_SECONDS)


def request_fingerprint(*, job_type: str, params: Any, source_task_id: str | None) -> str:
    body = json.dumps(
        {"jobType": job_type, "params": params, "sourceTaskId": source_task_id},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def job_submit(
    *,
    company: Company,
    job_type: str,
    params: dict | None = None,
    source_task_id: str | None = None,
    idempotency_key: str | None = None,
    by=None,
) -> tuple[ContentJob, bool]:
    """Store a queued job and enqueue its run on commit; returns (job, created).

    With an idempotency key already used by this company within the idempotency window, the
    first job is returned (created is False) if the request is the same, else it is a conflict.
    """
    fingerprint = request_fingerprint(job_type=job_type, params=params, source_task_id=source_task_id)
    clean_params = registry.validate_params(job_type, params)
    if idempotency_key is None:
        return _create_job(company, job_type, clean_params, source_task_id, None, fingerprint, by), True

    window_start = timezone.now() - timedelta(seconds=settings.NEXUS_IDEMPOTENCY_SECONDS)
    for _ in range(3):
        with transaction.atomic():
            existing = (
                ContentJob.objects.select_for_update()
                .filter(company=company, idempotency_key=idempotency_key)
                .first()
            )
            if existing is not None and existing.created_at >= window_start:
                if existing.request_fingerprint != fingerprint:
                    raise IdempotencyConflict()
                return existing, False
            if existing is not None:
                # The key's window is over: it may name a new job now.
                existing.idempotency_key = None
                existing.save(update_fields=["idempotency_key"])
            try:
                with transaction.atomic():
                    job = _create_job(
                        company, job_type, clean_params, source_task_id, idempotency_key, fingerprint, by
                    )
                return job, True
            except IntegrityError:
                # A concurrent request with the same key won the insert; read its job.
                pass
    raise IdempotencyConflict()


def _create_job(company, job_type, params, source_task_id, idempotency_key, fingerprint, by) -> ContentJob:
    """Store a queued job, its run and its first event. On PostgreSQL one statement stores the
    three (outside a transaction it commits them too: one round trip, where the ORM's inserts
    in a transaction took five); elsewhere three statements in one transaction; inside a
    caller's transaction, in a savepoint. The workers are woken, then the event published,
    once they are committed."""
    # Imported here: the tasks module imports the runner, which imports this module.
    from .tasks import run_content_job

    now = timezone.now()
    job = ContentJob(
        company=company,
        job_type=job_type,
        params=params,
        source_task_id=source_task_id,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        created_by=by if getattr(by, "pk", None) else None,
        created_at=now,
        updated_at=now,
        event_seq=1,  # its first event, stored with it
    )
    run = task_rows.enqueue_row(run_content_job, str(job.pk))
    event = events.job_event(job, events.STATUS)
    # The event last: it takes the company's counter row, locked until the commit (concurrent
    # submissions of a company wait for it).
    along = [statements.insert_statement(job), statements.insert_statement(run)]
    conn = statements.db()
    if conn.vendor == "postgresql" and not conn.in_atomic_block:
        events.store_with(event, along)  # one statement, its own commit
    else:
        # In a caller's transaction, a savepoint, as before: a failed submission leaves the
        # caller's transaction usable (on PostgreSQL an error would abort it).
        with transaction.atomic():
            events.store_with(event, along)
    statements.inserted(job, job.pk)
    # The workers' wake-up, sent on commit, goes before the event's publication.
    task_rows.enqueued(run)
    events.published_on_commit(event)
    return job


@transaction.atomic(savepoint=False)
def job_start(*, job_id, worker_id: str = "") -> ContentJob | None:
    """Move a queued job to running for one more attempt, leased to `worker_id`; None if it
    is no longer queued.

    One statement moves it only if it is queued (so two workers never both start it) and
    gives back the whole job, which the run and the event need. Inside the worker's claim
    (content_jobs.worker.RunLoop) it takes no savepoint: a start that fails undoes the claim."""
    job = statements.update_returning_instance(
        ContentJob,
        values=job_start_values(worker_id=worker_id),
        where={"id": getattr(job_id, "pk", job_id), "status": S.QUEUED},
        add_one=JOB_START_ADDS,
    )
    return None if job is None else job_started(job=job)


# What a job's start writes, for a statement that starts it elsewhere (the worker's loop on
# PostgreSQL claims a run and starts its job in one: content_jobs.task_rows.claim_and_start),
# which then calls job_started with the job it started.
JOB_START_ADDS = ("attempt", "event_seq")  # a new attempt, and the event below


def job_start_values(*, worker_id: str) -> dict[str, Any]:
    now = timezone.now()
    return {"status": S.RUNNING, "started_at": now, "updated_at": now, "progress": 0.0, "stage": "",
            "worker_id": worker_id[:100], "lease_expires_at": _lease_until()}


def job_started(*, job: ContentJob) -> ContentJob:
    """Store the event of a job that a start's UPDATE moved from queued to running."""
    events.record_job_event(job, events.RUNNING)
    return job


def job_heartbeat(*, job_id, attempt: int) -> bool:
    """Renew the lease of a running attempt; False when that attempt lost the job."""
    return bool(
        ContentJob.objects.filter(pk=job_id, status=S.RUNNING, attempt=attempt).update(
            lease_expires_at=_lease_until()
        )
    )


def job_check_lease(*, job_id, attempt: int) -> None:
    """Inside a transaction: lock the job and raise LeaseLost unless `attempt` holds it.

    It runs before every log line a handler writes, so its statement is written out
    (content_jobs.statements), not built by the ORM each time (which was half the cost of
    storing a line).
    """
    pk = getattr(job_id, "pk", job_id)
    held = statements.select_locked(ContentJob, pk, ("status", "attempt"))
    if held is None or tuple(held) != (S.RUNNING, attempt):
        raise LeaseLost(pk, attempt)


def job_report_progress(
    *, job: ContentJob, progress: float, stage: str | None = None, attempt: int | None = None
) -> ContentJob:
    """Store a running job's progress (0 to 100) and stage, and publish it."""
    fields = {"progress": max(0.0, min(100.0, float(progress)))}
    if stage is not None:
        fields["stage"] = stage[:255]
    # The event is the transaction's last statement: on PostgreSQL its COMMIT goes with it.
    with transaction.atomic(), events.stored_together(commit=True):
        if attempt is None:  # not a run's write: whichever attempt runs the job now
            job = _locked(job)
            if job.status != S.RUNNING:
                return job
            attempt = job.attempt
        return _change_held(job, attempt=attempt, event_type=events.PROGRESS, **fields)


# A run's end: `savepoint=False` writes it inside the caller's transaction without a savepoint
# of its own (the worker's loop writes a run's end with its next claim, where a savepoint cost
# two more round trips to PostgreSQL); one that fails then undoes the caller's transaction.
# Its event is the last statement of its transaction: a transaction of its own commits with it
# on PostgreSQL; inside the caller's, the caller's block decides (events.stored_together).
def job_complete(*, job: ContentJob, result: dict | None, attempt: int | None = None,
                 savepoint: bool = True) -> ContentJob:
    """A running job's handler finished: done, at 100%."""
    return run_done(job, attempt, result).write(savepoint=savepoint)


def job_fail(*, job: ContentJob, code: str, message: str, attempt: int | None = None,
             savepoint: bool = True) -> ContentJob:
    """A running job failed: its handler raised, or its worker was lost for good."""
    return run_failed(job, attempt, code, message).write(savepoint=savepoint)


def job_stop_cancelled(*, job: ContentJob, attempt: int | None = None, savepoint: bool = True) -> ContentJob:
    """A running job's handler stopped at a checkpoint after cancellation was requested."""
    return run_cancelled(job, attempt).write(savepoint=savepoint)


def run_done(job: ContentJob, attempt: int | None, result: dict | None) -> "RunEnd":
    return RunEnd(job, S.DONE, attempt, progress=100.0, result=result, error=None, lease_expires_at=None)


def run_failed(job: ContentJob, attempt: int | None, code: str, message: str) -> "RunEnd":
    return RunEnd(job, S.FAILED, attempt, error={"code": code, "message": message[:1000]}, lease_expires_at=None)


def run_cancelled(job: ContentJob, attempt: int | None) -> "RunEnd":
    return RunEnd(job, S.CANCELLED, attempt, error=None, lease_expires_at=None)


class RunEnd:
    """A running job's end (done, failed or cancelled) still to write. write() writes it; on
    PostgreSQL the worker's loop writes a run's end as a part of the statement that claims and
    starts its next job (content_jobs.task_rows.claim_and_start) instead: statement() is the
    end's UPDATE, and finish() takes what it returned."""

    def __init__(self, job: ContentJob, target: str, attempt: int | None, **fields: Any):
        self.job, self.target, self.attempt, self.fields = job, target, attempt, fields
        self._written: dict | None = None

    def write(self, *, savepoint: bool = True) -> ContentJob:
        with transaction.atomic(savepoint=savepoint), events.stored_together(commit=True):
            return _end_run(self.job, self.target, self.attempt, **self.fields)

    def statement(self) -> tuple[str, list]:
        """The end's UPDATE and its parameters (the run's attempt must be known)."""
        self._written = _ended(self.target, self.fields)
        return statements.update_statement(ContentJob, **_held_change(self.job, self.attempt, self._written))

    def finish(self, held) -> ContentJob:
        """After statement() ran: store the end's event (LeaseLost when it changed nothing)."""
        return _after_held(self.job, self.attempt, held, None, self._written)


def _end_run(job: ContentJob, target: str, attempt: int | None, **fields: Any) -> ContentJob:
    """Move a running job to its end, as the run `attempt` (or, without it, whichever attempt
    runs the job now)."""
    if attempt is None:
        job = _locked(job)
        if job.status != S.RUNNING:
            raise InvalidTransition(job.status, target)
        attempt = job.attempt
    return _change_held(job, attempt=attempt, **_ended(target, fields))


def _ended(target: str, fields: dict) -> dict:
    """What a run's end writes: its status, its time and the end's own fields."""
    return {"status": target, "finished_at": timezone.now(), **fields}


def _change_held(job: ContentJob, *, attempt: int, event_type: str | None = None, **fields: Any) -> ContentJob:
    """Change the job, which the run `attempt` holds, and store the event; LeaseLost (and no
    change) once that attempt no longer holds it.

    What a run writes (progress, its end) is one statement, moving the row only while it is
    running under that attempt, and giving back what others may have changed meanwhile (a
    cancellation request, and with it the event number); the rest of the job is the run's."""
    held = statements.update_returning(ContentJob, **_held_change(job, attempt, fields))
    return _after_held(job, attempt, held, event_type, fields)


def _held_change(job: ContentJob, attempt: int, fields: dict) -> dict:
    """_change_held's UPDATE (update_returning's arguments); sets `fields`' updated_at."""
    target = fields.get("status", S.RUNNING)
    if target != S.RUNNING and target not in TRANSITIONS[S.RUNNING]:
        raise InvalidTransition(S.RUNNING, target)
    fields["updated_at"] = fields.get("finished_at") or timezone.now()
    return {
        "values": fields,
        "where": {"id": job.pk, "status": S.RUNNING, "attempt": attempt},
        "add_one": ("event_seq",),
        "returning": ("event_seq", "cancel_requested"),
    }


def _after_held(job: ContentJob, attempt: int, held, event_type: str | None, fields: dict) -> ContentJob:
    """What _change_held does once its UPDATE gave back `held` (None: it matched no row)."""
    if held is None:
        raise LeaseLost(job.pk, attempt)
    for name, value in fields.items():
        setattr(job, name, value)
    job.event_seq, job.cancel_requested = held[0], bool(held[1])
    events.record_job_event(job, event_type or events.TERMINAL_BY_STATUS[fields.get("status", S.RUNNING)])
    return job


@transaction.atomic
def job_cancel(*, job: ContentJob, by=None) -> ContentJob:
    """Cancel a queued job at once; ask a running one to stop at its next checkpoint."""
    job = _locked(job)
    if job.status in ContentJob.TERMINAL:
        raise InvalidTransition(job.status, S.CANCELLED)
    if job.status == S.QUEUED:
        return _move(job, S.CANCELLED, lease_expires_at=None)
    if not job.cancel_requested:
        job.cancel_requested = True
        job.updated_at = timezone.now()
        job.event_seq += 1
        job.save(update_fields=["cancel_requested", "updated_at", "event_seq"])
        events.record_job_event(job, events.PROGRESS)
    return job


@transaction.atomic
def job_retry(*, job: ContentJob, by=None) -> ContentJob:
    """Queue a failed or cancelled job again; its next run is attempt + 1."""
    job = _locked(job)
    if job.status not in (S.FAILED, S.CANCELLED):
        raise InvalidTransition(job.status, S.QUEUED)
    # The finished run's times are cleared below: the metrics' totals keep its duration, and
    # the job is counted again when it finishes (its log stays, and its dropped lines are
    # counted there still).
    job_totals.leaving(ContentJob.objects.filter(pk=job.pk), log_lines=False)
    _move(
        job,
        S.QUEUED,
        counted=False,
        progress=0.0,
        stage="",
        result=None,
        error=None,
        cancel_requested=False,
        started_at=None,
        finished_at=None,
    )
    _enqueue_run(job.pk)
    return job


def job_is_cancel_requested(*, job_id) -> bool:
    return ContentJob.objects.filter(pk=job_id, cancel_requested=True).exists()


def jobs_prune(*, finished_before, batch_size: int = 500, storage=None) -> dict[str, int]:
    """Delete terminal jobs finished before a time, in batches, with their events, log lines,
    artifacts and finished task results; returns what was deleted. What the metrics counted of
    them is added to their types' totals first (content_jobs.job_totals), in the same
    transaction; at the end, the totals' count of the jobs by status is made anew from the
    table (a deletion around the services left jobs in it)."""
    from django_tasks_db.models import DBTaskResult

    from job_logs.services import logs_delete_for_jobs

    from .models import JobEvent

    counts = {"jobs": 0, "events": 0, "lines": 0, "tasks": 0}
    old = ContentJob.objects.filter(status__in=ContentJob.TERMINAL, finished_at__lt=finished_before)
    while True:
        with transaction.atomic():
            # Found in the transaction that deletes them, and locked: a retry of one of them
            # waits for the deletion, or went first (the job is queued then, and not found).
            ids = list(old.select_for_update().values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            job_totals.leaving(ContentJob.objects.filter(pk__in=ids))
            counts["events"] += JobEvent.objects.filter(job_id__in=ids).delete()[0]
            counts["lines"] += logs_delete_for_jobs(job_ids=ids)
            counts["jobs"] += ContentJob.objects.filter(pk__in=ids).delete()[1].get("content_jobs.ContentJob", 0)
        if storage is not None:
            artifacts_delete(job_ids=ids, storage=storage)
    counts["tasks"] = DBTaskResult.objects.filter(finished_at__lt=finished_before).delete()[0]
    job_totals.recount()
    return counts


@transaction.atomic
def jobs_delete(jobs) -> int:
    """Delete these jobs (the admin's deletion) with what the ORM deletes with them, and their
    artifact files once that commits; what the metrics counted of them is added to their types'
    totals first. Returns the jobs deleted."""
    job_totals.leaving(jobs)
    artifacts_delete_on_commit(job_ids=list(jobs.values_list("pk", flat=True)))
    return jobs.delete()[1].get("content_jobs.ContentJob", 0)


def artifacts_delete(*, job_ids, storage=None) -> None:
    """Delete every artifact file these jobs' runs saved: whatever their folder holds, so a
    failed run's files (its job's result lists none) go too."""
    from .runner import artifact_storage_name

    storage = storage or default_storage
    for pk in job_ids:
        try:
            _, names = storage.listdir(artifact_storage_name(pk, ""))
        except FileNotFoundError:
            continue
        for name in names:
            storage.delete(artifact_storage_name(pk, name))


def artifacts_delete_on_commit(*, job_ids) -> None:
    """artifacts_delete once the transaction that deletes the jobs commits (at once outside one)."""
    if job_ids:
        transaction.on_commit(partial(artifacts_delete, job_ids=job_ids))


def _skipping_locked(queryset):
    """The rows of `queryset`, locked, passing over those another transaction holds where the
    database can (so that reapers in every worker share the work instead of queueing)."""
    if transaction.get_connection().features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True)
    return queryset.select_for_update()


def jobs_reap(*, now=None, limit: int = 100) -> list[ContentJob]:
    """Find running jobs whose lease ran out (their worker died or hung) and queue each again
    while it has attempts left, or fail it with worker_lost; a job whose cancel was asked for
    is cancelled instead (no handler is left to stop at a checkpoint, and another attempt would
    run what the cancel meant to stop). Each change is published and logged on the job. Safe
    to run in every worker at once (SKIP LOCKED where supported)."""
    from job_logs.services import log_append

    now = now or timezone.now()
    reaped: list[ContentJob] = []
    with transaction.atomic():
        expired = ContentJob.objects.filter(status=S.RUNNING, lease_expires_at__lt=now).order_by("lease_expires_at")
        for job in _skipping_locked(expired)[:limit]:
            worker = job.worker_id or "its worker"
            if job.cancel_requested:
                log_append(
                    job_id=job.pk,
                    message=f"Attempt {job.attempt} lost: {worker} stopped renewing its lease. "
                    "Cancelled, as was asked.",
                    severity="warning",
                )
                # worker_id cleared: runs_reap then closes the lost run as lost, not as ended.
                _move(job, S.CANCELLED, lease_expires_at=None, worker_id="")
            elif job.attempt < settings.NEXUS_MAX_ATTEMPTS:
                log_append(
                    job_id=job.pk,
                    message=f"Attempt {job.attempt} lost: {worker} stopped renewing its lease. "
                    f"Queued again (attempt {job.attempt + 1} of at most {settings.NEXUS_MAX_ATTEMPTS}).",
                    severity="warning",
                )
                # As a retry: the lost attempt's start and progress are not the queued job's.
                _move(job, S.QUEUED, event_type=events.STATUS, lease_expires_at=None, worker_id="",
                      started_at=None, progress=0.0, stage="")
                _enqueue_run(job.pk)
            else:
                message = (
                    f"Attempt {job.attempt} lost: {worker} stopped renewing its lease, "
                    f"and the job has used all {settings.NEXUS_MAX_ATTEMPTS} attempts."
                )
                log_append(job_id=job.pk, message=message, severity="error")
                _move(job, S.FAILED, error={"code": WORKER_LOST, "message": message}, lease_expires_at=None)
            reaped.append(job)
    return reaped


def _claims_before(when):
    """The job runs claimed before `when` and still running, oldest first, locked as
    _skipping_locked locks (read by the index of running rows: migration 0004). Call it
    inside a transaction."""
    from django_tasks_db.models import DBTaskResult

    from .tasks import run_content_job

    runs = DBTaskResult.objects.running().filter(task_path=run_content_job.module_path, started_at__lt=when)
    return _skipping_locked(runs.order_by("started_at"))


def runs_reap(*, now=None, limit: int = 100) -> list[ContentJob]:
    """Close the task rows of runs whose worker is gone, which django-tasks-db would leave
    running for ever: the run of an attempt that jobs_reap took back, a run whose worker died
    after the job ended, and a run that its worker claimed and died before it started the job.
    A run whose job its worker ended (done, failed or cancelled, not reaped) is closed as the
    worker would have closed it, successful; the others as failed (RunLost). A job still queued
    with nothing left to run it gets a new run (and a log line). A claim younger than a lease is
    left alone: its worker may be starting the job this moment. Returns the jobs given a new
    run; run it after jobs_reap."""
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    from job_logs.services import log_append

    now = now or timezone.now()
    claimed_before = now - timedelta(seconds=settings.NEXUS_LEASE_SECONDS)
    requeued: list[ContentJob] = []
    with transaction.atomic():
        for run in _claims_before(claimed_before)[:limit]:
            job_id = run.args_kwargs["args"][0]
            worker = run.worker_ids[-1] if run.worker_ids else "its worker"
            job = ContentJob.objects.select_for_update().filter(pk=job_id).first()
            if job is not None and job.worker_id == worker:
                if job.status == S.RUNNING:
                    continue  # its worker holds the job: the lease says whether it lives
                if job.is_terminal and (job.error or {}).get("code") != WORKER_LOST:
                    task_rows.close_successful(task_row=run)  # its worker ended the job, then died
                    continue
            run.set_failed(RunLost(f"{worker} stopped before this run of job {job_id} ended"))
            if job is None or job.status != S.QUEUED:
                continue
            waiting = DBTaskResult.objects.filter(
                status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING],
                task_path=run.task_path, args_kwargs__args__0=job_id,
            ).exclude(pk=run.pk)
            if waiting.exists():
                continue  # queued again with a run of its own (jobs_reap, a retry)
            log_append(job_id=job.pk, message=f"{worker} took this job and stopped before it started it. Queued again.",
                       severity="warning")
            _enqueue_run(job.pk)
            requeued.append(job)
    return requeued
