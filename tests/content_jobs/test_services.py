"""The service layer: every transition, the stored events, idempotency and concurrency."""
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from content_jobs import services
from content_jobs.errors import IdempotencyConflict, InvalidParams, InvalidTransition, LeaseLost, UnknownJobType
from content_jobs.models import ContentJob, JobEvent
from content_jobs.signals import job_changed

S = ContentJob.Status


def new_job(company, **params) -> ContentJob:
    return services.job_submit(company=company, job_type="demo.steps", params=params)[0]


def in_status(company, status: str) -> ContentJob:
    job = new_job(company)
    if status == S.QUEUED:
        return job
    if status == S.CANCELLED:
        return services.job_cancel(job=job)
    job = services.job_start(job_id=job.pk)
    if status == S.DONE:
        return services.job_complete(job=job, result={})
    if status == S.FAILED:
        return services.job_fail(job=job, code="x", message="y")
    return job


def event_types(job) -> list[str]:
    return list(JobEvent.objects.filter(job=job).order_by("seq").values_list("type", flat=True))


ACTIONS = {
    "start": (lambda job: services.job_start(job_id=job.pk), {S.QUEUED}),
    "complete": (lambda job: services.job_complete(job=job, result={}), {S.RUNNING}),
    "fail": (lambda job: services.job_fail(job=job, code="c", message="m"), {S.RUNNING}),
    "stop_cancelled": (lambda job: services.job_stop_cancelled(job=job), {S.RUNNING}),
    "cancel": (lambda job: services.job_cancel(job=job), {S.QUEUED, S.RUNNING}),
    "retry": (lambda job: services.job_retry(job=job), {S.FAILED, S.CANCELLED}),
}


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_action_is_allowed_exactly_from_its_statuses(company, status, action):
    run, allowed = ACTIONS[action]
    job = in_status(company, status)
    events_before = JobEvent.objects.filter(job=job).count()
    if action == "start":  # start skips a job that is not queued instead of raising
        result = run(job)
        assert (result is not None) == (status in allowed)
        return
    if status in allowed:
        run(job)
        assert JobEvent.objects.filter(job=job).count() > events_before
    else:
        with pytest.raises(InvalidTransition):
            run(job)
        assert ContentJob.objects.get(pk=job.pk).status == status
        assert JobEvent.objects.filter(job=job).count() == events_before


def test_a_run_goes_queued_running_done_with_one_event_each(company):
    job = new_job(company)
    assert (job.status, job.attempt) == (S.QUEUED, 0)
    job = services.job_start(job_id=job.pk, worker_id="w1")
    assert (job.status, job.attempt, job.worker_id) == (S.RUNNING, 1, "w1")
    assert job.started_at and job.lease_expires_at > timezone.now()
    services.job_report_progress(job=job, progress=150, stage="half")
    assert ContentJob.objects.get(pk=job.pk).progress == 100  # clamped
    services.job_report_progress(job=job, progress=-5)
    assert ContentJob.objects.get(pk=job.pk).progress == 0
    job = services.job_complete(job=job, result={"ok": True})
    assert (job.status, job.progress, job.result) == (S.DONE, 100, {"ok": True})
    assert job.finished_at >= job.started_at
    assert event_types(job) == ["content_job.status", "content_job.running", "content_job.progress",
                                "content_job.progress", "content_job.done"]
    assert list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", flat=True)) == [1, 2, 3, 4, 5]


def test_stored_event_data_is_the_job_at_that_moment(company):
    import json

    job = services.job_start(job_id=new_job(company).pk)
    services.job_report_progress(job=job, progress=40, stage="s")
    data = json.loads(JobEvent.objects.get(job=job, seq=3).data)
    assert (data["status"], data["progress"], data["stage"], data["jobId"]) == ("running", 40.0, "s", str(job.pk))


def test_company_events_are_numbered_without_holes_across_jobs(company):
    a, b = new_job(company), new_job(company)
    services.job_start(job_id=b.pk)
    services.job_cancel(job=a)
    assert list(JobEvent.objects.filter(company=company).order_by("id").values_list("company_seq", flat=True)) == [1, 2, 3, 4]


def test_cancel_of_a_running_job_only_asks_and_retry_resets_it(company):
    job = services.job_start(job_id=new_job(company).pk)
    job = services.job_cancel(job=job)
    assert (job.status, job.cancel_requested) == (S.RUNNING, True)
    assert services.job_is_cancel_requested(job_id=job.pk)
    job = services.job_stop_cancelled(job=job)
    job = services.job_retry(job=job)
    assert (job.status, job.cancel_requested, job.progress, job.result, job.error) == (S.QUEUED, False, 0, None, None)
    assert services.job_start(job_id=job.pk).attempt == 2


