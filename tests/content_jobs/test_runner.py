"""Jobs run through a real task worker thread, on the test database."""
import time

import pytest
from rest_framework import serializers

from content_jobs import registry, services
from content_jobs.models import ContentJob, JobEvent
from content_jobs.worker import EmbeddedWorker
from job_logs.models import LogLine
from tests.conftest import wait_for, wait_for_job

pytestmark = pytest.mark.django_db(transaction=True)


class NoParams(registry.StrictParamsSerializer):
    pass


class ProgressParams(registry.StrictParamsSerializer):
    mode = serializers.ChoiceField(choices=["burst", "pause", "stages"])


@registry.register("test.boom", params=NoParams)
def boom(ctx):
    ctx.log("about to fail")
    raise ZeroDivisionError("the handler divided by zero")


@registry.register("test.progress", params=ProgressParams)
def progress_handler(ctx):
    mode = ctx.params["mode"]
    if mode == "burst":
        for i in range(1, 5001):
            ctx.progress(i / 50)
    elif mode == "pause":
        ctx.progress(10)
        ctx.progress(50)  # coalesced: waits for the timer
        time.sleep(0.6)
        ctx.log("woke up")
    else:
        for i in range(20):
            ctx.progress(i, stage=f"stage {i}")
    return {}


def messages(job_id) -> list[str]:
    return list(LogLine.objects.filter(job_id=job_id).order_by("event_id").values_list("message", flat=True))


