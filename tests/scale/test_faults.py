"""Fault tests on real processes with real signals: workers killed mid-job, many workers draining
one queue, a web process killed under its streaming clients, Redis restarted mid-job."""
import json
import signal
import threading
import time

import httpx
import pytest

from tests.conftest import wait_for
from tests.live import free_port
from tests.sse_client import Received, read_stream

pytestmark = pytest.mark.live


def submit(server, params, job_type="demo.steps") -> dict:
    with server.client("alice") as client:
        response = client.post(f"/api/companies/{server.company()}/content-jobs", json={"jobType": job_type, "params": params})
    assert response.status_code == 202, response.text
    return response.json()


def get_job(server, job_id) -> dict:
    with server.client("alice") as client:
        return client.get(f"/api/companies/{server.company()}/content-jobs/{job_id}").json()


def log_lines(server, job_id) -> list[dict]:
    with server.client("alice") as client:
        body = client.get(f"/api/companies/{server.company()}/content-jobs/{job_id}/logs", params={"limit": 5000}).json()
    return body["results"]


def wait_until(predicate, timeout=30.0, interval=0.05):
    return wait_for(predicate, timeout=timeout, interval=interval)


def test_job_of_a_killed_worker_completes_on_another_with_every_committed_line_once(fresh_workers):
    cluster = fresh_workers
    victim = cluster.start_worker("victim")
    job = submit(cluster.a, {"steps": 12, "delayMs": 150})
    running = wait_until(lambda: (j := get_job(cluster.a, job["jobId"]))["status"] == "running" and j)
    assert running["attempt"] == 1
    wait_until(lambda: len(log_lines(cluster.a, job["jobId"])) >= 3)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    before = log_lines(cluster.a, job["jobId"])
    cluster.start_worker("survivor")

    # The lease (3 s) runs out, the survivor's reaper queues the job again and runs attempt 2.
    done = wait_until(lambda: (j := get_job(cluster.a, job["jobId"]))["status"] in ("done", "failed") and j, timeout=40)
    assert done["status"] == "done"
    assert done["attempt"] == 2
    after = log_lines(cluster.a, job["jobId"])
    ids = [line["event_id"] for line in after]
    assert ids == list(range(1, len(ids) + 1))  # every line once, in order, no hole
    assert after[: len(before)] == before  # what the dead worker had committed is still there
    messages = [line["event_message"] for line in after]
    assert any(m.startswith("Attempt 1 lost: victim stopped renewing its lease") for m in messages)
    # Attempt 2 ran every step again from the start and finished.
    assert messages[-1] == "finished"
    assert messages.count("step 12/12") == 1


def test_a_job_that_loses_its_worker_on_its_last_attempt_fails_with_worker_lost(fresh_workers):
    cluster = fresh_workers
    victim = cluster.start_worker("last-victim", NEXUS_MAX_ATTEMPTS="1")
    job = submit(cluster.a, {"steps": 50, "delayMs": 100})
    wait_until(lambda: get_job(cluster.a, job["jobId"])["status"] == "running")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    cluster.start_worker("reaper-only", NEXUS_MAX_ATTEMPTS="1")
    failed = wait_until(lambda: (j := get_job(cluster.a, job["jobId"]))["status"] != "running" and j, timeout=30)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "worker_lost"
    assert log_lines(cluster.a, job["jobId"])[-1]["severity"] == "error"


