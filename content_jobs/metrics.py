"""Prometheus metrics at /metrics.

Job figures are read from the database at scrape time (so every process reports the same truth
and nothing is lost when a worker restarts); stream and event figures are this process's own.
A scrape counts the jobs that finished since the last one into their types' totals and reads
those with the jobs not counted yet, so its cost does not grow with the jobs kept; the counters
among the figures (durations, truncated lines) keep what jobs that left the table had counted,
so that they never go down (content_jobs.job_totals).
"""
import ipaddress

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from . import job_totals
from .api_errors import problem_response
from .models import ContentJob

OPEN_STREAMS = Gauge("nexus_open_streams", "SSE streams open in this process", ["kind"])
EVENTS_PUBLISHED = Counter("nexus_events_published", "Stream events this process sent into the channel layer")
EVENTS_DELIVERED = Counter("nexus_events_delivered", "Stream events this process handed to its local listeners")
PROGRESS_COALESCED = Counter(
    "nexus_progress_updates_coalesced", "progress() calls of this process's handlers that no event row was written for"
)


class JobCollector:
    """Jobs by status and type, the queue and its oldest job, durations, truncated log lines."""

    def describe(self):
        # Names only: registering must not query the database.
        yield GaugeMetricFamily("nexus_jobs", "Jobs by status and type", labels=["status", "job_type"])
        yield GaugeMetricFamily("nexus_jobs_queued", "Jobs waiting for a worker")
        yield GaugeMetricFamily("nexus_oldest_queued_job_age_seconds", "Age of the oldest queued job")
        yield HistogramMetricFamily("nexus_job_duration_seconds", "Run time of finished runs", labels=["job_type"])
        yield CounterMetricFamily("nexus_log_lines_truncated", "Log lines counted but not stored (line cap)")

    def collect(self):
        job_totals.count_finished()
        totals = job_totals.read()
        by_status = GaugeMetricFamily("nexus_jobs", "Jobs by status and type", labels=["status", "job_type"])
        for job_type, entry in sorted(totals.items()):
            for status, n in sorted(entry["jobs"].items()):
                by_status.add_metric([status, job_type], n)
        yield by_status

        queued = ContentJob.objects.filter(status=ContentJob.Status.QUEUED).aggregate(n=Count("id"), oldest=Min("created_at"))
        yield GaugeMetricFamily("nexus_jobs_queued", "Jobs waiting for a worker", value=queued["n"])
        age = (timezone.now() - queued["oldest"]).total_seconds() if queued["oldest"] else 0.0
        yield GaugeMetricFamily("nexus_oldest_queued_job_age_seconds", "Age of the oldest queued job", value=age)

        durations = HistogramMetricFamily(
            "nexus_job_duration_seconds", "Run time of finished runs (started to finished), by type", labels=["job_type"]
        )
        for job_type, entry in sorted(totals.items()):
            if entry["runs"]:
                counts = [(str(bound), n) for bound, n in zip(job_totals.DURATION_BUCKETS, entry["buckets"])]
                counts.append(("+Inf", entry["runs"]))
                durations.add_metric([job_type], counts, sum_value=entry["seconds"])
        yield durations
        dropped = sum(entry["log_lines_dropped"] for entry in totals.values())
        yield CounterMetricFamily("nexus_log_lines_truncated", "Log lines counted but not stored (line cap)", value=dropped)


REGISTRY.register(JobCollector())


def _allowed(request) -> bool:
    token = settings.NEXUS_METRICS_TOKEN
    if token and request.headers.get("Authorization") == f"Bearer {token}":
        return True
    address = request.META.get("REMOTE_ADDR", "")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in settings.NEXUS_METRICS_ALLOWED_NETWORKS)


def metrics_view(request):
    if not _allowed(request):
        return problem_response(403, "permission_denied", "Metrics are limited to allowed addresses or a token.")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
