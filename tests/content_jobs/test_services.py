"""The service layer: every transition of the table, the stored stream events and their signal,
enqueueing on commit, idempotency (also under concurrency), and the runner's lease fencing."""
import json
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult, get_date_max

from content_jobs import events, services, worker
from content_jobs.errors import IdempotencyConflict, InvalidParams, InvalidTransition, LeaseLost, UnknownJobType
from content_jobs.models import Company, ContentJob, JobEvent
from content_jobs.representation import job_representation
from content_jobs.services import TRANSITIONS
from content_jobs.signals import job_changed
from tests.conftest import race

S = ContentJob.Status
RUN_TASK = "content_jobs.tasks.run_content_job"
URL_KEYS = ("eventsUrl", "logsUrl")


# Factories and helpers -------------------------------------------------------------------
def submit(company, *, params=None, key=None, source_task_id=None, job_type="demo.steps", by=None):
    return services.job_submit(
        company=company,
        job_type=job_type,
        params={"steps": 3} if params is None else params,
        source_task_id=source_task_id,
        idempotency_key=key,
        by=by,
    )


def new_job(company, **kwargs) -> ContentJob:
    return submit(company, **kwargs)[0]


def job_in(company, status: str) -> ContentJob:
    """A job brought to `status` through the services only."""
    job = new_job(company)
    if status == S.QUEUED:
        return job
    if status == S.CANCELLED:
        return services.job_cancel(job=job)
    job = services.job_start(job_id=job.pk, worker_id="w1")
    if status == S.DONE:
        return services.job_complete(job=job, result={"ok": True})
    if status == S.FAILED:
        return services.job_fail(job=job, code="boom", message="it broke")
    return job


def reload(job) -> ContentJob:
    return ContentJob.objects.get(pk=job.pk)


def stored_events(job) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job_id=job.pk).order_by("seq"))


def event_types(job) -> list[str]:
    return [event.type for event in stored_events(job)]


def without_urls(data: dict) -> dict:
    # The URLs carry a stream token with a timestamp: equal jobs may differ there.
    return {key: value for key, value in data.items() if key not in URL_KEYS}


def assert_event_carries(event: JobEvent, job: ContentJob) -> None:
    """The event's data is the job as job_representation gives it, for the object the service
    returned and for the stored row, at that moment."""
    data = json.loads(event.data)
    assert without_urls(data) == without_urls(json.loads(events.encode(job_representation(job))))
    assert without_urls(data) == without_urls(json.loads(events.encode(job_representation(reload(job)))))
    assert data["eventsUrl"].startswith(f"/api/companies/{job.company_id}/content-jobs/{job.pk}/events?token=")
    assert data["logsUrl"].startswith(f"/jobs/{job.pk}/logs?token=")


def expire_lease(job) -> None:
    ContentJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def job_changed_calls():
    """Every job_changed the services send, as the keyword arguments of the signal."""
    calls: list[dict] = []

    def receive(sender, **kwargs):
        calls.append({**kwargs, "in_atomic_block": connection.in_atomic_block})

    job_changed.connect(receive, weak=False, dispatch_uid="tests.content_jobs.test_services")
    yield calls
    job_changed.disconnect(dispatch_uid="tests.content_jobs.test_services")


# The transition table --------------------------------------------------------------------
CALLS = {
    "job_start": lambda job: services.job_start(job_id=job.pk, worker_id="w2"),
    "job_report_progress": lambda job: services.job_report_progress(job=job, progress=50, stage="half"),
    "job_complete": lambda job: services.job_complete(job=job, result={"ok": True}),
    "job_fail": lambda job: services.job_fail(job=job, code="boom", message="it broke"),
    "job_stop_cancelled": lambda job: services.job_stop_cancelled(job=job),
    "job_cancel": lambda job: services.job_cancel(job=job),
    "job_retry": lambda job: services.job_retry(job=job),
}


def _reap(job):
    expire_lease(job)
    (reaped,) = services.jobs_reap()
    return reaped


LEGAL = [
    # from, service, to, the event it stores
    (S.QUEUED, "job_start", S.RUNNING, "content_job.running"),
    (S.QUEUED, "job_cancel", S.CANCELLED, "content_job.cancelled"),
    (S.RUNNING, "job_complete", S.DONE, "content_job.done"),
    (S.RUNNING, "job_fail", S.FAILED, "content_job.failed"),
    (S.RUNNING, "job_stop_cancelled", S.CANCELLED, "content_job.cancelled"),
    (S.RUNNING, "jobs_reap", S.QUEUED, "content_job.status"),
    (S.FAILED, "job_retry", S.QUEUED, "content_job.status"),
    (S.CANCELLED, "job_retry", S.QUEUED, "content_job.status"),
]

# The services that refuse (InvalidTransition) a job in any status not listed, and the status
# they would move it to.
REFUSING = {
    "job_complete": ({S.RUNNING}, S.DONE),
    "job_fail": ({S.RUNNING}, S.FAILED),
    "job_stop_cancelled": ({S.RUNNING}, S.CANCELLED),
    "job_cancel": ({S.QUEUED, S.RUNNING}, S.CANCELLED),
    "job_retry": ({S.FAILED, S.CANCELLED}, S.QUEUED),
}
REFUSALS = [
    pytest.param(status, name, id=f"{name}-from-{status}")
    for name, (allowed, _target) in REFUSING.items()
    for status in S
    if status not in allowed
]


def test_transition_table_is_the_documented_one():
    assert TRANSITIONS == {
        S.QUEUED: {S.RUNNING, S.CANCELLED},
        S.RUNNING: {S.DONE, S.FAILED, S.CANCELLED, S.QUEUED},
        S.DONE: set(),
        S.FAILED: {S.QUEUED},
        S.CANCELLED: {S.QUEUED},
    }


def test_every_legal_transition_of_the_table_is_exercised_below():
    assert {(src, dst) for src, _, dst, _ in LEGAL} == {(src, dst) for src, dsts in TRANSITIONS.items() for dst in dsts}


def test_refusals_below_cover_18_status_and_service_pairs():
    assert len(REFUSALS) == 18