def test_four_workers_drain_500_jobs_and_run_each_exactly_once(fresh_workers):
    cluster = fresh_workers
    for i in range(4):
        cluster.start_worker(f"drain-{i}")
    company = cluster.a.company()
    job_ids = []
    with cluster.a.client("alice") as client:
        for _ in range(500):
            response = client.post(f"/api/companies/{company}/content-jobs",
                                   json={"jobType": "demo.steps", "params": {"steps": 1, "delayMs": 0}})
            assert response.status_code == 202
            job_ids.append(response.json()["jobId"])

    def all_done():
        with cluster.a.client("alice") as client:
            done = client.get(f"/api/companies/{company}/content-jobs", params={"status": "done", "pageSize": 1}).json()
            queued = client.get(f"/api/companies/{company}/content-jobs", params={"status": "queued", "pageSize": 1}).json()
            running = client.get(f"/api/companies/{company}/content-jobs", params={"status": "running", "pageSize": 1}).json()
        return not queued["results"] and not running["results"] and done["results"]

    wait_until(all_done, timeout=120, interval=0.5)
    # Side effects, not statuses: each run writes "step 1/1" and "finished"; a job run twice
    # would have four lines, and its attempt would be 2.
    out = cluster.a.manage("shell", "-c", (
        "import json; from job_logs.models import LogLine; from content_jobs.models import ContentJob; "
        "from django.db.models import Count, Max; "
        f"ids = {job_ids!r}; "
        "lines = dict(LogLine.objects.filter(job_id__in=ids).values_list('job_id').annotate(n=Count('id')).values_list('job_id', 'n')); "
        "attempts = ContentJob.objects.filter(pk__in=ids).aggregate(m=Max('attempt'))['m']; "
        "workers = sorted(set(ContentJob.objects.filter(pk__in=ids).values_list('worker_id', flat=True))); "
        "print('RESULT ' + json.dumps({'lines': sorted(set(lines.values())), 'jobs': len(lines), 'attempts': attempts, 'workers': workers}))"
    ))
    result = json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:])
    assert result == {"lines": [2], "jobs": 500, "attempts": 1, "workers": result["workers"]}
    assert len(result["workers"]) >= 2  # the queue really was shared


def test_clients_of_a_killed_web_process_resume_on_the_other_without_missing_anything(fresh_workers, tmp_path):
    cluster = fresh_workers
    cluster.start_worker("stream-worker")
    job = submit(cluster.a, {"steps": 30, "delayMs": 100})
    # A spare web process to kill: the job's clients start there.
    port = free_port()
    victim = cluster.a.spawn("serve", "--port", str(port), name="victim-web")
    wait_until(lambda: _healthy(f"http://127.0.0.1:{port}"), timeout=20)
    results: list[tuple[Received, Received]] = []
    firsts: list[Received] = []

    def client(kind: str):
        path = job["logsUrl"] if kind == "logs" else job["eventsUrl"]
        first = Received()
        firsts.append(first)
        try:
            read_stream(f"http://127.0.0.1:{port}", path, into=first, timeout=30)
        except (httpx.HTTPError, OSError):
            pass  # the process died under us
        second = read_stream(cluster.b.url, path, last_event_id=first.last_id, timeout=30)
        results.append((first, second))

    threads = [threading.Thread(target=client, args=(kind,)) for kind in ("logs", "events") * 5]
    for t in threads:
        t.start()
    wait_until(lambda: len(firsts) == 10 and all(f.events for f in firsts))  # every client is streaming
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    for t in threads:
        t.join(60)
    assert len(results) == 10
    for first, second in results:
        assert first.events, "the client had received events before the kill"
        assert not first.ended  # the first connection was cut, not ended
        assert second.ended
        ids = first.ids + second.ids
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # no gap, no duplicate
    log_results = [r for r in results if r[0].events[0][0] == "message"]
    for first, second in log_results:
        messages = [json.loads(e[2])["log"]["event_message"] for e in first.events + second.events]
        assert messages == [f"step {i}/30" for i in range(1, 31)] + ["finished"]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_streams_recover_after_redis_restarts_mid_job_with_nothing_missing(fresh_workers):
    cluster = fresh_workers
    cluster.start_worker("redis-worker")
    job = submit(cluster.a, {"steps": 40, "delayMs": 100})
    received = Received()
    reader = threading.Thread(
        target=lambda: read_stream(cluster.b.url, job["logsUrl"], into=received, timeout=60)
    )
    reader.start()
    wait_until(lambda: len(received.events) >= 5)
    cluster.redis.stop()
    time.sleep(1.0)  # lines are written while Redis is down: stored, not published
    cluster.redis.start()
    reader.join(60)
    assert received.ended
    messages = [json.loads(e[2])["log"]["event_message"] for e in received.events]
    assert messages == [f"step {i}/40" for i in range(1, 41)] + ["finished"]
    assert received.ids == list(range(1, 42))
    assert get_job(cluster.a, job["jobId"])["status"] == "done"
