"""The log stream of a job: stored lines, then live ones, then the end once the job is over."""
from content_jobs import events
from content_jobs.models import TERMINAL_EVENT_TYPES, ContentJob
from content_jobs.sse import (NoContent, Source, check_not_past, job_status, parse_last_event_id, shared, storage,
                              stream_view)
from content_jobs.streams import authorize_job_stream, find_job, path_uuid, stream_credentials


class JobLogLines(Source):
    kind = "log"

    def __init__(self, request, job_id):
        self.asked = parse_last_event_id(request)
        super().__init__(self.asked or 0)
        self.job_id = path_uuid(job_id)
        self.channel = events.log_channel(self.job_id)
        self.group = events.job_group(self.job_id)
        # The job's own channel tells when the job is over.
        self.listen = {self.channel, events.job_channel(self.job_id)}

    def check(self, request) -> None:
        # The status is read after the stream listens and before the lines: a job that was
        # over then has all its lines stored.
        self.over = log_stream_access(request, self.job_id).is_terminal
        if self.asked and not self.over:  # over: nothing is left to miss (204, in open)
            check_not_past(self.asked, shared(("latest", self.channel), lambda: storage.get_current_id(self.channel)))

    def open(self) -> list[str]:
        frames = self.read_new()
        if self.over and not frames:
            raise NoContent  # a finished job with nothing left to send
        self.finished = self.over
        return frames

    async def quiet(self) -> list[str]:
        # The job's end reaches a log stream live, on the job's own channel: should that
        # message be lost (an outage of the channel layer), or the job deleted, the status says
        # so here. An ended job's lines are all stored by then.
        status = await job_status(self.job_id)
        if status is None or status in ContentJob.TERMINAL:
            frames = await self.catch_up()  # before `finished`, which stops reading
            self.finished = True
            return frames
        return await super().quiet()

    async def other(self, channel, events_) -> list[str]:
        if any(event.type in TERMINAL_EVENT_TYPES for event in events_):
            frames = await self.catch_up()
            self.finished = True
            return frames
        return []


def log_stream_access(request, job_id) -> ContentJob:
    """The job, once the caller may watch it."""
    user = stream_credentials(request, job_id)
    job = find_job(job_id)
    authorize_job_stream(job, user)
    return job


log_stream = stream_view(JobLogLines)
