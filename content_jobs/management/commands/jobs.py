"""`manage.py jobs`: submit, list and follow content jobs from a terminal.

    python manage.py jobs submit acme demo.steps --param steps=5 --follow
    python manage.py jobs list acme --status running
    python manage.py jobs follow <jobId> [--url http://127.0.0.1:8000] [--token <api token>]

`follow` reads the job's two streams over HTTP from a running server, reconnecting with
Last-Event-ID after a disconnect, and exits 0 when the job is done, 1 when it failed, 2 when it
was cancelled. Without --token it signs a stream token for the job with this installation's
secret key (so it works against the local server out of the box).
"""
import json
import os
import sys
import threading
import time

import httpx
from django.core.management.base import BaseCommand, CommandError
from httpx_sse import connect_sse

from content_jobs import services
from content_jobs.errors import DomainError
from content_jobs.management.arguments import positive_int
from content_jobs.models import Company, ContentJob
from content_jobs.representation import events_path, logs_path
from content_jobs.serializers import JobSubmitInput
from content_jobs.tokens import stream_token_for

EXIT_CODES = {"content_job.done": 0, "content_job.failed": 1, "content_job.cancelled": 2}
COLOURS = {"info": "", "warning": "\033[33m", "error": "\033[31m", "success": "\033[32m"}
RESET = "\033[0m"


def parse_param(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--param takes key=value, not {text!r}")
    try:
        value = json.loads(raw)  # 5, 1.5, true, null, "text", [1, 2]
    except ValueError:
        value = raw
    return key, value


class Follower:
    """Follows one job's event and log streams until the job is over."""

    def __init__(self, *, base_url: str, job_id: str, company_id: str, token: str | None, out, colour: bool,
                 err=None):
        self.base_url = base_url.rstrip("/")
        self.job_id = job_id
        self.company_id = company_id
        self.out = out
        self.err = err or sys.stderr
        self.colour = colour
        self.lock = threading.Lock()
        self.progress_shown = False
        if token:
            self.headers = {"Authorization": f"Token {token}"}
            self.query = ""
        else:
            self.headers = {}
            self.query = f"?token={stream_token_for(job_id)}"
        self.final_event: str | None = None
        self.final_job: dict | None = None

    # Output -----------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        self.out.write(text, ending="")  # a Django OutputWrapper: no newline of its own

    def _clear_bar(self) -> None:
        if self.progress_shown and self.colour:
            self._write("\r\033[K")
            self.progress_shown = False

    def show_line(self, line: dict) -> None:
        with self.lock:
            self._clear_bar()
            severity = line["severity"]
            text = f"{line['event_id']:>5} {severity:<7} {line['event_message']}"
            if self.colour and COLOURS.get(severity):
                text = f"{COLOURS[severity]}{text}{RESET}"
            self._write(text + "\n")
            self.out.flush()

    def show_progress(self, job: dict) -> None:
        with self.lock:
            pct = job["progress"]
            filled = int(pct / 100 * 30)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {pct:5.1f}% {job['status']:<9} {job['stage']}"
            if self.colour:
                self._write("\r\033[K" + bar)
                self.progress_shown = True
            else:
                self._write(bar + "\n")
            self.out.flush()

    # Streams ----------------------------------------------------------------------------
    def _follow(self, path: str, on_event) -> None:
        """Read a stream to its end, reconnecting with Last-Event-ID after a disconnect."""
        last_id: str | None = None
        delay = 0.5
        say_unreachable = True  # until it answers, or once said: not waited on in silence
        while True:
            headers = dict(self.headers)
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            try:
                with httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(10, read=60)) as client:
                    with connect_sse(client, "GET", path + self.query, headers=headers) as source:
                        say_unreachable = False
                        status = source.response.status_code
                        if status == 204:
                            return
                        if status >= 400:
                            source.response.read()
                            raise CommandError(f"{path}: {status} {source.response.text}")
                        delay = 0.5
                        for sse in source.iter_sse():
                            if sse.retry:
                                delay = sse.retry / 1000
                            if not sse.data:
                                continue
                            last_id = sse.id or last_id
                            if on_event(sse) is False:
                                return
                return  # the server ended the stream: the job is over
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                if say_unreachable:  # once; then waited for (the server may be starting)
                    say_unreachable = False
                    with self.lock:
                        self.err.write(f"Cannot reach {self.base_url}: {exc}; trying again until it answers.")
                        self.err.flush()
                time.sleep(delay)  # the server went away; come back where we left off
                delay = min(delay * 2, 10)

    def run(self) -> int:
        def on_job_event(sse):
            job = json.loads(sse.data)
            self.show_progress(job)
            # A terminal event, or the status event of a job that was already over.
            final = sse.event if sse.event in EXIT_CODES else f"content_job.{job['status']}"
            if final in EXIT_CODES:
                self.final_event, self.final_job = final, job
                return False
            return True

        def on_log_line(sse):
            self.show_line(json.loads(sse.data)["log"])

        errors: list[BaseException] = []

        def logs():
            try:
                self._follow(logs_path(self.job_id), on_log_line)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        log_thread = threading.Thread(target=logs, daemon=True)
        log_thread.start()
        self._follow(events_path(self.company_id, self.job_id), on_job_event)
        log_thread.join()
        if errors:
            raise errors[0]
        with self.lock:
            self._clear_bar()
            job = self.final_job or {}
            outcome = {"content_job.done": "done", "content_job.failed": "failed",
                       "content_job.cancelled": "cancelled"}.get(self.final_event, "over")
            detail = f": {job['error']['code']}: {job['error']['message']}" if job.get("error") else ""
            self._write(f"job {self.job_id} {outcome}{detail}\n")
            self.out.flush()
        return EXIT_CODES.get(self.final_event, 1)


