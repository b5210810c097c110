"""Log lines: numbering, size limit, the line cap, publishing on commit."""
import pytest

from content_jobs import services
from content_jobs.errors import LogMessageTooLong
from content_jobs.signals import log_appended
from job_logs.models import LogCursor, LogLine
from job_logs.services import log_append, log_append_many


@pytest.fixture
def job(company):
    return services.job_submit(company=company, job_type="demo.steps", params={})[0]


def test_lines_are_numbered_from_1_per_job(company, job):
    other = services.job_submit(company=company, job_type="demo.steps", params={})[0]
    assert [log_append(job_id=job.pk, message=m).event_id for m in "abc"] == [1, 2, 3]
    assert log_append(job_id=other.pk, message="x").event_id == 1
    assert log_append_many(job_id=job.pk, entries=[("d", "info"), ("e", "error")])[-1].event_id == 5


def test_each_line_is_published_after_commit(job, django_capture_on_commit_callbacks):
    received = []
    log_appended.connect(lambda sender, line, **kw: received.append(line.event_id), weak=False, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            log_append_many(job_id=job.pk, entries=[("a", "info"), ("b", "info")])
            assert received == []
        assert received == [1, 2]
    finally:
        log_appended.disconnect(dispatch_uid="t")


@pytest.mark.parametrize("message", ["x" * (64 * 1024 + 1), "é" * (32 * 1024 + 1)])
def test_a_message_over_64_kib_is_refused_and_nothing_is_stored(job, message):
    with pytest.raises(LogMessageTooLong):
        log_append_many(job_id=job.pk, entries=[("fine", "info"), (message, "info")])
    assert LogLine.objects.count() == 0


def test_the_line_cap_stores_one_truncation_line_and_counts_the_rest(job, settings):
    settings.NEXUS_LOG_MAX_LINES = 5
    log_append_many(job_id=job.pk, entries=[(f"l{i}", "info") for i in range(1, 9)])
    lines = list(LogLine.objects.filter(job=job).order_by("event_id"))
    assert [l.message for l in lines[:5]] == ["l1", "l2", "l3", "l4", "l5"]
    assert len(lines) == 6
    assert lines[5].severity == "warning" and "limit of 5" in lines[5].message
    assert LogCursor.objects.get(job=job).dropped == 3
    assert log_append(job_id=job.pk, message="later") is None
    assert LogLine.objects.filter(job=job).count() == 6
    assert LogCursor.objects.get(job=job).dropped == 4
