"""Runs one job: the context a handler reports through, and the outcome of its run."""
import json
import logging
import re
import threading
import time
import traceback
from collections.abc import Callable
from functools import partial

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from job_logs.services import log_append, log_append_many

from . import registry, services
from .errors import LeaseLost
from .metrics import PROGRESS_COALESCED
from .models import ContentJob
from .parsers import holds_nul
from .representation import artifact_path

logger = logging.getLogger(__name__)

ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class JobCancelled(Exception):
    """Raised by check_cancelled(): the handler stops here and the job becomes cancelled."""


class JobFailed(Exception):
    """Raise from a handler to fail the job with a chosen error code and message."""

    def __init__(self, message: str, *, code: str = "job_failed"):
        super().__init__(message)
        self.code = code
        self.message = message


def artifact_storage_name(job_id, name: str) -> str:
    return f"artifacts/{job_id}/{name}"


class JobContext:
    """What a handler receives: the job's params and the calls to report through.

    Progress is coalesced: at most NEXUS_PROGRESS_EVENTS_PER_SECOND writes a second per job, the
    latest value always written (a timer writes a value that no later call carries out; a job
    that fails or is cancelled writes a waiting value before it ends; a job that is done says
    100 in its done event, which supersedes a waiting value). A stage change is written at once;
    log lines are never coalesced.
    """

    RETRY_SECONDS = 1.0  # the timer's next try after a write that failed

    def __init__(self, job: ContentJob):
        self.job = job
        self.job_id = job.pk
        # The fencing token: every write of this run names its attempt, and is refused once
        # the attempt no longer holds the job.
        self.attempt = job.attempt
        self.lease_lost = False
        self.params = job.params
        self.artifacts: list[dict] = []
        rate = settings.NEXUS_PROGRESS_EVENTS_PER_SECOND
        self._min_interval = 1.0 / rate if rate > 0 else 0.0
        self._lock = threading.Lock()
        self._last_write = 0.0
        self._pending: tuple[float, str | None] | None = None
        self._timer: threading.Timer | None = None
        self._timer_generation = 0
        self._stage = job.stage

    # Progress ---------------------------------------------------------------------------
    def progress(self, pct: float, stage: str | None = None) -> None:
        if stage is not None:
            stage = _no_nul(stage)
        with self._lock:
            stage_changed = stage is not None and stage != self._stage
            if stage is not None:
                self._stage = stage
            wait = self._min_interval - (time.monotonic() - self._last_write)
            if stage_changed or wait <= 0:
                self._drop_timer()  # this write carries the newest value: the timer has nothing to do
                self._write(pct, stage)
                return
            if self._pending is not None:
                PROGRESS_COALESCED.inc()  # the waiting value is replaced by a newer one
            self._pending = (pct, stage)
            if self._timer is None:
                self._start_timer(wait)

    def _drop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()  # too late if it fired already: its generation is stale then
            self._timer = None
            self._timer_generation += 1

    def cancel_timer(self) -> None:
        with self._lock:
            self._drop_timer()

    def flush(self) -> None:
        """Write a coalesced progress value that is still waiting."""
        with self._lock:
            self._drop_timer()
            self._write_pending()

    def discard_pending(self) -> None:
        """Drop a coalesced progress value that is still waiting: the job's done event, which
        says 100 and the current stage, supersedes it."""
        with self._lock:
            self._drop_timer()
            self._pending = None

    def _write_pending(self) -> None:
        if self._pending is not None:
            pct, stage = self._pending
            self._write(pct, stage)

    def _flush_from_timer(self, generation: int) -> None:
        try:
            with self._lock:
                if generation != self._timer_generation:
                    return  # a write since it was set carried the value
                self._timer = None
                waiting = self._pending
                try:
                    self._write_pending()
                except LeaseLost:
                    raise
                except Exception:
                    # A database hiccup: the value waits again, and the timer tries again after
                    # an interval (a call of the handler or the run's end may carry it first).
                    logger.warning("progress of job %s not written; trying again", self.job_id, exc_info=True)
                    if self._pending is None:
                        self._pending = waiting
                    self._start_timer(max(self._min_interval, self.RETRY_SECONDS))
        except LeaseLost:
            pass  # the handler's next call says so to the run
        finally:
            connection.close()  # the timer thread's own connection

    def _start_timer(self, wait: float) -> None:
        self._timer_generation += 1
        self._timer = threading.Timer(wait, self._flush_from_timer, args=(self._timer_generation,))
        self._timer.daemon = True
        self._timer.start()

    def _write(self, pct: float, stage: str | None) -> None:
        self._pending = None
        self._check_lease()
        try:
            self.job = services.job_report_progress(job=self.job, progress=pct, stage=stage, attempt=self.attempt)
        except LeaseLost:
            self.lease_lost = True
            raise
        finally:
            # Counted from the write's end: rows stamped a whole interval apart, however long
            # each write took.
            self._last_write = time.monotonic()

    def _check_lease(self) -> None:
        if self.lease_lost:
            raise LeaseLost(self.job_id, self.attempt)

    # Logs, cancellation, artifacts -------------------------------------------------------
    def log(self, message: str, severity: str = "info") -> None:
        self._check_lease()
        try:
            log_append(job_id=self.job_id, message=_no_nul(str(message)), severity=severity, attempt=self.attempt)
        except LeaseLost:
            self.lease_lost = True
            raise

    def log_lines(self, messages, severity: str = "info") -> None:
        """Store several lines in one transaction, in order (say, a chunk of a tool's output):
        one write for all of them, and subscribers get them together. Returns once stored,
        like `log`."""
        self._check_lease()
        entries = [(_no_nul(str(message)), severity) for message in messages]
        if not entries:
            return
        try:
            log_append_many(job_id=self.job_id, entries=entries, attempt=self.attempt)
        except LeaseLost:
            self.lease_lost = True
            raise

    def check_cancelled(self) -> None:
        self._check_lease()
        if services.job_is_cancel_requested(job_id=self.job_id):
            raise JobCancelled()

    def save_artifact(self, name: str, data: bytes, content_type: str) -> dict:
        if not ARTIFACT_NAME.match(name):
            raise ValueError(f"artifact name {name!r} must be a plain file name")
        storage_name = artifact_storage_name(self.job_id, name)
        if default_storage.exists(storage_name):
            default_storage.delete(storage_name)
        default_storage.save(storage_name, ContentFile(data))
        entry = {
            "name": name,
            "contentType": content_type,
            "size": len(data),
            "url": artifact_path(self.job.company_id, self.job_id, name),
        }
        self.artifacts = [a for a in self.artifacts if a["name"] != name] + [entry]
        return entry