class Command(BaseCommand):
    help = "Submit, list and follow content jobs."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        submit = sub.add_parser("submit", help="submit a job")
        submit.add_argument("company_slug")
        submit.add_argument("job_type")
        submit.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                            help="a job parameter; the value is read as JSON when it parses (steps=5, failAt=null)")
        submit.add_argument("--source-task-id", default=None)
        submit.add_argument("--follow", action="store_true", help="follow the job until it is over")
        listing = sub.add_parser("list", help="list a company's jobs, newest first")
        listing.add_argument("company_slug")
        listing.add_argument("--status", choices=[s.value for s in ContentJob.Status])
        listing.add_argument("--limit", type=positive_int, default=20)
        follow = sub.add_parser("follow", help="follow a job's progress and log lines until it is over")
        follow.add_argument("job_id")
        for p in (submit, follow):
            p.add_argument("--url", default=os.environ.get("NEXUS_URL", f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"))
            p.add_argument("--token", default=os.environ.get("NEXUS_TOKEN"), help="an API token (default: a stream token signed here)")
            p.add_argument("--colour", choices=["auto", "always", "never"], default="auto")

    def handle(self, *args, action, **options):
        if action == "submit":
            return self.submit(**options)
        if action == "list":
            return self.list(**options)
        self._exit(self.follow(**options))

    def _company(self, slug: str) -> Company:
        try:
            return Company.objects.get(slug=slug)
        except Company.DoesNotExist:
            raise CommandError(f"No company with slug {slug!r}.") from None

    def submit(self, *, company_slug, job_type, param, source_task_id, follow, **options):
        params = dict(parse_param(p) for p in param)
        body = JobSubmitInput(data={"jobType": job_type, "params": params, "sourceTaskId": source_task_id})
        if not body.is_valid():  # what the API checks of a submission's body
            details = "".join(f"\n  {field}: {' '.join(map(str, messages))}" for field, messages in body.errors.items())
            raise CommandError(f"The submission is not valid:{details}")
        try:
            job, _ = services.job_submit(
                company=self._company(company_slug), job_type=job_type, params=params, source_task_id=source_task_id
            )
        except DomainError as exc:
            details = "".join(f"\n  {e.get('field', '')}: {e['message']}" for e in _flat(exc))
            raise CommandError(f"{exc.message}{details}") from None
        self.stdout.write(str(job.pk))
        if follow:
            self._exit(self.follow(job_id=str(job.pk), **options))

    def list(self, *, company_slug, status, limit, **options):
        jobs = ContentJob.objects.for_company(self._company(company_slug))
        if status:
            jobs = jobs.filter(status=status)
        for job in jobs.order_by("-created_at")[:limit]:
            self.stdout.write(
                f"{job.pk}  {job.status:<9} {job.progress:5.1f}%  {job.job_type:<16} "
                f"{job.created_at:%Y-%m-%d %H:%M:%S}  {job.stage}"
            )

    def follow(self, *, job_id, url, token, colour, **options) -> int:
        job = ContentJob.objects.filter(pk=job_id).values("company_id").first() if _is_uuid(job_id) else None
        if job is None:
            raise CommandError(f"No job {job_id}.")
        use_colour = colour == "always" or (colour == "auto" and sys.stdout.isatty())
        follower = Follower(base_url=url, job_id=job_id, company_id=str(job["company_id"]), token=token,
                            out=self.stdout, err=self.stderr, colour=use_colour)
        return follower.run()

    def _exit(self, code: int) -> None:
        """End the command with the job's outcome as the exit status (0 done, 1 failed, 2 cancelled)."""
        self.stdout.flush()
        sys.exit(code)


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


def _flat(exc: DomainError) -> list[dict]:
    from content_jobs.api_errors import flatten_errors

    if exc.errors:
        return flatten_errors(exc.errors, exc.field or "")
    return [{"field": exc.field or "", "message": exc.message}]
