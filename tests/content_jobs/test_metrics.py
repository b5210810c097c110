"""Prometheus metrics: what a scrape shows, and who may scrape."""
import re

import pytest
from django.db import connection
from django.utils import timezone
from datetime import timedelta

from content_jobs import job_totals, services
from content_jobs.models import ContentJob, JobTotals
from job_logs.models import LogLine
from job_logs.services import log_append_many


def scrape(client, **extra) -> str:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def value(text: str, name: str, **labels) -> float:
    """The sample `name{labels}` of a scrape (labels in any order)."""
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'([a-z_]+)="([^"]*)"', match[2] or ""))
        if found == {k: str(v) for k, v in labels.items()}:
            return float(match[3])
    raise AssertionError(f"{name} {labels} not in scrape")


@pytest.mark.django_db
def test_metrics_show_jobs_by_status_and_type_the_queue_and_durations(client, company, settings):
    settings.NEXUS_LOG_MAX_LINES = 2
    queued, _ = services.job_submit(company=company, job_type="demo.steps", params={})
    ContentJob.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(seconds=90))
    done, _ = services.job_submit(company=company, job_type="render.card", params={"title": "x"})
    services.job_start(job_id=done.pk)
    ContentJob.objects.filter(pk=done.pk).update(started_at=timezone.now() - timedelta(seconds=3))
    services.job_complete(job=done, result={})
    log_append_many(job_id=done.pk, entries=[("a", "info")] * 6)  # 2 kept, truncation line, 4 dropped

    text = scrape(client)
    assert value(text, "nexus_jobs", status="queued", job_type="demo.steps") == 1
    assert value(text, "nexus_jobs", status="done", job_type="render.card") == 1
    assert value(text, "nexus_jobs_queued") == 1
    assert 89 <= value(text, "nexus_oldest_queued_job_age_seconds") < 200
    assert value(text, "nexus_job_duration_seconds_bucket", job_type="render.card", le="1.0") == 0
    assert value(text, "nexus_job_duration_seconds_bucket", job_type="render.card", le="5.0") == 1
    assert value(text, "nexus_job_duration_seconds_count", job_type="render.card") == 1
    assert value(text, "nexus_log_lines_truncated_total") == 4
    for name in ("nexus_events_published_total", "nexus_events_delivered_total",
                 "nexus_progress_updates_coalesced_total"):
        assert value(text, name) >= 0


@pytest.mark.django_db
def test_metrics_are_refused_to_other_addresses_without_the_token(client, settings):
    settings.NEXUS_METRICS_TOKEN = "s3cret"
    refused = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"
    scrape(client, REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret")
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


@pytest.mark.django_db
def test_open_streams_are_counted_by_kind(live_server_proc):
    import httpx

    with live_server_proc.client("alice") as client:
        company = live_server_proc.company()
        job = client.post(f"/api/companies/{company}/content-jobs",
                          json={"jobType": "demo.steps", "params": {"steps": 100, "delayMs": 50}}).json()
        with client.stream("GET", job["logsUrl"]) as stream:
            assert stream.status_code == 200
            chunks = stream.iter_bytes()  # kept: a dropped iterator closes the response
            next(chunks)
            text = httpx.get(f"{live_server_proc.url}/metrics").text
            assert value(text, "nexus_open_streams", kind="log") >= 1
        client.post(f"/api/companies/{company}/content-jobs/{job['jobId']}/cancel")


def finished(company, job_type: str, seconds: float, *, fail: bool = False, lines: int = 0) -> ContentJob:
    """A job of `job_type` that ran for `seconds` and is done (or failed), with `lines` log
    lines appended while it ran."""
    params = {"title": "x"} if job_type == "render.card" else {}
    job, _ = services.job_submit(company=company, job_type=job_type, params=params)
    job = services.job_start(job_id=job.pk)
    if lines:
        log_append_many(job_id=job.pk, entries=[("a", "info")] * lines)
    ContentJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=seconds))
    job.refresh_from_db()
    if fail:
        return services.job_fail(job=job, code="boom", message="it broke")
    return services.job_complete(job=job, result={})


def counters(text: str, job_type: str) -> tuple:
    return (value(text, "nexus_job_duration_seconds_count", job_type=job_type),
            round(value(text, "nexus_job_duration_seconds_sum", job_type=job_type)),
            value(text, "nexus_job_duration_seconds_bucket", job_type=job_type, le="1.0"),
            value(text, "nexus_job_duration_seconds_bucket", job_type=job_type, le="5.0"),
            value(text, "nexus_log_lines_truncated_total"))