class LeaseKeeper:
    """Renews the leases of this process's running attempts every NEXUS_HEARTBEAT_SECONDS, from
    one thread for all of them (so a handler busy in one long call keeps its job, and a short
    job costs no thread of its own); tells a context when its lease is gone."""

    TICK = 0.25  # how soon a changed heartbeat setting or a new job is taken into account

    def __init__(self):
        self._held: dict[int, list] = {}  # id(ctx) -> [ctx, when its next renewal is due]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._asleep = False  # it holds nothing and sleeps until it is woken

    def hold(self, ctx: JobContext) -> None:
        with self._lock:
            self._held[id(ctx)] = [ctx, time.monotonic() + settings.NEXUS_HEARTBEAT_SECONDS]
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="nexus-lease-keeper", daemon=True)
                self._thread.start()
            asleep, self._asleep = self._asleep, False
        if asleep:
            # Woken only from its sleep: awake, it looks at what it holds every TICK, well
            # before a new lease's first renewal. A worker running short jobs one after another
            # woke it for each of them (a thread's wake-up a job).
            self._wake.set()

    def drop(self, ctx: JobContext) -> None:
        with self._lock:
            self._held.pop(id(ctx), None)

    def _run(self) -> None:
        while True:
            self._wake.clear()
            with self._lock:
                held = [list(entry) for entry in self._held.values()]
                self._asleep = not held
            if not held:
                self._wake.wait()
                continue
            now = time.monotonic()
            renewed = False
            for ctx, due in held:
                if due <= now:
                    self._renew(ctx)
                    renewed = True
            if renewed:
                connection.close()  # no connection held between beats
            with self._lock:
                upcoming = [due for _, due in self._held.values()]
            if upcoming:
                self._wake.wait(max(0.0, min(min(upcoming) - time.monotonic(), self.TICK)))

    def _renew(self, ctx: JobContext) -> None:
        interval = settings.NEXUS_HEARTBEAT_SECONDS
        try:
            held = services.job_heartbeat(job_id=ctx.job_id, attempt=ctx.attempt)
        except Exception:
            # A database hiccup: try again at the next beat; the lease has room for it.
            logger.warning("heartbeat of job %s failed", ctx.job_id, exc_info=True)
            held = True
        with self._lock:
            entry = self._held.get(id(ctx))
            if entry is None:
                return  # the run ended meanwhile
            if not held:
                ctx.lease_lost = True
                del self._held[id(ctx)]
            else:
                entry[1] = time.monotonic() + interval


lease_keeper = LeaseKeeper()


def run_job(job_id, *, worker_id: str = "") -> ContentJob | None:
    """Run a queued job to its end; a job that is no longer queued is skipped (None). A run
    whose attempt lost the job on the way raises LeaseLost, so that its task ends failed."""
    job = start_job(job_id, worker_id=worker_id)
    return None if job is None else run_started(job)


def start_job(job_id, *, worker_id: str) -> ContentJob | None:
    """services.job_start for a run; a job that is no longer queued is skipped (None)."""
    job = services.job_start(job_id=job_id, worker_id=worker_id)
    if job is None:
        logger.info("job %s is not queued any more; skipped", job_id)
    return job


def run_started(job: ContentJob) -> ContentJob:
    """Run a job that services.job_start started, to its end (LeaseLost as run_job)."""
    return run_handler(job)()