@pytest.mark.parametrize(
    "source, service, target, event_type",
    [pytest.param(*row, id=f"{row[1]}-{row[0]}-to-{row[2]}") for row in LEGAL],
)
def test_legal_transition_moves_the_job_and_stores_one_event(company, source, service, target, event_type):
    job = job_in(company, source)
    assert reload(job).status == source
    seq_before = job.event_seq
    updated_before = reload(job).updated_at

    moved = _reap(job) if service == "jobs_reap" else CALLS[service](job)

    assert moved.status == target
    row = reload(job)
    assert row.status == target
    assert row.updated_at >= updated_before
    assert (row.finished_at is not None) == (target in ContentJob.TERMINAL)
    new = [event for event in stored_events(job) if event.seq > seq_before]
    assert [(event.seq, event.type) for event in new] == [(seq_before + 1, event_type)]
    assert json.loads(new[0].data)["status"] == target


@pytest.mark.parametrize("status, service", REFUSALS)
def test_service_refuses_a_job_in_a_status_it_cannot_leave_with_invalid_transition(
    company, status, service, django_capture_on_commit_callbacks
):
    job = job_in(company, status)
    before = reload(job)
    tasks_before = DBTaskResult.objects.count()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(InvalidTransition) as refused:
            CALLS[service](job)

    assert (refused.value.current, refused.value.target) == (status, REFUSING[service][1])
    assert refused.value.status_code == 409
    after = reload(job)
    for field in ("status", "attempt", "progress", "result", "error", "cancel_requested", "started_at",
                  "finished_at", "updated_at", "event_seq"):
        assert getattr(after, field) == getattr(before, field), field
    assert len(stored_events(job)) == before.event_seq
    assert callbacks == []  # no signal, no enqueue
    assert DBTaskResult.objects.count() == tasks_before


@pytest.mark.parametrize("status", [S.RUNNING, S.DONE, S.FAILED, S.CANCELLED])
def test_start_of_a_job_that_is_not_queued_changes_nothing_and_returns_none(company, status):
    job = job_in(company, status)
    before = reload(job)
    assert services.job_start(job_id=job.pk, worker_id="late") is None
    after = reload(job)
    assert (after.status, after.attempt, after.started_at, after.worker_id, after.event_seq) == (
        before.status, before.attempt, before.started_at, before.worker_id, before.event_seq
    )
    assert len(stored_events(job)) == before.event_seq


def test_start_of_an_unknown_job_returns_none(db):
    import uuid

    assert services.job_start(job_id=uuid.uuid4()) is None


@pytest.mark.parametrize("status", [S.QUEUED, S.DONE, S.FAILED, S.CANCELLED])
def test_progress_of_a_job_that_is_not_running_is_ignored(company, status):
    job = job_in(company, status)
    before = reload(job)
    returned = services.job_report_progress(job=job, progress=50, stage="half")
    assert returned.status == status
    after = reload(job)
    assert (after.progress, after.stage, after.updated_at) == (before.progress, before.stage, before.updated_at)
    assert len(stored_events(job)) == before.event_seq


def test_services_decide_on_the_stored_status_not_on_a_stale_object(company):
    stale = new_job(company)  # the caller still holds it as queued
    services.job_cancel(job=stale)
    assert stale.status == S.QUEUED
    with pytest.raises(InvalidTransition):
        services.job_cancel(job=stale)
    with pytest.raises(InvalidTransition):
        services.job_complete(job=stale, result={})
    assert services.job_start(job_id=stale.pk) is None
    assert event_types(stale) == ["content_job.status", "content_job.cancelled"]


def test_a_retry_of_a_job_another_caller_already_retried_is_refused(company, django_capture_on_commit_callbacks):
    stale = job_in(company, S.FAILED)  # both callers hold it as failed
    with django_capture_on_commit_callbacks(execute=True):
        services.job_retry(job=stale)
    assert stale.status == S.FAILED
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(InvalidTransition) as refused:
            services.job_retry(job=stale)
    assert (refused.value.current, refused.value.target) == (S.QUEUED, S.QUEUED)
    assert callbacks == []
    assert DBTaskResult.objects.count() == 2  # the first run, and one more: not two more
    assert event_types(stale) == ["content_job.status", "content_job.running", "content_job.failed", "content_job.status"]


# The rows each service writes ------------------------------------------------------------
def test_submit_stores_a_queued_job_with_the_params_defaults_filled_in(company, member):
    before = timezone.now()
    job, created = submit(company, params={"steps": 7}, source_task_id="task-9", by=member)
    assert created is True
    row = reload(job)
    assert (row.company_id, row.job_type, row.status, row.source_task_id, row.created_by_id) == (
        company.pk, "demo.steps", S.QUEUED, "task-9", member.pk
    )
    assert row.params == {"steps": 7, "delayMs": 200, "failAt": None}
    assert (row.attempt, row.progress, row.stage, row.cancel_requested) == (0, 0.0, "", False)
    assert (row.result, row.error, row.started_at, row.finished_at) == (None, None, None, None)
    assert before <= row.created_at == row.updated_at <= timezone.now()


def test_start_runs_the_next_attempt_under_a_lease(company, settings):
    job = new_job(company)
    before = timezone.now()
    job = services.job_start(job_id=job.pk, worker_id="worker-7")
    row = reload(job)
    assert (row.status, row.attempt, row.worker_id, row.progress, row.stage) == (S.RUNNING, 1, "worker-7", 0.0, "")
    assert before <= row.started_at <= timezone.now()
    assert row.finished_at is None
    lease = timedelta(seconds=settings.NEXUS_LEASE_SECONDS)
    assert before + lease <= row.lease_expires_at <= timezone.now() + lease


@pytest.mark.parametrize(
    "reported, stored", [(42.5, 42.5), (0, 0.0), (100, 100.0), (150, 100.0), (-5, 0.0), (1e9, 100.0)]
)
def test_progress_is_stored_clamped_to_0_to_100(company, reported, stored):
    job = job_in(company, S.RUNNING)
    returned = services.job_report_progress(job=job, progress=reported, stage="working")
    assert returned.progress == stored
    row = reload(job)
    assert (row.status, row.progress, row.stage) == (S.RUNNING, stored, "working")
    assert json.loads(stored_events(job)[-1].data)["progress"] == stored


