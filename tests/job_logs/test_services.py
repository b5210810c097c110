"""Log lines: numbering per job, publishing on commit, the message size limit, the line cap."""
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from content_jobs import services
from content_jobs.errors import LeaseLost, LogMessageTooLong
from content_jobs.models import ContentJob
from content_jobs.signals import log_appended
from job_logs.models import LogCursor, LogLine
from job_logs.services import log_append, log_append_many


def new_job(company):
    return services.job_submit(company=company, job_type="demo.steps", params={})[0]


@pytest.fixture
def job(company):
    return new_job(company)


@pytest.fixture
def other_job(company):
    return new_job(company)


@pytest.fixture
def log_appended_calls():
    """Every log_appended sent, as (job_id, [line, ...]) pairs."""
    calls: list[tuple] = []

    def receive(sender, job_id, lines, **kwargs):
        calls.append((job_id, lines))

    log_appended.connect(receive, weak=False, dispatch_uid="tests.job_logs.test_services")
    yield calls
    log_appended.disconnect(dispatch_uid="tests.job_logs.test_services")


def stored(job) -> list[tuple[int, str, str]]:
    return list(LogLine.objects.filter(job=job).order_by("event_id").values_list("event_id", "message", "severity"))


# Numbering -------------------------------------------------------------------------------
def test_log_append_numbers_lines_1_2_3_per_job_independently(job, other_job):
    ids = [
        (j, log_append(job_id=j.pk, message=message).event_id)
        for j, message in [(job, "a1"), (other_job, "b1"), (job, "a2"), (job, "a3"), (other_job, "b2")]
    ]
    assert [event_id for j, event_id in ids if j == job] == [1, 2, 3]
    assert [event_id for j, event_id in ids if j == other_job] == [1, 2]
    assert stored(job) == [(1, "a1", "info"), (2, "a2", "info"), (3, "a3", "info")]
    assert stored(other_job) == [(1, "b1", "info"), (2, "b2", "info")]
    assert LogCursor.objects.get(job=job).last_event_id == 3
    assert LogCursor.objects.get(job=other_job).last_event_id == 2


def test_log_append_many_continues_the_numbering_in_order(job):
    log_append(job_id=job.pk, message="first")
    lines = log_append_many(job_id=job.pk, entries=[("second", "warning"), ("third", "error"), ("fourth", "success")])
    assert [(line.event_id, line.message, line.severity) for line in lines] == [
        (2, "second", "warning"), (3, "third", "error"), (4, "fourth", "success")
    ]
    assert stored(job) == [(1, "first", "info"), (2, "second", "warning"), (3, "third", "error"), (4, "fourth", "success")]


def test_a_chunk_larger_than_one_insert_is_stored_whole_and_in_order(job):
    from job_logs.services import INSERT_ROWS

    n = 2 * INSERT_ROWS + 7
    entries = [(f"line {i} ünïcode, 'quoted' %s", "warning" if i % 3 else "info") for i in range(1, n + 1)]
    lines = log_append_many(job_id=job.pk, entries=entries)
    assert [line.event_id for line in lines] == list(range(1, n + 1))
    assert stored(job) == [(i, message, severity) for i, (message, severity) in enumerate(entries, start=1)]
    times = set(LogLine.objects.filter(job=job).values_list("created_at", flat=True))
    assert times == {lines[0].created_at}  # one time for the chunk, as stored


def test_log_append_stores_the_line_with_its_time(job):
    before = timezone.now()
    line = log_append(job_id=job.pk, message="Task started", severity="success")
    row = LogLine.objects.get(job=job)
    assert (row.event_id, row.message, row.severity) == (1, "Task started", "success")
    assert line.event_id == row.event_id
    assert before <= row.created_at <= timezone.now()
    assert row.event_time == pytest.approx(row.created_at.timestamp())


