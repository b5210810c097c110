"""A small cluster for the fault tests: web processes and workers on PostgreSQL and a private
Redis (its own redis-server on a free port, so restarting it disturbs no other test)."""
import shutil
import signal
import subprocess
import time

import pytest
import redis

from tests.live import LiveServer, free_port, scaled

pytestmark = pytest.mark.live


def _require_scaled():
    if not scaled():
        message = "the scale-out tests need DATABASE_URL=postgres://... and REDIS_URL (make test runs them in its second pass)"
        pytest.skip(message)


class PrivateRedis:
    def __init__(self, tmp_path):
        self.port = free_port()
        self.dir = tmp_path
        self.proc: subprocess.Popen | None = None
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


class Cluster:
    """Web process A (the LiveServer), web process B, and worker processes, all on one database."""

    LEASE_ENV = {"NEXUS_HEARTBEAT_SECONDS": "0.5", "NEXUS_LEASE_SECONDS": "3", "NEXUS_WORKER_POLL_SECONDS": "0.5",
                 "NEXUS_SSE_KEEPALIVE_SECONDS": "1"}

    def __init__(self, tmp_path_factory, private_redis: PrivateRedis):
        env = {**self.LEASE_ENV, "REDIS_URL": private_redis.url, "NEXUS_EMBEDDED_WORKER": "false"}
        self.redis = private_redis
        self.a = LiveServer(var_dir=tmp_path_factory.mktemp("cluster"), extra_env=env).prepare().start()
        self.b = LiveServer(var_dir=self.a.var_dir, extra_env=env, database_url=self.a.database_url, data=self.a.data)
        self.b.start()
        self.workers: dict[str, subprocess.Popen] = {}

    def start_worker(self, worker_id: str, **extra_env) -> subprocess.Popen:
        proc = self.a.spawn("run_worker", "--worker-id", worker_id, "--grace", "20", name=worker_id,
                            extra_env=extra_env)
        self.workers[worker_id] = proc
        return proc

    def stop_workers(self, sig=signal.SIGTERM) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.workers.clear()

    def close(self) -> None:
        self.stop_workers(signal.SIGKILL)
        self.b.stop()
        self.a.destroy()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _require_scaled()
    private = PrivateRedis(tmp_path_factory.mktemp("redis")).start()
    c = Cluster(tmp_path_factory, private)
    yield c
    c.close()
    private.stop()


@pytest.fixture
def fresh_workers(cluster):
    """Each test starts its own workers and leaves none behind."""
    yield cluster
    cluster.stop_workers(signal.SIGKILL)
