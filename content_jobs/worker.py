"""The task worker: inside the server process (the embedded default) or as a worker process.

It runs django-tasks-db's task rows from a thread, in the library's batch mode ("run what is
ready, then return"): the library's Worker, its loop's claim and close written out (RunLoop,
below; content_jobs.task_rows), claiming as the library does (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, the write lock on SQLite). The library's loop installs signal handlers, which only
a main thread may do, so this thread never calls that part; between batches it sleeps on an
event that a submission in this process sets, so a new job starts at once, and looks again
every NEXUS_WORKER_POLL_SECONDS for tasks it was not told about (run_after, a lost wake-up).
At scale, a submission in any process wakes one sleeping worker through the channel layer
(content_jobs.stream_hub): a worker takes wake-ups while it sleeps, and not while it runs a job.

Beside it runs the reaper: every NEXUS_HEARTBEAT_SECONDS it gives back or fails the jobs whose
worker stopped renewing their lease (content_jobs.services.jobs_reap), then closes the task rows
of runs whose worker is gone and runs again a job whose run was lost before it started
(content_jobs.services.runs_reap).
"""
import logging
import threading
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import OperationalError, close_old_connections, connections, transaction
from django.utils.crypto import get_random_string
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import is_locked_database_exception

from . import events, runner, services, task_rows
from .errors import LeaseLost
from .models import ContentJob
from .statements import db
from .tasks import run_content_job

logger = logging.getLogger(__name__)


def _job_id(row: DBTaskResult | None) -> uuid.UUID | None:
    """The id of the job that `row` runs; None for a row of another task, or for a job's run in
    a shape that no job takes (the library's run_task runs those, and fails them with their
    traceback, instead of this loop claiming them again and again)."""
    if row is None or row.task_path != run_content_job.module_path:
        return None
    try:
        (job_id,) = row.args_kwargs["args"]
        return uuid.UUID(job_id)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class RunLoop(Worker):
    """django-tasks-db's Worker in batch mode, its loop's statements written out.

    A job's run is claimed and its job started in one transaction, which also writes the end
    of the job run before it and closes that run's row: a busy worker commits once a job,
    where the library's loop and the run task made four commits; on PostgreSQL the end of the
    job run before, the close of its row, the claim and the start are one statement
    (task_rows.claim_and_start), which the BEGIN goes with, and the events go with the COMMIT
    (nexus_site.postgresql): a busy worker's job is two round trips. A job is ended as soon as its
    handler returns, whether or not a next run is waiting; if that transaction fails, the end
    is written alone, and its row closed, before the claim is tried again (an end refused
    because another attempt holds the job closes its row as failed). The events of both jobs
    are stored together at the transaction's end (content_jobs.events.stored_together), so the
    company's event counter, which every worker's events take, is locked from there to the
    commit only. Rows of other tasks run through the library's run_task. A job's run does not
    send django-tasks' task_started and task_finished signals, which only log here; the job's
    own events and log say more."""

    on_busy: Callable[[], None] | None = None  # called when a claimed task is about to run

    def run(self) -> None:
        ended: DBTaskResult | None = None  # the last run's row, closed in the next claim's transaction
        end: runner.HeldEnd | None = None  # the last run's end, written there too
        while self.running:
            try:
                with transaction.atomic(), events.stored_together(commit=True):
                    row, job = self._claim(ended, end)
                    job_id = _job_id(row)
                    if job is None and job_id is not None:
                        job = runner.start_job(job_id, worker_id=self.worker_id)
            except Exception as exc:
                if isinstance(exc, OperationalError) and is_locked_database_exception(exc):
                    time.sleep(self.interval)  # another process holds SQLite's write lock: try again shortly
                    continue
                if end is None:
                    raise
                if isinstance(exc, LeaseLost):  # the end was refused: another attempt holds the job
                    ended.set_failed(exc)
                else:
                    self._end_alone(ended, end)
                ended = end = None
                continue
            ended = end = None
            if row is None:
                return
            if self.on_busy is not None:
                self.on_busy()
            if job_id is None:
                self.run_task(row)
                continue
            ended, end = self._run(row, job)
        if end is not None:
            self._end_alone(ended, end)
        elif ended is not None:
            with transaction.atomic():
                task_rows.close_successful(task_row=ended)

    def _claim(self, ended: DBTaskResult | None, end: runner.HeldEnd | None
               ) -> tuple[DBTaskResult | None, ContentJob | None]:
        """Write the end of the run that ended, close its row, claim the next ready row and, on
        PostgreSQL, start its job: one statement there (where they were four of a busy worker's
        seven round trips a job); elsewhere three statements, and the caller starts the job."""
        if db().vendor == "postgresql":
            row, job, held = task_rows.claim_and_start(
                worker_id=self.worker_id, backend_name=self.backend_name, close=ended,
                task_path=run_content_job.module_path, job_model=ContentJob,
                start=services.job_start_values(worker_id=self.worker_id), add_one=services.JOB_START_ADDS,
                queued=ContentJob.Status.QUEUED, end=None if end is None else end.statement(),
            )
            if end is not None:
                end.finish(held)  # LeaseLost when another attempt holds the ended job: all undone
            return row, None if job is None else services.job_started(job=job)
        if end is not None:
            end()
        if ended is not None:
            task_rows.close_successful(task_row=ended)
        return task_rows.claim_next(worker_id=self.worker_id, backend_name=self.backend_name), None

    def _run(self, row: DBTaskResult, job: ContentJob | None) -> tuple[DBTaskResult | None, runner.HeldEnd | None]:
        """Run the started job's handler (None: nothing to run); the row to close as successful
        and the job's end still to write, or (None, None) once the row is closed as failed (a
        run that lost its lease, content_jobs.errors.LeaseLost)."""
        self.running_task = True
        try:
            return row, None if job is None else runner.run_handler(job)
        except BaseException as exc:
            row.set_failed(exc)
            return None, None
        finally:
            self.running_task = False
            self._run_tasks += 1
            close_old_connections()

    @staticmethod
    def _end_alone(row: DBTaskResult, end: runner.HeldEnd) -> None:
        """Write a run's end and close its row as successful, in a transaction of their own; the
        row closed as failed instead when that fails (a run that lost its lease)."""
        try:
            with transaction.atomic(), events.stored_together(commit=True):
                end()
                task_rows.close_successful(task_row=row)
        except BaseException as exc:
            row.set_failed(exc)