def test_progress_without_a_stage_keeps_the_stage_and_a_long_stage_is_cut_to_255(company):
    job = job_in(company, S.RUNNING)
    services.job_report_progress(job=job, progress=10, stage="s" * 300)
    assert reload(job).stage == "s" * 255
    services.job_report_progress(job=job, progress=20)
    assert (reload(job).progress, reload(job).stage) == (20.0, "s" * 255)


def test_complete_finishes_at_100_with_the_result(company):
    job = job_in(company, S.RUNNING)
    services.job_report_progress(job=job, progress=40)
    job = services.job_complete(job=job, result={"steps": 3})
    row = reload(job)
    assert (row.status, row.progress, row.result, row.error, row.lease_expires_at) == (
        S.DONE, 100.0, {"steps": 3}, None, None
    )
    assert row.started_at <= row.finished_at <= timezone.now()


def test_fail_stores_the_error_and_keeps_the_progress(company):
    job = job_in(company, S.RUNNING)
    services.job_report_progress(job=job, progress=40)
    job = services.job_fail(job=job, code="step_failed", message="m" * 5000)
    row = reload(job)
    assert (row.status, row.progress, row.result, row.lease_expires_at) == (S.FAILED, 40.0, None, None)
    assert row.error == {"code": "step_failed", "message": "m" * 1000}
    assert row.started_at <= row.finished_at


def test_cancel_of_queued_job_cancels_it_at_once(company):
    job = new_job(company)
    returned = services.job_cancel(job=job)
    row = reload(job)
    assert returned.status == row.status == S.CANCELLED
    assert (row.attempt, row.started_at, row.cancel_requested) == (0, None, False)
    assert row.finished_at is not None
    assert event_types(job) == ["content_job.status", "content_job.cancelled"]


def test_cancel_of_running_job_only_requests_it_and_the_job_keeps_running(company):
    job = job_in(company, S.RUNNING)
    returned = services.job_cancel(job=job)
    row = reload(job)
    assert (returned.status, returned.cancel_requested) == (S.RUNNING, True)
    assert (row.status, row.cancel_requested, row.finished_at) == (S.RUNNING, True, None)
    assert services.job_is_cancel_requested(job_id=job.pk) is True
    assert event_types(job)[-1] == "content_job.progress"
    assert json.loads(stored_events(job)[-1].data)["cancelRequested"] is True


def test_a_second_cancel_of_a_running_job_stores_no_second_event(company):
    job = job_in(company, S.RUNNING)
    services.job_cancel(job=job)
    events_after_first = len(stored_events(job))
    services.job_cancel(job=job)
    assert len(stored_events(job)) == events_after_first
    assert (reload(job).status, reload(job).cancel_requested) == (S.RUNNING, True)


def test_a_requested_cancel_ends_as_cancelled_when_the_handler_stops(company):
    job = job_in(company, S.RUNNING)
    services.job_cancel(job=job)
    job = services.job_stop_cancelled(job=job)
    row = reload(job)
    assert (row.status, row.error, row.lease_expires_at) == (S.CANCELLED, None, None)
    assert row.finished_at is not None
    assert event_types(job)[-1] == "content_job.cancelled"


@pytest.mark.parametrize("status", [S.DONE, S.FAILED, S.CANCELLED])
def test_cancel_of_finished_job_is_invalid_transition(company, status):
    job = job_in(company, status)
    with pytest.raises(InvalidTransition):
        services.job_cancel(job=job)
    assert (reload(job).status, reload(job).cancel_requested) == (status, False)


@pytest.mark.parametrize("how", ["failed", "cancelled-while-running"])
def test_retry_resets_the_job_and_its_next_start_is_attempt_2(company, how):
    job = job_in(company, S.RUNNING)
    services.job_report_progress(job=job, progress=60, stage="step 2/3")
    if how == "failed":
        job = services.job_fail(job=job, code="boom", message="it broke")
    else:
        services.job_cancel(job=job)
        job = services.job_stop_cancelled(job=job)
    # A partial result written before the end must not survive the retry either.
    ContentJob.objects.filter(pk=job.pk).update(result={"partial": True})

    returned = services.job_retry(job=job)

    row = reload(job)
    assert returned.status == row.status == S.QUEUED
    assert (row.progress, row.stage, row.result, row.error, row.cancel_requested) == (0.0, "", None, None, False)
    assert (row.started_at, row.finished_at, row.attempt) == (None, None, 1)
    assert event_types(job)[-1] == "content_job.status"
    started = services.job_start(job_id=job.pk)
    assert (started.attempt, reload(job).attempt, reload(job).status) == (2, 2, S.RUNNING)
    assert reload(job).started_at is not None


def test_retry_of_a_cancelled_queued_job_runs_attempt_1(company):
    job = services.job_retry(job=job_in(company, S.CANCELLED))
    assert services.job_start(job_id=job.pk).attempt == 1


# Stored stream events --------------------------------------------------------------------
def test_each_change_stores_exactly_one_event_of_its_type_carrying_the_job_at_that_moment(company):
    job, _ = submit(company)
    seen = 0

    def expect(returned: ContentJob, event_type: str | None) -> None:
        nonlocal seen
        new = [event for event in stored_events(job) if event.seq > seen]
        if event_type is None:
            assert new == []
            return
        assert [(event.seq, event.type) for event in new] == [(seen + 1, event_type)]
        assert_event_carries(new[0], returned)
        seen += 1

    expect(job, "content_job.status")
    job = services.job_start(job_id=job.pk)
    expect(job, "content_job.running")
    job = services.job_report_progress(job=job, progress=30, stage="step 1/3")
    expect(job, "content_job.progress")
    job = services.job_report_progress(job=job, progress=60)
    expect(job, "content_job.progress")
    job = services.job_cancel(job=job)
    expect(job, "content_job.progress")
    job = services.job_cancel(job=job)
    expect(job, None)
    job = services.job_stop_cancelled(job=job)
    expect(job, "content_job.cancelled")
    job = services.job_retry(job=job)
    expect(job, "content_job.status")
    job = services.job_start(job_id=job.pk)
    expect(job, "content_job.running")
    job = services.job_fail(job=job, code="boom", message="it broke")
    expect(job, "content_job.failed")
    job = services.job_retry(job=job)
    expect(job, "content_job.status")
    job = services.job_start(job_id=job.pk)
    expect(job, "content_job.running")
    job = services.job_complete(job=job, result={"steps": 3})
    expect(job, "content_job.done")

    assert [event.seq for event in stored_events(job)] == list(range(1, 13))
    statuses = [(json.loads(e.data)["status"], json.loads(e.data)["progress"]) for e in stored_events(job)]
    assert statuses == [
        ("queued", 0.0), ("running", 0.0), ("running", 30.0), ("running", 60.0), ("running", 60.0),
        ("cancelled", 60.0), ("queued", 0.0), ("running", 0.0), ("failed", 0.0), ("queued", 0.0),
        ("running", 0.0), ("done", 100.0),
    ]
    assert [json.loads(e.data)["attempt"] for e in stored_events(job)] == [0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3]
    assert reload(job).event_seq == 12


