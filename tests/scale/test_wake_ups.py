"""Wake-ups at scale: a submission wakes one sleeping worker of any process, never a busy one, so
a job submitted while another runs starts at once on a free worker."""
import time

import pytest

from tests.live import LiveServer
from tests.scale.test_faults import get_job, submit, wait_until

pytestmark = pytest.mark.live

# What starts a job here is a wake-up: the workers look for tasks on their own every 30 s only.
SLEEPY = {"NEXUS_WORKER_POLL_SECONDS": "30"}


@pytest.fixture
def web_with_worker(fresh_workers):
    """A third web process that runs jobs too (NEXUS_EMBEDDED_WORKER=true): a submission to it
    wakes its own worker directly, not through Redis, so that worker starts a job without
    having taken a wake-up."""
    cluster = fresh_workers
    env = {**cluster.a.extra_env, **SLEEPY, "NEXUS_EMBEDDED_WORKER": "true"}
    server = LiveServer(var_dir=cluster.a.var_dir, extra_env=env, database_url=cluster.a.database_url,
                        data=cluster.a.data)
    server.start()
    yield server
    server.stop()


def test_a_job_submitted_while_a_worker_runs_a_long_one_starts_at_once_on_the_sleeping_one(fresh_workers, web_with_worker):
    cluster = fresh_workers
    cluster.start_worker("wake-b", **SLEEPY)
    log = cluster.a.var_dir / "wake-b.log"
    wait_until(lambda: log.exists() and b"running" in log.read_bytes())
    time.sleep(0.5)  # its first look for tasks is over: it sleeps

    for _ in range(3):
        # The web process's own worker takes this one, woken in its process.
        long = submit(web_with_worker, {"steps": 1, "delayMs": 5000})
        wait_until(lambda: get_job(cluster.a, long["jobId"])["status"] == "running", timeout=3)
        # Submitted through another web process: the wake-up goes through Redis, and only the
        # sleeping worker may take it (the busy one would start the job after its own, 5 s on).
        short = submit(cluster.b, {"steps": 1, "delayMs": 0})
        started = time.monotonic()
        wait_until(lambda: get_job(cluster.a, short["jobId"])["status"] == "done", timeout=3)
        assert time.monotonic() - started < 3
        assert get_job(cluster.a, long["jobId"])["status"] == "running"  # so the other worker ran it
        wait_until(lambda: get_job(cluster.a, long["jobId"])["status"] == "done", timeout=10)