class EmbeddedWorker:
    def __init__(self, *, poll_seconds: float | None = None, worker_id: str | None = None):
        self.poll_seconds = settings.NEXUS_WORKER_POLL_SECONDS if poll_seconds is None else poll_seconds
        self.worker_id = worker_id or f"embedded-{get_random_string(12)}"
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._reaper: threading.Thread | None = None
        self._batch: Worker | None = None
        self._hub = None  # at scale: the process's stream hub, which brings the wake-ups
        self._sleeping = False  # between batches, and no wake-up has come since
        self._sleep_lock = threading.Lock()

    def start(self, *, reaper: bool = True) -> "EmbeddedWorker":
        if settings.REDIS_URL:
            from .stream_hub import hub

            self._hub = hub
        self._thread = threading.Thread(target=self._loop, name="nexus-worker", daemon=True)
        self._thread.start()
        if reaper:
            self._reaper = threading.Thread(target=self._reap_loop, name="nexus-reaper", daemon=True)
            self._reaper.start()
        logger.info("worker %s started", self.worker_id)
        return self

    @property
    def busy(self) -> bool:
        batch = self._batch
        return batch is not None and batch.running_task

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> bool:
        """Wake it; whether it was sleeping (and so will look for the task at once, where a
        busy worker would only after its job)."""
        with self._sleep_lock:
            sleeping, self._sleeping = self._sleeping, False
            self._wake.set()
        return sleeping

    def _busy(self) -> None:
        self._hub.worker_busy(self.wake)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Take no new task; let a running one finish (up to `timeout` seconds)."""
        self._stopping.set()
        if self._hub is not None:
            self._hub.worker_busy(self.wake)  # a stopping worker takes no wake-up meant for another
        batch = self._batch
        if batch is not None:
            batch.running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._reaper is not None:
            self._reaper.join(5)
        logger.info("worker %s stopped%s", self.worker_id, " (a job was still running)" if self.alive() else "")

    def _reap_loop(self) -> None:
        try:
            while not self._stopping.wait(settings.NEXUS_HEARTBEAT_SECONDS):
                try:
                    reaped = services.jobs_reap()
                    if reaped:
                        logger.warning("reaped %d job(s) whose worker was lost", len(reaped))
                    requeued = services.runs_reap()
                    if requeued:
                        logger.warning("queued %d job(s) again whose run was lost before it started", len(requeued))
                except Exception:
                    logger.warning("reaper pass failed", exc_info=True)
                finally:
                    connections.close_all()  # a pass every few seconds holds no connection between
        finally:
            connections.close_all()

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                self._batch = RunLoop(
                    queue_names=["*"],
                    interval=0.02,
                    batch=True,
                    backend_name="default",
                    startup_delay=False,
                    max_tasks=None,
                    worker_id=self.worker_id,
                    excluded_queue_names=[],
                )
                if self._hub is not None:
                    self._batch.on_busy = self._busy
                try:
                    self._batch.run()
                except Exception:
                    logger.exception("embedded worker batch failed; retrying")
                    self._stopping.wait(1.0)
                finally:
                    self._batch = None
                    close_old_connections()
                with self._sleep_lock:
                    self._sleeping = not self._wake.is_set()
                if self._hub is not None and not self._stopping.is_set():
                    self._hub.worker_idle(self.wake)
                self._wake.wait(self.poll_seconds)
                with self._sleep_lock:
                    self._sleeping = False
        finally:
            connections.close_all()


_current: EmbeddedWorker | None = None


def start_embedded(**kwargs) -> EmbeddedWorker:
    global _current
    _current = EmbeddedWorker(**kwargs).start()
    return _current


def stop_embedded(timeout: float | None = 30.0) -> None:
    global _current
    if _current is not None:
        _current.stop(timeout)
        _current = None


def wake() -> bool:
    """Wake this process's worker; whether it was sleeping (False: there is none, or it is busy)."""
    return _current is not None and _current.wake()