def test_event_seq_counts_1_2_3_per_job_independently(company):
    a = new_job(company)
    b = new_job(company)
    services.job_start(job_id=b.pk)
    services.job_start(job_id=a.pk)
    services.job_report_progress(job=a, progress=10)
    services.job_cancel(job=b)
    services.job_report_progress(job=a, progress=20)
    assert [(e.seq, e.type) for e in stored_events(a)] == [
        (1, "content_job.status"), (2, "content_job.running"), (3, "content_job.progress"), (4, "content_job.progress")
    ]
    assert [(e.seq, e.type) for e in stored_events(b)] == [
        (1, "content_job.status"), (2, "content_job.running"), (3, "content_job.progress")
    ]


def test_company_events_are_numbered_without_holes_across_jobs(company, other_company):
    a, b = new_job(company), new_job(company)
    elsewhere = new_job(other_company)
    services.job_start(job_id=b.pk)
    services.job_cancel(job=a)
    services.job_start(job_id=elsewhere.pk)
    ours = JobEvent.objects.filter(company=company).order_by("company_seq")
    assert [(e.company_seq, e.job_id, e.type) for e in ours] == [
        (1, a.pk, "content_job.status"), (2, b.pk, "content_job.status"),
        (3, b.pk, "content_job.running"), (4, a.pk, "content_job.cancelled"),
    ]
    assert list(JobEvent.objects.filter(company=other_company).values_list("company_seq", flat=True)) == [1, 2]
    assert Company.objects.get(pk=company.pk).event_seq == 4


