"""The log stream of a job: stored lines, then live ones, then the end once the job is over."""
from django.http import HttpResponse

from content_jobs import events
from content_jobs.models import TERMINAL_EVENT_TYPES, ContentJob
from content_jobs.sse import Source, StreamError, in_thread, parse_last_event_id, run_stream, sse_response
from content_jobs.streams import authorize_job_stream, parse_uuid_or_404, stream_credentials

from .models import LogLine


class JobLogLines(Source):
    kind = "log"

    def __init__(self, job: ContentJob, cursor: int):
        super().__init__(cursor)
        self.job = job
        self.channel = events.log_channel(job.pk)
        self.group = events.job_group(job.pk)
        # The job's own channel tells when the job is over.
        self.listen = {self.channel, events.job_channel(job.pk)}

    def open(self) -> list[str]:
        # Read the status before the lines: a job that was over then has all its lines stored.
        over = ContentJob.objects.get(pk=self.job.pk).is_terminal
        frames = self.read_new()
        self.finished = over
        return frames

    async def other(self, channel, events_) -> list[str]:
        if any(event.type in TERMINAL_EVENT_TYPES for event in events_):
            frames = await self.catch_up()
            self.finished = True
            return frames
        return []


def log_stream_access(request, job_id, cursor: int) -> tuple[ContentJob, bool]:
    """The job, once the caller may watch it, and whether it is over with nothing after `cursor`."""
    user = stream_credentials(request)
    job = ContentJob.objects.filter(pk=parse_uuid_or_404(job_id)).first()
    if job is None:
        raise StreamError(404, "not_found", "Not found.")
    authorize_job_stream(request, job, user)
    return job, job.is_terminal and not LogLine.objects.for_job(job.pk).after(cursor).exists()


async def log_stream(request, job_id):
    try:
        cursor = parse_last_event_id(request) or 0
        job, nothing_left = await in_thread(log_stream_access, request, job_id, cursor)
    except StreamError as exc:
        return exc.response()
    if nothing_left:
        return HttpResponse(status=204)  # a finished job with nothing left to send
    return sse_response(run_stream(JobLogLines(job, cursor)))