# Publishing ------------------------------------------------------------------------------
def test_log_appended_is_sent_on_commit_once_per_stored_chunk(job, log_appended_calls, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        log_append(job_id=job.pk, message="a")
        log_append_many(job_id=job.pk, entries=[("b", "info"), ("c", "error")])
        log_append(job_id=job.pk, message="d", severity="success")
        assert log_appended_calls == []  # nothing before commit
    assert [(job_id, [(line.event_id, line.message) for line in lines]) for job_id, lines in log_appended_calls] == [
        (job.pk, [(1, "a")]), (job.pk, [(2, "b"), (3, "c")]), (job.pk, [(4, "d")])
    ]
    assert [line.event_id for _, lines in log_appended_calls for line in lines] == [e for e, _, _ in stored(job)]


def test_rolled_back_lines_are_neither_stored_nor_sent(job, log_appended_calls, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                log_append(job_id=job.pk, message="a")
                log_append(job_id=job.pk, message="b")
                raise RuntimeError("roll back")
    assert callbacks == []
    assert log_appended_calls == []
    assert stored(job) == []
    # The rolled-back numbers are handed out again: no hole.
    assert log_append(job_id=job.pk, message="c").event_id == 1


# The message size limit ------------------------------------------------------------------
def test_the_message_limit_is_64_kib(settings):
    assert settings.NEXUS_LOG_MAX_MESSAGE_BYTES == 64 * 1024


def _too_long(kind: str, limit: int) -> str:
    if kind == "ascii":
        return "x" * (limit + 1)
    if kind == "2-byte":
        return "é" * (limit // 2 + 1)
    if kind == "3-byte":
        return "€" * (limit // 3 + 1)
    return "🙂" * (limit // 4 + 1)


@pytest.mark.parametrize("kind", ["ascii", "2-byte", "3-byte", "4-byte"])
def test_a_message_over_the_byte_limit_raises_and_stores_nothing(
    job, kind, settings, log_appended_calls, django_capture_on_commit_callbacks
):
    limit = settings.NEXUS_LOG_MAX_MESSAGE_BYTES
    message = _too_long(kind, limit)
    assert len(message.encode("utf-8")) > limit
    if kind != "ascii":
        assert len(message) <= limit  # too long in bytes only, not in characters

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(LogMessageTooLong) as refused:
            log_append(job_id=job.pk, message=message)
    assert refused.value.field == "event_message"
    assert str(limit) in refused.value.message
    assert LogLine.objects.count() == 0
    assert not LogCursor.objects.filter(job=job, last_event_id__gt=0).exists()
    assert callbacks == [] and log_appended_calls == []
    assert log_append(job_id=job.pk, message="fine").event_id == 1


def test_one_message_over_the_limit_refuses_the_whole_batch(job, settings):
    log_append(job_id=job.pk, message="before")
    limit = settings.NEXUS_LOG_MAX_MESSAGE_BYTES
    with pytest.raises(LogMessageTooLong):
        log_append_many(job_id=job.pk, entries=[("fine", "info"), ("é" * (limit // 2 + 1), "info"), ("also", "info")])
    assert stored(job) == [(1, "before", "info")]
    assert LogCursor.objects.get(job=job).last_event_id == 1


@pytest.mark.parametrize("kind", ["ascii", "2-byte"])
def test_a_message_of_exactly_the_limit_is_stored_whole(job, kind, settings):
    limit = settings.NEXUS_LOG_MAX_MESSAGE_BYTES
    message = "x" * limit if kind == "ascii" else "é" * (limit // 2)
    assert len(message.encode("utf-8")) == limit
    log_append(job_id=job.pk, message=message)
    assert LogLine.objects.get(job=job).message == message


def test_the_message_limit_follows_the_setting(job, settings):
    settings.NEXUS_LOG_MAX_MESSAGE_BYTES = 10
    log_append(job_id=job.pk, message="x" * 10)
    with pytest.raises(LogMessageTooLong):
        log_append(job_id=job.pk, message="é" * 6)  # 6 characters, 12 bytes
    assert [message for _, message, _ in stored(job)] == ["x" * 10]


# The line cap ----------------------------------------------------------------------------
def _append_one_by_one(job, messages):
    return [log_append(job_id=job.pk, message=message) for message in messages]


def _append_in_one_batch(job, messages):
    return log_append_many(job_id=job.pk, entries=[(message, "info") for message in messages])


@pytest.mark.parametrize("append", [_append_one_by_one, _append_in_one_batch], ids=["one-by-one", "batch"])
def test_the_line_cap_stores_5_lines_and_one_truncation_line_and_counts_the_dropped(
    job, settings, append, log_appended_calls, django_capture_on_commit_callbacks
):
    settings.NEXUS_LOG_MAX_LINES = 5

    with django_capture_on_commit_callbacks(execute=True):
        append(job, [f"line {i}" for i in range(1, 9)])

    lines = stored(job)
    assert len(lines) == 6
    assert lines[:5] == [(i, f"line {i}", "info") for i in range(1, 6)]
    event_id, message, severity = lines[5]
    assert (event_id, severity) == (6, "warning")
    assert "limit of 5 " in message and "truncated" in message.lower()
    cursor = LogCursor.objects.get(job=job)
    assert (cursor.last_event_id, cursor.dropped) == (6, 3)  # 8 appended, 5 stored
    # The truncation line is published like any line; dropped lines are not.
    assert [line.event_id for _, lines in log_appended_calls for line in lines] == [1, 2, 3, 4, 5, 6]


def test_past_the_line_cap_log_append_returns_none_for_a_dropped_line(job, settings):
    settings.NEXUS_LOG_MAX_LINES = 5
    returned = _append_one_by_one(job, [f"line {i}" for i in range(1, 9)])
    assert [line.event_id for line in returned[:5]] == [1, 2, 3, 4, 5]
    assert (returned[5].event_id, returned[5].severity) == (6, "warning")  # the truncation line took its place
    assert returned[6:] == [None, None]


def test_after_the_truncation_line_further_appends_store_nothing_and_are_counted(
    job, settings, log_appended_calls, django_capture_on_commit_callbacks
):
    settings.NEXUS_LOG_MAX_LINES = 5
    _append_in_one_batch(job, [f"line {i}" for i in range(1, 9)])
    before = stored(job)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert log_append(job_id=job.pk, message="later", severity="error") is None
        assert log_append_many(job_id=job.pk, entries=[("x", "info"), ("y", "info")]) == []

    assert stored(job) == before
    assert sum(1 for _, message, _ in before if "limit of 5" in message) == 1  # still exactly one
    assert callbacks == [] and log_appended_calls == []
    cursor = LogCursor.objects.get(job=job)
    assert (cursor.last_event_id, cursor.dropped) == (6, 6)


def test_the_line_cap_is_per_job(job, other_job, settings):
    settings.NEXUS_LOG_MAX_LINES = 5
    _append_in_one_batch(job, [f"line {i}" for i in range(1, 9)])
    assert log_append(job_id=other_job.pk, message="mine").event_id == 1
    assert LogCursor.objects.get(job=other_job).dropped == 0


def test_exactly_the_cap_stores_every_line_and_no_truncation_line(job, settings):
    settings.NEXUS_LOG_MAX_LINES = 5
    _append_in_one_batch(job, [f"line {i}" for i in range(1, 6)])
    assert stored(job) == [(i, f"line {i}", "info") for i in range(1, 6)]
    assert LogCursor.objects.get(job=job).dropped == 0


# Leases ----------------------------------------------------------------------------------
def test_lines_of_an_attempt_that_does_not_hold_the_job_are_refused(job):
    with pytest.raises(LeaseLost):  # the job is queued: no attempt holds it
        log_append(job_id=job.pk, message="ghost", attempt=1)
    running = services.job_start(job_id=job.pk)
    with pytest.raises(LeaseLost):
        log_append(job_id=job.pk, message="stale", attempt=running.attempt + 1)
    assert stored(job) == []
    assert log_append(job_id=job.pk, message="mine", attempt=running.attempt).event_id == 1


@pytest.mark.django_db(transaction=True)
def test_a_runs_lines_outside_a_transaction_are_numbered_stored_sent_and_fenced(company, settings, log_appended_calls):
    """What a handler logs (with its attempt, outside any transaction): on PostgreSQL one
    statement a line or chunk once the job has lines; the same numbering, storage, signal, cap
    and fencing as everywhere else."""
    settings.NEXUS_LOG_MAX_LINES = 6
    job = services.job_start(job_id=new_job(company).pk)
    run = job.attempt
    first = log_append(job_id=job.pk, message="first", attempt=run)  # its first line makes its cursor
    chunk = log_append_many(job_id=job.pk, entries=[("it's 100% ünïcode", "warning"), ("two", "error")], attempt=run)
    with CaptureQueriesContext(connection) as queries:
        fourth = log_append(job_id=job.pk, message="fourth", attempt=run)
    if connection.vendor == "postgresql":
        assert len(queries) == 1
    assert [first.event_id, *(line.event_id for line in chunk), fourth.event_id] == [1, 2, 3, 4]
    assert stored(job) == [(1, "first", "info"), (2, "it's 100% ünïcode", "warning"), (3, "two", "error"),
                           (4, "fourth", "info")]
    assert [[(line.event_id, line.message) for line in lines] for _, lines in log_appended_calls] == [
        [(1, "first")], [(2, "it's 100% ünïcode"), (3, "two")], [(4, "fourth")]]
    assert all(job_id == job.pk for job_id, _ in log_appended_calls)

    log_append_many(job_id=job.pk, entries=[("five", "info"), ("six", "info"), ("seven", "info")], attempt=run)
    assert [message for _, message, _ in stored(job)[4:6]] == ["five", "six"]
    assert "limit of 6 " in stored(job)[6][1] and len(stored(job)) == 7  # the cap's truncation line
    assert log_append(job_id=job.pk, message="eight", attempt=run) is None and len(stored(job)) == 7

    other = services.job_start(job_id=new_job(company).pk)
    log_append(job_id=other.pk, message="mine", attempt=other.attempt)
    ContentJob.objects.filter(pk=other.pk).update(attempt=other.attempt + 1)  # another attempt holds it now
    sent = len(log_appended_calls)
    with pytest.raises(LeaseLost):
        log_append(job_id=other.pk, message="stale", attempt=other.attempt)
    with pytest.raises(LeaseLost):
        log_append_many(job_id=other.pk, entries=[("stale", "info"), ("too", "info")], attempt=other.attempt)
    assert stored(other) == [(1, "mine", "info")] and len(log_appended_calls) == sent