def test_job_changed_is_sent_after_commit_once_per_stored_event(
    company, job_changed_calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job, _ = submit(company)
        job = services.job_start(job_id=job.pk)
        job = services.job_report_progress(job=job, progress=50)
        services.job_cancel(job=job)
        assert job_changed_calls == []  # nothing before commit
    stored = stored_events(job)
    assert len(stored) == 4
    assert [call["event"].pk for call in job_changed_calls] == [event.pk for event in stored]
    assert [call["event"].type for call in job_changed_calls] == [
        "content_job.status", "content_job.running", "content_job.progress", "content_job.progress"
    ]
    assert {(call["job_id"], call["company_id"]) for call in job_changed_calls} == {(job.pk, company.pk)}


def test_a_refused_change_sends_no_signal(company, job_changed_calls, django_capture_on_commit_callbacks):
    job = job_in(company, S.DONE)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(InvalidTransition):
            services.job_retry(job=job)
    assert job_changed_calls == []


def test_a_rolled_back_submit_sends_nothing_and_leaves_no_job_event_or_task(
    company, job_changed_calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                job, _ = submit(company)
                services.job_start(job_id=job.pk)
                services.job_report_progress(job=job, progress=50)
                raise RuntimeError("roll back")
    assert callbacks == []
    assert job_changed_calls == []
    assert ContentJob.objects.count() == 0
    assert JobEvent.objects.count() == 0
    assert DBTaskResult.objects.count() == 0
    assert Company.objects.get(pk=company.pk).event_seq == 0


def test_a_rolled_back_change_of_a_stored_job_sends_nothing_and_leaves_no_event(
    company, job_changed_calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job, _ = submit(company)
    assert len(job_changed_calls) == 1
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                services.job_start(job_id=job.pk)
                services.job_cancel(job=job)
                raise RuntimeError("roll back")
    assert callbacks == []
    assert len(job_changed_calls) == 1
    row = reload(job)
    assert (row.status, row.attempt, row.cancel_requested, row.event_seq) == (S.QUEUED, 0, False, 1)
    assert event_types(job) == ["content_job.status"]
    # The rolled-back numbers are handed out again: no hole in the stream.
    services.job_start(job_id=job.pk)
    assert [e.seq for e in stored_events(job)] == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_job_changed_waits_for_the_real_commit(company, job_changed_calls):
    with transaction.atomic():
        job, _ = submit(company)
        services.job_start(job_id=job.pk)
        assert job_changed_calls == []
    assert [call["event"].type for call in job_changed_calls] == ["content_job.status", "content_job.running"]
    assert [call["in_atomic_block"] for call in job_changed_calls] == [False, False]


def test_events_stored_together_are_numbered_in_order_each_companys_counter_taken_in_id_order(
        company, other_company, django_capture_on_commit_callbacks):
    first, second = sorted([company, other_company], key=lambda c: c.pk)
    jobs = [services.job_start(job_id=new_job(c).pk, worker_id="w") for c in (second, first, second)]
    seqs = {c.pk: Company.objects.get(pk=c.pk).event_seq for c in (first, second)}
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True) as sent:
        with transaction.atomic(), events.stored_together():
            for job in jobs:  # as the worker's loop ends a run, without a savepoint
                services.job_fail(job=job, code="x", message="x", attempt=1, savepoint=False)
            assert not JobEvent.objects.filter(type="content_job.failed").exists()  # not yet stored
    counters = [q["sql"] for q in queries.captured_queries if f'UPDATE "{Company._meta.db_table}"' in q["sql"]]
    # One counter statement a company, the lower id first (two such blocks never wait on each
    # other's locks), and each company's events in the order they were recorded.
    assert len(counters) == 2
    assert any(k in counters[0] for k in (str(first.pk), first.pk.hex))
    assert any(k in counters[1] for k in (str(second.pk), second.pk.hex))
    stored = {e.job_id: e for e in JobEvent.objects.filter(type="content_job.failed")}
    assert stored[jobs[1].pk].company_seq == seqs[first.pk] + 1
    assert [stored[jobs[0].pk].company_seq, stored[jobs[2].pk].company_seq] == [seqs[second.pk] + 1, seqs[second.pk] + 2]
    assert len(sent) == 3  # each published on commit


def test_an_event_recorded_in_a_savepoint_inside_a_stored_together_block_is_undone_with_it(company):
    kept, undone = new_job(company), new_job(company)
    with transaction.atomic(), events.stored_together():
        services.job_cancel(job=kept)  # takes a savepoint of its own: stored at once
        try:
            with transaction.atomic():  # a savepoint: its event is stored at once, and rolled back with it
                services.job_cancel(job=undone)
                raise RuntimeError("undo")
        except RuntimeError:
            pass
    assert list(JobEvent.objects.filter(type="content_job.cancelled").values_list("job_id", flat=True)) == [kept.pk]
    assert ContentJob.objects.get(pk=undone.pk).status == S.QUEUED


# Enqueueing ------------------------------------------------------------------------------
def test_submit_stores_the_run_task_with_the_job_and_wakes_the_workers_on_commit(
    company, django_capture_on_commit_callbacks, monkeypatch
):
    woken = []
    monkeypatch.setattr(worker, "wake", lambda: woken.append("wake"))
    with django_capture_on_commit_callbacks(execute=True):
        job, _ = submit(company)
        assert DBTaskResult.objects.count() == 1  # in the job's own transaction
        assert woken == []  # a worker woken now would not see it yet
    assert woken == ["wake"]
    task = DBTaskResult.objects.get()
    assert task.args_kwargs == {"args": [str(job.pk)], "kwargs": {}}
    assert task.task_path == RUN_TASK
    assert task.status == "READY"


def test_a_submissions_run_is_the_row_the_librarys_enqueue_stores(company):
    """The run is written out with the job (content_jobs.task_rows.enqueue_row): the same row,
    field for field, as django-tasks' own enqueue of the run task stores (its pre_save
    receiver's run_after too), but for its id and its time."""
    from content_jobs.tasks import run_content_job

    before = timezone.now()
    job = new_job(company)
    ours = DBTaskResult.objects.get(args_kwargs__args=[str(job.pk)])
    theirs = DBTaskResult.objects.get(pk=run_content_job.enqueue(str(job.pk)).id)
    fields = [f.attname for f in DBTaskResult._meta.concrete_fields if f.attname not in ("id", "enqueued_at")]
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(theirs, f) for f in fields}
    assert before <= ours.enqueued_at <= theirs.enqueued_at
    assert ours.run_after == theirs.run_after == get_date_max()


@pytest.mark.django_db(transaction=True)
def test_a_submission_outside_a_transaction_is_stored_whole_and_committed_by_one_statement_on_postgresql(company):
    """On PostgreSQL the job, its run and its event are one statement, and outside a
    transaction that statement is its commit: another connection sees all three at once.
    Elsewhere they are three statements (and the counter's) in one transaction."""
    with CaptureQueriesContext(connection) as queries:
        job = new_job(company)
    statements = [q["sql"] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        assert len(statements) == 1 and not connection.in_atomic_block
        import psycopg

        settings = connection.settings_dict
        with psycopg.connect(host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"],
                             dbname=settings["NAME"]) as other:
            seen = other.execute(
                "SELECT (SELECT count(*) FROM content_jobs_contentjob WHERE id = %s),"
                " (SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE args_kwargs -> 'args' ->> 0 = %s),"
                " (SELECT count(*) FROM content_jobs_jobevent WHERE job_id = %s)",
                [job.pk, str(job.pk), job.pk]).fetchone()
        assert seen == (1, 1, 1)
    else:
        # the job, its run, the company's counter, the event, in one transaction
        assert [sql.split()[0] for sql in statements] == ["BEGIN", "INSERT", "INSERT", "UPDATE", "INSERT", "COMMIT"]
    event = JobEvent.objects.get(job=job)
    assert (event.seq, event.company_seq, event.type) == (1, 1, "content_job.status")
    assert json.loads(event.data) == job_representation(reload(job))


@pytest.mark.django_db(transaction=True)
def test_a_submission_whose_event_cannot_be_stored_stores_no_job_and_no_run(company):
    """The company is gone (deleted meanwhile): its counter gives the event no number, and
    nothing of the submission is stored, on either database."""
    Company.objects.filter(pk=company.pk).delete()
    with pytest.raises(Exception):
        new_job(company)
    assert (ContentJob.objects.count(), DBTaskResult.objects.count(), JobEvent.objects.count()) == (0, 0, 0)


def test_a_rolled_back_submit_leaves_neither_job_nor_task(company, django_capture_on_commit_callbacks, monkeypatch):
    woken = []
    monkeypatch.setattr(worker, "wake", lambda: woken.append("wake"))
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                submit(company)
                raise RuntimeError("the caller's transaction fails")
    assert (ContentJob.objects.count(), JobEvent.objects.count(), DBTaskResult.objects.count()) == (0, 0, 0)
    assert woken == []


def test_retry_enqueues_another_run_with_the_change(company, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = job_in(company, S.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        services.job_retry(job=job)
        assert DBTaskResult.objects.count() == 2
    assert [t.args_kwargs["args"] for t in DBTaskResult.objects.all()] == [[str(job.pk)], [str(job.pk)]]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"steps": 0}, "steps"),
        ({"steps": 10_001}, "steps"),
        ({"steps": "many"}, "steps"),
        ({"delayMs": -1}, "delayMs"),
        ({"stpes": 3}, "stpes"),
        ([1, 2], "non_field_errors"),
    ],
)
@pytest.mark.parametrize("key", [None, "k-1"])
def test_invalid_params_raise_and_create_nothing(company, params, field, key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(InvalidParams) as refused:
            submit(company, params=params, key=key)
    assert field in refused.value.errors
    assert ContentJob.objects.count() == 0
    assert JobEvent.objects.count() == 0
    assert DBTaskResult.objects.count() == 0


@pytest.mark.parametrize("job_type", ["no.such.type", "", "   ", "DEMO.STEPS"])
@pytest.mark.parametrize("key", [None, "k-1"])
def test_unknown_job_type_raises_and_creates_nothing(company, job_type, key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(UnknownJobType) as refused:
            submit(company, job_type=job_type, params={}, key=key)
    assert refused.value.field == "jobType"
    assert ContentJob.objects.count() == 0
    assert JobEvent.objects.count() == 0
    assert DBTaskResult.objects.count() == 0


# Idempotency -----------------------------------------------------------------------------
def test_same_key_and_same_body_returns_the_first_job_and_creates_nothing(
    company, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first, created = submit(company, params={"steps": 2}, key="k", source_task_id="t-1")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again, created_again = submit(company, params={"steps": 2}, key="k", source_task_id="t-1")
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert callbacks == []
    assert ContentJob.objects.count() == 1
    assert len(stored_events(first)) == 1
    assert DBTaskResult.objects.count() == 1


def test_same_key_replays_the_job_as_it_is_now(company):
    first, _ = submit(company, key="k")
    services.job_start(job_id=first.pk)
    again, created = submit(company, key="k")
    assert (again.pk, again.status, again.attempt, created) == (first.pk, S.RUNNING, 1, False)


@pytest.mark.parametrize(
    "other",
    [
        {"params": {"steps": 3}},
        {"params": {"steps": 2, "delayMs": 0}},
        {"source_task_id": "t-2"},
        {"source_task_id": None},
        {"job_type": "render.card", "params": {"title": "x", "theme": "dark"}},
    ],
)
def test_same_key_with_a_different_body_is_an_idempotency_conflict(company, other):
    first, _ = submit(company, params={"steps": 2}, key="k", source_task_id="t-1")
    body = {"params": {"steps": 2}, "source_task_id": "t-1", **other}
    with pytest.raises(IdempotencyConflict) as refused:
        submit(company, key="k", **body)
    assert refused.value.status_code == 422
    assert list(ContentJob.objects.values_list("pk", flat=True)) == [first.pk]
    assert reload(first).params == {"steps": 2, "delayMs": 200, "failAt": None}


def test_same_key_in_another_company_creates_a_separate_job(company, other_company):
    ours, created_ours = submit(company, key="k")
    theirs, created_theirs = submit(other_company, key="k")
    assert created_ours and created_theirs
    assert theirs.pk != ours.pk
    assert (reload(ours).company_id, reload(theirs).company_id) == (company.pk, other_company.pk)
    assert ContentJob.objects.count() == 2


def test_a_key_older_than_the_idempotency_window_names_a_new_job(company, settings):
    old, _ = submit(company, key="k")
    ContentJob.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.NEXUS_IDEMPOTENCY_SECONDS + 1)
    )
    new, created = submit(company, key="k")
    assert created is True
    assert new.pk != old.pk
    assert reload(new).idempotency_key == "k"
    assert reload(old).idempotency_key is None
    assert ContentJob.objects.count() == 2
    again, created_again = submit(company, key="k")
    assert (again.pk, created_again) == (new.pk, False)


def test_an_expired_key_may_come_back_with_a_different_body(company, settings):
    old, _ = submit(company, params={"steps": 2}, key="k")
    ContentJob.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.NEXUS_IDEMPOTENCY_SECONDS + 1)
    )
    new, created = submit(company, params={"steps": 9}, key="k")
    assert created and new.pk != old.pk and reload(new).params["steps"] == 9


