"""The job event stream and the company event stream (async views; see content_jobs.sse)."""
from django.http import Http404

from . import events
from .models import TERMINAL_EVENT_TYPES, Company, ContentJob, Membership
from .representation import job_representation
from .sse import (COUNTERS, NoContent, Source, StreamError, check_not_past, job_status, named_frame,
                  parse_last_event_id, request_user, shared, stream_view)
from .tenancy import parse_uuid
from .tokens import TokenError, job_id_from_stream_token


class JobEvents(Source):
    kind = "job"

    def __init__(self, request, company_id, job_id):
        cursor = parse_last_event_id(request)
        super().__init__(cursor or 0)
        self.fresh = cursor is None
        self.company_id, self.job_id = path_uuid(company_id), path_uuid(job_id)
        self.channel = events.job_channel(self.job_id)
        self.group = events.job_group(self.job_id)
        self.listen = {self.channel}

    def check(self, request) -> None:
        self.job = job_stream_access(request, self.company_id, self.job_id)
        if not self.fresh and self.job.is_terminal and self.cursor >= self.job.event_seq:
            raise NoContent  # the client has the end: EventSource stops reconnecting
        check_not_past(None if self.fresh else self.cursor, self.job.event_seq)

    def open(self) -> list[str]:
        job, self.job = self.job, None  # not kept for the stream's life
        if not self.fresh:
            return self.read_new()
        # A new client first gets the job as it is now, numbered as the latest stored event,
        # so that a reconnect resumes right after it.
        self.cursor = job.event_seq
        self.finished = job.is_terminal
        return [named_frame(events.STATUS, job.event_seq, events.encode(job_representation(job)))]

    def accept(self, event) -> str:
        if event.type in TERMINAL_EVENT_TYPES:
            self.finished = True
        return super().accept(event)

    def passes(self, event) -> bool:
        return event.type not in TERMINAL_EVENT_TYPES  # the end goes through the body, which ends

    async def quiet(self) -> list[str]:
        frames = await super().quiet()  # the job's end among them, if its message was lost
        if not self.finished and await job_status(self.job_id) is None:
            self.finished = True  # the job was deleted (its events with it): nothing more will come
        return frames


class CompanyEvents(Source):
    kind = "company"

    def __init__(self, request, company_id):
        cursor = parse_last_event_id(request)
        super().__init__(cursor or 0)
        self.fresh = cursor is None
        self.company_id = path_uuid(company_id)
        self.channel = events.company_channel(self.company_id)
        self.group = events.company_group(self.company_id)
        self.listen = {self.channel}

    def check(self, request) -> None:
        company = company_stream_access(request, self.company_id)
        check_not_past(None if self.fresh else self.cursor, company.event_seq)
        if self.fresh:
            self.cursor = company.event_seq  # a new client gets what happens from now on

    def open(self) -> list[str]:
        # A new client starts at the company's newest event, read just now, after the stream
        # began to listen: anything newer arrives live, so there is nothing to read yet.
        return [] if self.fresh else self.read_new()


# The checks before a stream starts run in one go with its first read, in a batch of stream
# opens whose lookups are shared (see content_jobs.sse.Opener).
def find_job(job_id) -> ContentJob:
    job = shared(("job", job_id), lambda: ContentJob.objects.filter(pk=job_id).first())
    if job is None:
        raise StreamError(404, "not_found", "Not found.")
    return job


def stream_credentials(request, job_id):
    """Who asks, before anything is looked up (so no one learns whether a job exists, or whose
    it is): the user of a token header or session; or None once a stream token was checked,
    which must be valid (401) and this job's (403). 401 without any."""
    token = request.GET.get("token")
    if token:
        try:
            token_job_id = job_id_from_stream_token(token)
        except TokenError as exc:
            raise StreamError(401, exc.code, exc.message) from None
        if token_job_id != str(job_id):
            raise StreamError(403, "token_wrong_job", "This stream token belongs to another job.")
        return None
    user = request_user(request)
    if user is None:
        raise StreamError(401, "not_authenticated", "Authentication credentials were not provided.")
    return user


def authorize_job_stream(job: ContentJob, user) -> None:
    """A stream token for this job (checked by stream_credentials: user None), or a user who is
    a member of the job's company."""
    if user is None:
        return
    member = shared(("member", user.pk, job.company_id),
                    lambda: Membership.objects.filter(user=user, company_id=job.company_id).exists())
    if not member:
        raise StreamError(404, "not_found", "Not found.")


def job_stream_access(request, company_id, job_id) -> ContentJob:
    user = stream_credentials(request, job_id)
    job = find_job(job_id)
    if job.company_id != company_id:
        raise StreamError(404, "not_found", "Not found.")
    authorize_job_stream(job, user)
    return job


def company_stream_access(request, company_id) -> Company:
    user = request_user(request)
    if user is None:
        raise StreamError(401, "not_authenticated", "Authentication credentials were not provided.")
    membership = shared(("membership", user.pk, company_id),
                        lambda: Membership.objects.select_related("company").filter(user=user, company_id=company_id).first())
    if membership is None:
        raise StreamError(404, "not_found", "Not found.")
    return membership.company


job_events = stream_view(JobEvents)
company_events = stream_view(CompanyEvents)


def path_uuid(value):
    """A path's id as a UUID, or None for a malformed one: nothing has it, so it is a 404 once
    the caller's credentials are checked (a 401 comes first, as for a well-formed id)."""
    try:
        return parse_uuid(value)
    except Http404:
        return None


async def stream_stats(request):
    """What this process holds for its streams; for operators and the disconnect tests.

    Off unless NEXUS_INTERNAL_STATS is true (it says nothing about any tenant, but it is no
    one's business by default).
    """
    import asyncio
    import os
    import threading

    from django.conf import settings
    from django.http import JsonResponse
    from django_eventstream.views import get_listener_manager

    from .stream_hub import hub

    if not settings.NEXUS_INTERNAL_STATS:
        return StreamError(404, "not_found", "Not found.").response()
    manager = get_listener_manager()
    with manager.lock:
        listeners = len({id(l) for ls in manager.listeners_by_channel.values() for l in ls})
    try:
        open_fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = None
    return JsonResponse(
        {
            "listeners": listeners,
            "hub": hub.stats(),
            "tasks": len(asyncio.all_tasks()),
            "threads": threading.active_count(),
            "openFds": open_fds,
            "published": hub.published,
            "delivered": hub.delivered,
            "directStreams": COUNTERS.direct_streams,
            "directWrites": COUNTERS.direct_writes,
        }
    )