def test_signals_are_sent_only_after_commit_and_never_for_a_rollback(company, django_capture_on_commit_callbacks):
    received = []
    job_changed.connect(lambda sender, event, **kw: received.append(event.type), weak=False, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            job = new_job(company)
            assert received == []  # not before commit
        assert received == ["content_job.status"]
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            with pytest.raises(RuntimeError):
                with transaction.atomic():
                    services.job_start(job_id=job.pk)
                    raise RuntimeError("roll back")
        assert callbacks == []
        assert received == ["content_job.status"]
        assert ContentJob.objects.get(pk=job.pk).status == S.QUEUED
        assert event_types(job) == ["content_job.status"]
    finally:
        job_changed.disconnect(dispatch_uid="t")


def test_submit_enqueues_the_run_task_on_commit(company, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = new_job(company)
    task = DBTaskResult.objects.get()
    assert task.args_kwargs["args"] == [str(job.pk)]
    assert task.task_path == "content_jobs.tasks.run_content_job"


def test_invalid_params_and_unknown_types_create_nothing(company):
    with pytest.raises(InvalidParams):
        services.job_submit(company=company, job_type="demo.steps", params={"steps": 0})
    with pytest.raises(UnknownJobType):
        services.job_submit(company=company, job_type="nope", params={})
    assert ContentJob.objects.count() == 0 and DBTaskResult.objects.count() == 0


def test_idempotency_same_body_same_job_other_body_conflict_other_company_separate(company, other_company):
    first, created = services.job_submit(company=company, job_type="demo.steps", params={"steps": 2}, idempotency_key="k")
    again, created_again = services.job_submit(company=company, job_type="demo.steps", params={"steps": 2}, idempotency_key="k")
    assert created and not created_again and again.pk == first.pk
    with pytest.raises(IdempotencyConflict):
        services.job_submit(company=company, job_type="demo.steps", params={"steps": 3}, idempotency_key="k")
    elsewhere, _ = services.job_submit(company=other_company, job_type="demo.steps", params={"steps": 2}, idempotency_key="k")
    assert elsewhere.pk != first.pk
    assert ContentJob.objects.count() == 2


def test_an_idempotency_key_older_than_its_window_names_a_new_job(company, settings):
    old, _ = services.job_submit(company=company, job_type="demo.steps", params={}, idempotency_key="k")
    ContentJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(seconds=settings.NEXUS_IDEMPOTENCY_SECONDS + 1))
    new, created = services.job_submit(company=company, job_type="demo.steps", params={}, idempotency_key="k")
    assert created and new.pk != old.pk
    assert ContentJob.objects.get(pk=old.pk).idempotency_key is None


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_identical_submissions_create_one_job(company):
    barrier = threading.Barrier(4)
    results, errors = [], []

    def submit():
        try:
            barrier.wait()
            job, _ = services.job_submit(company=company, job_type="demo.steps", params={"steps": 1}, idempotency_key="same")
            results.append(job.pk)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1 and len(results) == 4
    assert ContentJob.objects.filter(idempotency_key="same").count() == 1


def test_writes_of_an_attempt_that_lost_its_lease_are_refused(company):
    job = services.job_start(job_id=new_job(company).pk)
    ContentJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert [j.pk for j in services.jobs_reap()] == [job.pk]
    fresh = ContentJob.objects.get(pk=job.pk)
    assert fresh.status == S.QUEUED
    with pytest.raises(LeaseLost):
        services.job_report_progress(job=job, progress=50, attempt=1)
    with pytest.raises(LeaseLost):
        services.job_complete(job=job, result={}, attempt=1)
    second = services.job_start(job_id=job.pk)
    assert second.attempt == 2
    with pytest.raises(LeaseLost):  # the first attempt came back: still refused
        services.job_complete(job=job, result={}, attempt=1)
    assert services.job_complete(job=second, result={}, attempt=2).status == S.DONE


def test_the_reaper_fails_a_job_with_no_attempts_left_with_worker_lost(company, settings):
    settings.NEXUS_MAX_ATTEMPTS = 1
    job = services.job_start(job_id=new_job(company).pk, worker_id="w9")
    ContentJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    services.jobs_reap()
    job = ContentJob.objects.get(pk=job.pk)
    assert job.status == S.FAILED and job.error["code"] == "worker_lost"
    assert event_types(job)[-1] == "content_job.failed"
    from job_logs.models import LogLine

    assert "w9 stopped renewing its lease" in LogLine.objects.get(job=job).message


def test_a_heartbeat_renews_the_lease_of_its_own_attempt_only(company):
    job = services.job_start(job_id=new_job(company).pk)
    ContentJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())
    assert services.job_heartbeat(job_id=job.pk, attempt=1)
    assert ContentJob.objects.get(pk=job.pk).lease_expires_at > timezone.now() + timedelta(seconds=20)
    assert not services.job_heartbeat(job_id=job.pk, attempt=2)
    assert services.jobs_reap() == []


def test_prune_deletes_old_finished_jobs_with_events_lines_and_tasks(company, django_capture_on_commit_callbacks):
    from job_logs.models import LogLine
    from job_logs.services import log_append

    with django_capture_on_commit_callbacks(execute=True):
        old = in_status(company, S.DONE)
        recent = in_status(company, S.DONE)
        running = in_status(company, S.RUNNING)
    log_append(job_id=old.pk, message="bye")
    ContentJob.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=40))
    counts = services.jobs_prune(finished_before=timezone.now() - timedelta(days=30))
    assert counts["jobs"] == 1 and counts["lines"] == 1 and counts["events"] == 3
    assert set(ContentJob.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    assert not JobEvent.objects.filter(job_id=old.pk).exists() and not LogLine.objects.filter(job_id=old.pk).exists()