def test_a_key_still_inside_its_window_is_replayed(company, settings):
    old, _ = submit(company, key="k")
    ContentJob.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.NEXUS_IDEMPOTENCY_SECONDS - 60)
    )
    again, created = submit(company, key="k")
    assert (again.pk, created) == (old.pk, False)
    assert ContentJob.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_identical_submissions_create_one_job(company):
    rounds = 5

    def submit_same(thread_no: int, round_no: int) -> tuple[str, bool]:
        job, created = services.job_submit(
            company=company, job_type="demo.steps", params={"steps": 3}, idempotency_key=f"race-{round_no}"
        )
        return str(job.pk), created

    for (job_a, created_a), (job_b, created_b) in zip(*race(rounds, submit_same)):
        assert job_a == job_b  # both callers get the same jobId
        assert sorted([created_a, created_b]) == [False, True]
    assert ContentJob.objects.count() == rounds
    for round_no in range(rounds):
        (job,) = ContentJob.objects.filter(idempotency_key=f"race-{round_no}")
        assert event_types(job) == ["content_job.status"]
    assert DBTaskResult.objects.count() == rounds  # one run enqueued per job


@pytest.mark.django_db(transaction=True)
def test_two_workers_starting_the_same_job_at_once_start_it_once(company):
    jobs = [new_job(company) for _ in range(5)]

    def start_same(worker_no: int, round_no: int):
        return services.job_start(job_id=jobs[round_no].pk, worker_id=f"w{worker_no}")

    for job, first, second in zip(jobs, *race(len(jobs), start_same)):
        (winner,) = [run for run in (first, second) if run is not None]  # exactly one started it
        row = reload(job)
        assert (row.status, row.attempt, row.worker_id, row.event_seq) == (S.RUNNING, 1, winner.worker_id, 2)
        assert event_types(job) == ["content_job.status", "content_job.running"]


# Leases: the runner's fencing ------------------------------------------------------------
def test_writes_of_an_attempt_that_lost_its_lease_are_refused(company):
    job = services.job_start(job_id=new_job(company).pk)
    expire_lease(job)
    assert [j.pk for j in services.jobs_reap()] == [job.pk]
    assert reload(job).status == S.QUEUED
    with pytest.raises(LeaseLost):
        services.job_report_progress(job=job, progress=50, attempt=1)
    with pytest.raises(LeaseLost):
        services.job_complete(job=job, result={}, attempt=1)
    second = services.job_start(job_id=job.pk)
    assert second.attempt == 2
    with pytest.raises(LeaseLost):  # the first attempt came back: still refused
        services.job_complete(job=job, result={}, attempt=1)
    assert services.job_complete(job=second, result={}, attempt=2).status == S.DONE