def run_handler(job: ContentJob) -> "HeldEnd":
    """Run a started job's handler; its end (done, failed or cancelled) comes back as a write
    still to make (call it), alone or inside a transaction of the caller's: the worker's
    loop makes it in the transaction that claims and starts its next job
    (content_jobs.worker.RunLoop), so a busy worker commits once a job. The job's lease is
    renewed until that write is made. LeaseLost as run_job."""
    ctx = JobContext(job)
    lease_keeper.hold(ctx)
    try:
        end = _run_handler(ctx)
    except BaseException as exc:
        lease_keeper.drop(ctx)
        if isinstance(exc, LeaseLost):
            _abandoned(job, ctx.attempt)
        raise
    finally:
        ctx.cancel_timer()
    return HeldEnd(ctx, end)


class HeldEnd:
    """A run's end still to write, its job's lease held until then: call it to write it (in
    the caller's transaction, without a savepoint), or, on PostgreSQL, hand statement() to
    the statement that writes it and finish() what that statement returned (see
    services.RunEnd). Either way the lease is dropped after."""

    def __init__(self, ctx: JobContext, end: services.RunEnd):
        self.ctx, self.end = ctx, end

    def __call__(self) -> ContentJob:
        return self._held(partial(self.end.write, savepoint=False))

    def statement(self) -> tuple[str, list]:
        return self.end.statement()

    def finish(self, held) -> ContentJob:
        return self._held(partial(self.end.finish, held))

    def _held(self, write: Callable[[], ContentJob]) -> ContentJob:
        try:
            return write()
        except LeaseLost:
            _abandoned(self.ctx.job, self.ctx.attempt)
            raise
        finally:
            lease_keeper.drop(self.ctx)


def _abandoned(job: ContentJob, attempt: int) -> None:
    # Another attempt owns the job now (or it was failed as lost): nothing more is written to
    # the job, and the task result says the run was lost (not successful), even where the
    # reaper had closed it already.
    logger.warning("job %s attempt %s lost its lease; its run is abandoned", job.pk, attempt)


def _run_handler(ctx: JobContext) -> services.RunEnd:
    """The run's end, whatever the handler did: an end that the database would refuse (a
    result that is not JSON, a log line over the limit) would leave the job running until its
    lease ran out, and run it again."""
    job, attempt = ctx.job, ctx.attempt
    try:
        job_type = registry.get(ctx.job.job_type)
        returned = job_type.handler(ctx)
        ctx.discard_pending()
        result = dict(returned or {})
        if ctx.artifacts:
            result["artifacts"] = ctx.artifacts
        problem = _not_json(result)
        if problem is not None:
            message = f"The handler returned a result that is not JSON: {problem}"
            ctx.log(message, "error")
            return services.run_failed(job, attempt, "invalid_result", message)
        return services.run_done(job, attempt, result)
    except JobCancelled:
        ctx.flush()
        ctx.log("Cancelled at a checkpoint.", "warning")
        return services.run_cancelled(job, attempt)
    except JobFailed as exc:
        ctx.flush()
        ctx.log(_fit_log(_no_nul(str(exc.message))), "error")
        return services.run_failed(job, attempt, _no_nul(str(exc.code)), _no_nul(str(exc.message)))
    except LeaseLost:
        raise
    except BaseException as exc:  # a handler's bug (SystemExit too) must fail its job, never the worker
        logger.exception("job %s failed", ctx.job_id)
        ctx.flush()
        ctx.log(_fit_log(_no_nul(traceback.format_exc()[-8000:]), tail=True), "error")
        message = _no_nul(f"{type(exc).__name__}: {exc}")
        return services.run_failed(job, attempt, "handler_error", message[:300])


def _not_json(result: dict) -> str | None:
    """Why the result cannot be stored as the job's JSON (a value JSON has no form for, NaN or
    an infinity, a nesting too deep, a NUL character, which PostgreSQL's jsonb refuses); None
    when it can."""
    try:
        if "\\u0000" in json.dumps(result, allow_nan=False) and holds_nul(result):
            return "a string holds a NUL character (\\u0000)"
    except (TypeError, ValueError, RecursionError) as exc:
        return str(exc)
    return None


def _no_nul(text: str) -> str:
    """A log line's or an error's text with each NUL character (which PostgreSQL's text and
    jsonb refuse, and a tool's output may hold) shown as U+FFFD, on every database alike."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


TRUNCATED = " [truncated]"


def _fit_log(message: str, *, tail: bool = False) -> str:
    """The message cut to what a log line may hold (NEXUS_LOG_MAX_MESSAGE_BYTES), marked as
    cut: its start kept, or with `tail` its end (a traceback's last lines say the most)."""
    limit = settings.NEXUS_LOG_MAX_MESSAGE_BYTES
    data = message.encode("utf-8")
    if len(data) <= limit:
        return message
    room = max(0, limit - len(TRUNCATED))
    if tail:
        return TRUNCATED.strip() + " " + data[len(data) - room:].decode("utf-8", "ignore")
    return data[:room].decode("utf-8", "ignore") + TRUNCATED