@pytest.mark.django_db
def test_pruning_jobs_takes_nothing_off_the_counters(client, company, settings):
    settings.NEXUS_LOG_MAX_LINES = 2
    finished(company, "render.card", 3, lines=6)  # 4 lines dropped
    finished(company, "render.card", 0.5)
    before = counters(scrape(client), "render.card")
    assert before == (2, 4, 1, 2, 4)

    pruned = services.jobs_prune(finished_before=timezone.now() + timedelta(seconds=1))
    assert pruned["jobs"] == 2 and not ContentJob.objects.exists()
    text = scrape(client)
    assert counters(text, "render.card") == before
    with pytest.raises(AssertionError):
        value(text, "nexus_jobs", status="done", job_type="render.card")  # a gauge of the table: gone

    finished(company, "render.card", 10)  # counted on top of what was pruned
    assert counters(scrape(client), "render.card") == (3, 14, 1, 2, 4)


@pytest.mark.django_db
def test_a_retried_job_keeps_its_failed_run_counted_and_its_dropped_lines_once(client, company, settings):
    settings.NEXUS_LOG_MAX_LINES = 2
    job = finished(company, "render.card", 2, fail=True, lines=6)
    assert counters(scrape(client), "render.card") == (1, 2, 0, 1, 4)

    services.job_retry(job=job)  # its run's times are cleared: the run moves to the totals
    assert counters(scrape(client), "render.card") == (1, 2, 0, 1, 4)

    job = services.job_start(job_id=job.pk)
    ContentJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=0.4))
    job.refresh_from_db()
    services.job_complete(job=job, result={})
    assert counters(scrape(client), "render.card") == (2, 2, 1, 2, 4)