def submit(api, jobs_url, job_type, params):
    response = api.post(jobs_url, {"jobType": job_type, "params": params}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["jobId"]


def test_demo_steps_runs_to_done_with_its_lines_and_events(api, jobs_url, worker):
    job_id = submit(api, jobs_url, "demo.steps", {"steps": 4, "delayMs": 0})
    job = wait_for_job(job_id)
    assert (job.status, job.progress, job.stage, job.result, job.attempt) == ("done", 100, "step 4/4", {"steps": 4}, 1)
    assert messages(job_id) == ["step 1/4", "step 2/4", "step 3/4", "step 4/4", "finished"]
    assert list(LogLine.objects.filter(job_id=job_id).order_by("event_id").values_list("event_id", flat=True)) == [1, 2, 3, 4, 5]
    assert LogLine.objects.get(job_id=job_id, event_id=5).severity == "success"
    types = list(JobEvent.objects.filter(job_id=job_id).order_by("seq").values_list("type", flat=True))
    assert types[:2] == ["content_job.status", "content_job.running"]
    assert types[-1] == "content_job.done" and types.count("content_job.done") == 1
    assert set(types[2:-1]) == {"content_job.progress"}


def test_fail_at_fails_the_job_with_its_error(api, jobs_url, worker):
    job = wait_for_job(submit(api, jobs_url, "demo.steps", {"steps": 5, "failAt": 3, "delayMs": 0}))
    assert job.status == "failed" and job.error["code"] == "step_failed"
    assert messages(job.pk)[-1].startswith("step 3/5 failed")
    assert LogLine.objects.filter(job=job, severity="error").count() == 1


def test_an_unexpected_exception_fails_the_job_with_handler_error_and_the_worker_goes_on(api, jobs_url, worker):
    job = wait_for_job(submit(api, jobs_url, "test.boom", {}))
    assert job.status == "failed"
    assert job.error["code"] == "handler_error"
    assert "ZeroDivisionError: the handler divided by zero" in job.error["message"]
    error_line = LogLine.objects.get(job=job, severity="error")
    assert "Traceback" in error_line.message and "ZeroDivisionError" in error_line.message
    after = wait_for_job(submit(api, jobs_url, "demo.steps", {"steps": 1, "delayMs": 0}))
    assert after.status == "done"


def test_the_run_task_skips_a_job_that_is_no_longer_queued(company):
    from content_jobs.runner import run_job

    job, _ = services.job_submit(company=company, job_type="demo.steps", params={})
    services.job_cancel(job=job)
    assert run_job(job.pk) is None
    assert ContentJob.objects.get(pk=job.pk).attempt == 0


def test_cancel_of_a_running_job_stops_it_at_a_checkpoint(api, jobs_url, worker):
    job_id = submit(api, jobs_url, "demo.steps", {"steps": 200, "delayMs": 20})
    wait_for(lambda: LogLine.objects.filter(job_id=job_id).exists())
    assert api.post(f"{jobs_url}/{job_id}/cancel").status_code == 202
    job = wait_for_job(job_id)
    assert job.status == "cancelled"
    lines = messages(job_id)
    assert lines[-1] == "Cancelled at a checkpoint."
    assert "finished" not in lines and len(lines) < 200


def test_retry_runs_the_job_again_as_attempt_2(api, jobs_url, worker):
    failed = wait_for_job(submit(api, jobs_url, "demo.steps", {"steps": 2, "failAt": 2, "delayMs": 0}))
    assert api.post(f"{jobs_url}/{failed.pk}/retry").status_code == 202
    again = wait_for(lambda: (j := ContentJob.objects.get(pk=failed.pk)).attempt == 2 and j.is_terminal and j)
    assert again.status == "failed"
    assert messages(failed.pk).count("step 1/2") == 2  # the second run wrote its own lines after the first's

    cancelled_id = submit(api, jobs_url, "demo.steps", {"steps": 50, "delayMs": 20})
    assert api.post(f"{jobs_url}/{cancelled_id}/cancel").status_code == 202
    cancelled = wait_for_job(cancelled_id)  # at once if still queued, at a checkpoint if running
    assert cancelled.status == "cancelled"
    assert api.post(f"{jobs_url}/{cancelled_id}/retry").status_code == 202
    done = wait_for(lambda: (j := ContentJob.objects.get(pk=cancelled_id)).status == "done" and j)
    assert done.attempt == cancelled.attempt + 1


def test_progress_bursts_are_coalesced_and_the_last_value_wins(api, jobs_url, worker, settings):
    settings.NEXUS_PROGRESS_EVENTS_PER_SECOND = 10
    started = time.monotonic()
    job = wait_for_job(submit(api, jobs_url, "test.progress", {"mode": "burst"}))
    elapsed = time.monotonic() - started
    progress = JobEvent.objects.filter(job=job, type="content_job.progress")
    assert 1 <= progress.count() <= elapsed * 10 + 2  # 5,000 calls, a handful of rows
    import json

    last = json.loads(progress.order_by("-seq").first().data)
    assert last["progress"] == 100.0


def test_a_coalesced_value_is_written_by_the_timer_while_the_handler_sleeps(api, jobs_url, worker):
    job_id = submit(api, jobs_url, "test.progress", {"mode": "pause"})
    # Before the handler woke up (and logged), 50% was already stored.
    line_time = wait_for(lambda: LogLine.objects.filter(job_id=job_id).values_list("created_at", flat=True).first())
    import json

    fifty = [e for e in JobEvent.objects.filter(job_id=job_id, type="content_job.progress").order_by("seq")
             if json.loads(e.data)["progress"] == 50.0]
    assert fifty and fifty[0].created_at < line_time


def test_stage_changes_are_never_coalesced(api, jobs_url, worker):
    job = wait_for_job(submit(api, jobs_url, "test.progress", {"mode": "stages"}))
    assert JobEvent.objects.filter(job=job, type="content_job.progress").count() == 20


def test_a_submission_wakes_the_worker_at_once(transactional_db, api, jobs_url):
    from content_jobs import worker as worker_module

    slow = EmbeddedWorker(poll_seconds=30).start()
    previous, worker_module._current = worker_module._current, slow
    try:
        time.sleep(0.2)  # the worker is asleep, for 30 s unless woken
        job_id = submit(api, jobs_url, "demo.steps", {"steps": 1, "delayMs": 0})
        job = wait_for_job(job_id, timeout=3)
        assert job.status == "done"
    finally:
        worker_module._current = previous
        slow.stop()