def test_a_runs_writes_carry_what_others_changed_meanwhile(company):
    """A run writes from the job it started with; a cancellation requested since then is in
    its next events, numbered after the cancellation's own, and in the job it gets back."""
    run = services.job_start(job_id=new_job(company).pk, worker_id="w1")
    services.job_cancel(job=run)  # another request: the run's object does not know
    assert run.cancel_requested is False
    run = services.job_report_progress(job=run, progress=60, stage="late", attempt=run.attempt)
    assert run.cancel_requested is True
    done = services.job_complete(job=run, result={"ok": True}, attempt=run.attempt)
    stored = stored_events(done)
    assert [(e.seq, e.type) for e in stored] == [
        (1, "content_job.status"), (2, "content_job.running"), (3, "content_job.progress"),
        (4, "content_job.progress"), (5, "content_job.done"),
    ]
    progress, finished = (json.loads(e.data) for e in stored[3:])
    assert (progress["cancelRequested"], progress["progress"], progress["stage"]) == (True, 60.0, "late")
    assert (finished["cancelRequested"], finished["status"], finished["result"]) == (True, "done", {"ok": True})
    assert_event_carries(stored[-1], done)
    row = reload(done)
    assert (row.status, row.event_seq, row.cancel_requested, row.progress) == (S.DONE, 5, True, 100.0)


def test_the_reaper_queues_a_job_with_attempts_left_again(company, settings, django_capture_on_commit_callbacks):
    settings.NEXUS_MAX_ATTEMPTS = 2
    job = services.job_start(job_id=new_job(company).pk, worker_id="w9")
    job = services.job_report_progress(job=job, progress=40, stage="halfway", attempt=1)
    expire_lease(job)
    with django_capture_on_commit_callbacks(execute=True):
        services.jobs_reap()
    row = reload(job)
    assert (row.status, row.attempt, row.worker_id, row.lease_expires_at) == (S.QUEUED, 1, "", None)
    # The lost attempt's start and progress went with it: a queued job shows none (a start
    # kept was counted by /metrics as a run from it to a cancel of the queued job).
    assert (row.started_at, row.finished_at, row.progress, row.stage) == (None, None, 0.0, "")
    assert json.loads(stored_events(row)[-1].data)["startedAt"] is None
    assert event_types(job)[-1] == "content_job.status"
    assert [task.args_kwargs["args"] for task in DBTaskResult.objects.all()] == [[str(job.pk)]] * 2  # first run, requeue
    assert services.job_start(job_id=job.pk).attempt == 2


def test_the_reaper_fails_a_job_with_no_attempts_left_with_worker_lost(company, settings):
    settings.NEXUS_MAX_ATTEMPTS = 1
    job = services.job_start(job_id=new_job(company).pk, worker_id="w9")
    expire_lease(job)
    services.jobs_reap()
    row = reload(job)
    assert row.status == S.FAILED and row.error["code"] == "worker_lost"
    assert event_types(job)[-1] == "content_job.failed"
    from job_logs.models import LogLine

    assert "w9 stopped renewing its lease" in LogLine.objects.get(job=job).message


# Lost runs: task rows whose worker is gone ------------------------------------------------
def claimed(job, worker_id: str, seconds_ago: float = 60) -> DBTaskResult:
    """The job's waiting run, claimed by `worker_id` as django-tasks-db's worker claims it."""
    run = DBTaskResult.objects.get(status="READY", args_kwargs__args__0=str(job.pk))
    run.claim(worker_id)
    DBTaskResult.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=seconds_ago))
    return run


def test_the_reaper_cancels_a_job_whose_cancel_was_asked_for_instead_of_running_it_again(
        company, settings, django_capture_on_commit_callbacks):
    """A cancel asked of a running job is done at the handler's next checkpoint; when its
    worker dies first, no handler is left to stop, and another attempt would run what the
    cancel meant to stop: the reaper cancels the job, attempts left or not."""
    from job_logs.models import LogLine

    settings.NEXUS_MAX_ATTEMPTS = 3
    job = new_job(company)
    run = claimed(job, "w7")
    services.job_start(job_id=job.pk, worker_id="w7")
    services.job_cancel(job=job)  # 202: cancelRequested, the job still running
    expire_lease(job)
    with django_capture_on_commit_callbacks(execute=True) as published:
        assert [j.pk for j in services.jobs_reap()] == [job.pk]
    row = reload(job)
    assert (row.status, row.attempt, row.cancel_requested, row.lease_expires_at, row.worker_id) == (
        S.CANCELLED, 1, True, None, "")
    assert row.finished_at is not None and row.error is None
    assert event_types(job) == ["content_job.status", "content_job.running", "content_job.progress",
                                "content_job.cancelled"]
    assert len(published) == 2  # the cancelled event, and the log line
    assert LogLine.objects.get(job=job).message == (
        "Attempt 1 lost: w7 stopped renewing its lease. Cancelled, as was asked.")
    assert not DBTaskResult.objects.filter(status="READY").exists()  # no run queued again
    assert services.runs_reap() == []  # the lost run is closed as lost, and nothing is queued
    run.refresh_from_db()
    assert (run.status, run.exception_class_path) == ("FAILED", "content_jobs.errors.RunLost")
    assert not DBTaskResult.objects.filter(status="READY").exists()
    assert services.job_retry(job=row).status == S.QUEUED  # and it can be retried as any cancelled job


def test_a_run_whose_worker_died_before_it_started_the_job_is_closed_and_the_job_runs_again(
        company, django_capture_on_commit_callbacks):
    from job_logs.models import LogLine

    job = new_job(company)
    lost = claimed(job, "w-dead")
    with django_capture_on_commit_callbacks(execute=True):
        assert [j.pk for j in services.runs_reap()] == [job.pk]
    lost.refresh_from_db()
    assert (lost.status, lost.exception_class_path) == ("FAILED", "content_jobs.errors.RunLost")
    assert f"w-dead stopped before this run of job {job.pk} ended" in lost.traceback
    (again,) = DBTaskResult.objects.filter(status="READY")
    assert again.args_kwargs["args"] == [str(job.pk)]
    assert LogLine.objects.get(job=job).message == "w-dead took this job and stopped before it started it. Queued again."
    assert reload(job).status == S.QUEUED
    assert services.runs_reap() == []  # closed once, queued once


def test_the_run_of_an_attempt_the_reaper_took_back_is_closed_without_a_second_run(company):
    job = new_job(company)
    lost = claimed(job, "w9")
    services.job_start(job_id=job.pk, worker_id="w9")
    expire_lease(job)
    services.jobs_reap()  # queued again, with a run of its own
    assert services.runs_reap() == []
    lost.refresh_from_db()
    assert lost.status == "FAILED"
    assert [(r.status, r.args_kwargs["args"]) for r in DBTaskResult.objects.exclude(pk=lost.pk)] == [("READY", [str(job.pk)])]