@pytest.mark.django_db
def test_deleting_a_job_in_the_admin_or_a_company_takes_nothing_off_the_counters(client, company, other_company,
                                                                                 settings):
    from django.contrib.auth import get_user_model

    settings.NEXUS_LOG_MAX_LINES = 2
    job = finished(company, "render.card", 3, lines=5)  # 3 dropped
    finished(other_company, "render.card", 0.5)
    finished(other_company, "demo.steps", 20, lines=3)  # 1 dropped
    before = scrape(client)
    assert counters(before, "render.card") == (2, 4, 1, 2, 4)

    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    operator = type(client)()
    operator.force_login(admin)
    answer = operator.post(f"/admin/content_jobs/contentjob/{job.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    assert not ContentJob.objects.filter(pk=job.pk).exists()
    assert not LogLine.objects.filter(job_id=job.pk).exists()
    assert counters(scrape(client), "render.card") == (2, 4, 1, 2, 4)

    other_company.delete()
    assert not ContentJob.objects.exists()
    after = scrape(client)
    assert counters(after, "render.card") == (2, 4, 1, 2, 4)
    assert value(after, "nexus_job_duration_seconds_count", job_type="demo.steps") == 1
    assert value(after, "nexus_job_duration_seconds_bucket", job_type="demo.steps", le="15.0") == 0
    assert value(after, "nexus_job_duration_seconds_bucket", job_type="demo.steps", le="60.0") == 1


@pytest.mark.django_db
def test_a_scrape_counts_the_finished_jobs_once_and_does_not_read_them_again(client, company):
    queued, _ = services.job_submit(company=company, job_type="demo.steps", params={})
    finished(company, "render.card", 3)
    finished(company, "render.card", 0.5)
    failed = finished(company, "demo.steps", 20, fail=True)

    first = scrape(client)
    assert counters(first, "render.card")[:4] == (2, 4, 1, 2)
    assert value(first, "nexus_jobs", status="done", job_type="render.card") == 2
    assert value(first, "nexus_jobs", status="failed", job_type="demo.steps") == 1
    assert value(first, "nexus_jobs", status="queued", job_type="demo.steps") == 1
    assert set(ContentJob.objects.filter(counted=False).values_list("pk", flat=True)) == {queued.pk}
    totals = {row.job_type: (row.runs, row.jobs) for row in JobTotals.objects.all()}
    assert totals == {"render.card": (2, {"done": 2}), "demo.steps": (1, {"failed": 1})}

    # Counted: the scrape reads the totals, not the job's row (a change behind the services'
    # back does not show), and counts nothing twice.
    ContentJob.objects.filter(pk=failed.pk).update(started_at=timezone.now() - timedelta(hours=5))
    assert job_lines(scrape(client)) == job_lines(first)


def job_lines(text: str) -> list[str]:
    """The job figures of a scrape, but the oldest queued job's age (it grows)."""
    return [line for line in text.splitlines() if line.startswith("nexus_job") and "oldest" not in line]


@pytest.mark.django_db
def test_jobs_that_leave_before_a_scrape_counted_them_are_counted_once(client, company, other_company, settings):
    settings.NEXUS_LOG_MAX_LINES = 2
    retried = finished(company, "render.card", 2, fail=True, lines=5)  # 3 dropped
    finished(company, "render.card", 3)
    finished(company, "render.card", 0.5, lines=4)  # 2 dropped
    finished(other_company, "render.card", 8)
    services.job_retry(job=retried)  # never scraped: its run goes to the totals as it is cleared
    services.jobs_prune(finished_before=timezone.now() + timedelta(seconds=1))
    assert list(ContentJob.objects.values_list("pk", flat=True)) == [retried.pk]
    assert not JobTotals.objects.filter(jobs__has_key="done").exists()

    text = scrape(client)
    assert counters(text, "render.card") == (4, 14, 1, 3, 5)
    assert value(text, "nexus_jobs", status="queued", job_type="render.card") == 1
    with pytest.raises(AssertionError):
        value(text, "nexus_jobs", status="done", job_type="render.card")


@pytest.mark.django_db
def test_a_prune_puts_right_the_count_of_jobs_deleted_around_the_services(client, company):
    gone = finished(company, "render.card", 3)
    kept = finished(company, "render.card", 0.5)
    scrape(client)
    ContentJob.objects.filter(pk=gone.pk).delete()  # a shell's deletion: no service, no totals
    assert value(scrape(client), "nexus_jobs", status="done", job_type="render.card") == 2

    services.jobs_prune(finished_before=kept.finished_at - timedelta(hours=1))  # prunes nothing
    text = scrape(client)
    assert value(text, "nexus_jobs", status="done", job_type="render.card") == 1
    assert counters(text, "render.card")[:4] == (2, 4, 1, 2)  # its run stays counted


@pytest.mark.django_db
def test_a_scrape_counts_a_bounded_share_and_shows_the_same_figures_meanwhile(client, company, monkeypatch):
    monkeypatch.setattr(job_totals, "COUNT_PER_SCRAPE", 2)
    monkeypatch.setattr(job_totals, "COUNT_BATCH", 1)
    for seconds in (0.05, 0.3, 0.7, 2, 7):
        finished(company, "render.card", seconds)
    for left in (3, 1, 0):
        text = scrape(client)
        assert ContentJob.objects.filter(counted=False).count() == left
        assert counters(text, "render.card")[:4] == (5, 10, 3, 4)
        assert value(text, "nexus_job_duration_seconds_bucket", job_type="render.card", le="0.1") == 1
        assert value(text, "nexus_jobs", status="done", job_type="render.card") == 5


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "sqlite", reason="the limit of a statement's values is SQLite's")
def test_a_scrape_counts_in_batches_that_a_statement_of_the_database_can_hold(client, company):
    """SQLite built before 3.32 takes at most 999 values a statement (a build may set its own
    limit): a batch of 2,000 ids would fail every scrape once that many jobs had finished."""
    import sqlite3

    for seconds in [0.3] * 40 + [3] * 20:
        finished(company, "render.card", seconds)
    connection.ensure_connection()
    limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, job_totals.STATEMENT_VALUES + 10)
    try:
        text = scrape(client)
    finally:
        connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    assert counters(text, "render.card")[:4] == (60, 72, 40, 60)
    assert value(text, "nexus_jobs", status="done", job_type="render.card") == 60
    assert not ContentJob.objects.filter(counted=False).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
def test_a_scrape_passes_over_a_finished_job_another_transaction_holds(client, company):
    import psycopg

    held = finished(company, "render.card", 3)
    finished(company, "render.card", 0.5)
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]) as other:
        # A prune or a retry of the job, under way in another process.
        other.execute("SELECT id FROM content_jobs_contentjob WHERE id = %s FOR UPDATE", [held.pk])
        text = scrape(client)  # does not wait for it
        assert counters(text, "render.card")[:4] == (2, 4, 1, 2)
        assert list(ContentJob.objects.filter(counted=False).values_list("pk", flat=True)) == [held.pk]
    assert counters(scrape(client), "render.card")[:4] == (2, 4, 1, 2)
    assert not ContentJob.objects.filter(counted=False).exists()


def test_an_allowed_network_that_is_none_stops_the_start_not_every_scrape(tmp_path):
    """It was read at each scrape, and every scrape was a 500."""
    import os
    import subprocess
    import sys

    from tests.live import ROOT

    env = {**os.environ, "NEXUS_VAR_DIR": str(tmp_path), "NEXUS_METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,localhost"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert ("NEXUS_METRICS_ALLOWED_NETWORKS: 'localhost' is not an address or a network (such as 10.0.0.0/8)"
            in result.stderr)
