"""django-eventstream storage and channel manager over the project's own tables.

Events are stored once: a job's and a company's stream events are JobEvent rows (written with
the change they report), a job's log stream is its LogLine rows. This storage only reads them,
so django-eventstream never writes an event table of its own, keeps no counters and trims
nothing inside a send (retention is the `prune_jobs` command's bulk delete).

Channels: `job-<jobId>` (ids: JobEvent.seq), `company-<companyId>` (ids: JobEvent.company_seq),
`joblog-<jobId>` (ids: LogLine.event_id).
"""
from django_eventstream.channelmanager import ChannelManagerBase
from django_eventstream.event import Event
from django_eventstream.storage import StorageBase

from . import events
from .models import Company, ContentJob, JobEvent, Membership


def _kind(channel: str) -> tuple[str, str]:
    kind, _, ident = channel.partition("-")
    return kind, ident


class ProjectStorage(StorageBase):
    def append_event(self, channel, event_type, data):
        raise RuntimeError("Nexus events are stored by content_jobs.events, not through send_event")

    def get_events(self, channel, last_id, limit=100):
        kind, ident = _kind(channel)
        if kind == events.LOG_CHANNEL:
            from job_logs.models import LogLine
            from job_logs.serializers import log_payload

            lines = LogLine.objects.for_job(ident).after(last_id).order_by("event_id")[:limit]
            # The same bytes as a live line (content_jobs.events.publish_log_lines): compact JSON.
            return [Event(channel, None, events.encode({"log": log_payload(line)}), id=line.event_id) for line in lines]
        if kind == events.JOB_CHANNEL:
            rows = JobEvent.objects.filter(job_id=ident, seq__gt=last_id).order_by("seq")[:limit]
            return [Event(channel, row.type, row.data, id=row.seq) for row in rows]
        if kind == events.COMPANY_CHANNEL:
            rows = JobEvent.objects.filter(company_id=ident, company_seq__gt=last_id).order_by("company_seq")[:limit]
            return [Event(channel, row.type, row.data, id=row.company_seq) for row in rows]
        return []

    def get_current_id(self, channel):
        kind, ident = _kind(channel)
        if kind == events.LOG_CHANNEL:
            from job_logs.models import LogCursor

            return LogCursor.objects.filter(job_id=ident).values_list("last_event_id", flat=True).first() or 0
        if kind == events.JOB_CHANNEL:
            return ContentJob.objects.filter(pk=ident).values_list("event_seq", flat=True).first() or 0
        if kind == events.COMPANY_CHANNEL:
            return Company.objects.filter(pk=ident).values_list("event_seq", flat=True).first() or 0
        return 0


class ProjectChannelManager(ChannelManagerBase):
    """Who may read a channel: members of the company the channel belongs to."""

    def get_channels_for_request(self, request, view_kwargs):
        return set(view_kwargs.get("channels", []))

    def can_read_channel(self, user, channel):
        if user is None or not user.is_authenticated:
            return False
        kind, ident = _kind(channel)
        if kind == events.COMPANY_CHANNEL:
            return Membership.objects.filter(user=user, company_id=ident).exists()
        company_id = ContentJob.objects.filter(pk=ident).values_list("company_id", flat=True).first()
        return company_id is not None and Membership.objects.filter(user=user, company_id=company_id).exists()

    def is_channel_reliable(self, channel):
        return True