def test_runs_reap_leaves_a_fresh_claim_and_a_run_whose_worker_holds_the_job_alone(company):
    starting = new_job(company)
    fresh = claimed(starting, "w1", seconds_ago=1)  # its worker may be starting the job now
    held = new_job(company)
    long_run = claimed(held, "w2", seconds_ago=3600)  # a long job, its lease renewed
    services.job_start(job_id=held.pk, worker_id="w2")
    assert services.runs_reap() == []
    assert {r.pk: r.status for r in DBTaskResult.objects.all()} == {fresh.pk: "RUNNING", long_run.pk: "RUNNING"}


def test_the_run_of_a_job_its_worker_ended_is_closed_successful_when_the_worker_died_before_closing_it(company):
    done, failed = new_job(company), new_job(company)
    runs = [claimed(done, "w3"), claimed(failed, "w4")]
    services.job_complete(job=services.job_start(job_id=done.pk, worker_id="w3"), result={}, attempt=1)
    services.job_fail(job=services.job_start(job_id=failed.pk, worker_id="w4"), code="boom", message="the handler raised",
                      attempt=1)
    assert services.runs_reap() == []
    for run in runs:
        run.refresh_from_db()
        assert (run.status, run.exception_class_path, run.traceback) == ("SUCCESSFUL", "", "")
        assert run.finished_at is not None
    assert (reload(done).status, reload(failed).status) == (S.DONE, S.FAILED)


def test_the_run_of_a_job_the_reaper_failed_is_closed_as_lost(company, settings):
    settings.NEXUS_MAX_ATTEMPTS = 1
    job = new_job(company)
    run = claimed(job, "w5")
    services.job_start(job_id=job.pk, worker_id="w5")
    expire_lease(job)
    services.jobs_reap()  # no attempts left: failed with worker_lost, its worker still named
    assert (reload(job).status, reload(job).worker_id) == (S.FAILED, "w5")
    assert services.runs_reap() == []
    run.refresh_from_db()
    assert (run.status, run.exception_class_path) == ("FAILED", "content_jobs.errors.RunLost")


def test_a_heartbeat_renews_the_lease_of_its_own_attempt_only(company):
    job = services.job_start(job_id=new_job(company).pk)
    ContentJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())
    assert services.job_heartbeat(job_id=job.pk, attempt=1)
    assert reload(job).lease_expires_at > timezone.now() + timedelta(seconds=20)
    assert not services.job_heartbeat(job_id=job.pk, attempt=2)
    assert services.jobs_reap() == []


def test_prune_deletes_old_finished_jobs_with_events_lines_and_tasks(company, django_capture_on_commit_callbacks):
    from job_logs.models import LogLine
    from job_logs.services import log_append

    with django_capture_on_commit_callbacks(execute=True):
        old = job_in(company, S.DONE)
        recent = job_in(company, S.DONE)
        running = job_in(company, S.RUNNING)
    log_append(job_id=old.pk, message="bye")
    ContentJob.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=40))
    counts = services.jobs_prune(finished_before=timezone.now() - timedelta(days=30))
    assert counts["jobs"] == 1 and counts["lines"] == 1 and counts["events"] == 3
    assert set(ContentJob.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    assert not JobEvent.objects.filter(job_id=old.pk).exists() and not LogLine.objects.filter(job_id=old.pk).exists()


def test_prune_deletes_every_file_its_jobs_runs_saved_a_failed_ones_too(company):
    """A failed run's files are listed by no result: a prune read the results for them, and
    left those on disk for ever."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from content_jobs.runner import artifact_storage_name

    done, failed, recent = job_in(company, S.DONE), job_in(company, S.FAILED), job_in(company, S.DONE)
    paths = {job.pk: [default_storage.save(artifact_storage_name(job.pk, name), ContentFile(b"x"))
                      for name in ("a.txt", "b.png")] for job in (done, failed, recent)}
    ContentJob.objects.filter(pk__in=[done.pk, failed.pk]).update(finished_at=timezone.now() - timedelta(days=40))
    assert services.jobs_prune(finished_before=timezone.now() - timedelta(days=30), storage=default_storage)["jobs"] == 2
    assert {path: default_storage.exists(path) for path in sum(paths.values(), [])} == {
        **{path: False for path in paths[done.pk] + paths[failed.pk]}, **{path: True for path in paths[recent.pk]}}


@pytest.mark.django_db(transaction=True)
def test_a_submission_that_fails_inside_a_callers_transaction_leaves_that_transaction_usable(company):
    """The caller's own writes before and after a refused submission still commit (a savepoint
    holds the submission, as PostgreSQL aborts a whole transaction at an error)."""
    gone = Company.objects.create(slug="gone", name="Gone")
    Company.objects.filter(pk=gone.pk).delete()
    with transaction.atomic():
        kept = new_job(company)
        with pytest.raises(Exception):
            new_job(gone)  # its counter gives the event no number: the statement fails
        also = new_job(company)
    assert set(ContentJob.objects.values_list("pk", flat=True)) == {kept.pk, also.pk}
    assert JobEvent.objects.count() == DBTaskResult.objects.count() == 2


def test_the_reaper_reads_running_runs_by_their_index_not_the_whole_task_table(company):
    """Its pass runs every few seconds in every worker; django-tasks-db indexes only ready rows,
    so without the project's index of running rows it read every finished one too."""
    from django.db import connection, transaction

    for _ in range(3):
        claimed(new_job(company), "w-dead", seconds_ago=3600)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # the test table is small: a scan would win by cost
                cursor.execute("SET LOCAL enable_seqscan = off")
        plan = services._claims_before(timezone.now()).explain()
    assert "nexus_task_running_started" in plan, plan


@pytest.mark.django_db
def test_events_are_indexed_by_their_two_streams_order_and_nothing_else():
    """Every event written updates each index of its table: the streams read events by
    (job, seq) and (company, company_seq), and nothing reads them by time."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, JobEvent._meta.db_table)
    indexed = {tuple(c["columns"]) for c in constraints.values() if (c["index"] or c["unique"]) and not c["primary_key"]}
    assert indexed == {("job_id", "seq"), ("company_id", "company_seq")}
