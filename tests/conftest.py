import logging
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from content_jobs.models import Company, ContentJob, Membership
from content_jobs.worker import EmbeddedWorker
from tests.live import LiveServer

User = get_user_model()


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def company(db) -> Company:
    return Company.objects.create(slug="acme", name="Acme")


@pytest.fixture
def other_company(db) -> Company:
    return Company.objects.create(slug="globex", name="Globex")


def make_user(username: str, company: Company | None = None, role: str = Membership.Role.MEMBER):
    user = User.objects.create_user(username=username, password=f"pw-{username}")
    if company is not None:
        Membership.objects.create(user=user, company=company, role=role)
    return user


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def member(company):
    return make_user("alice", company)


@pytest.fixture
def viewer(company):
    return make_user("victor", company, Membership.Role.VIEWER)


@pytest.fixture
def outsider(other_company):
    return make_user("gina", other_company)


@pytest.fixture
def api(member) -> APIClient:
    """An API client authenticated as a member of `company`."""
    return client_for(member)


@pytest.fixture
def viewer_api(viewer) -> APIClient:
    return client_for(viewer)


@pytest.fixture
def outsider_api(outsider) -> APIClient:
    return client_for(outsider)


@pytest.fixture
def jobs_url(company) -> str:
    return f"/api/companies/{company.id}/content-jobs"


@pytest.fixture
def worker(transactional_db):
    """A real embedded task worker thread, against the test database."""
    w = EmbeddedWorker(poll_seconds=0.05).start()
    from content_jobs import worker as worker_module

    previous, worker_module._current = worker_module._current, w
    yield w
    worker_module._current = previous
    w.stop(timeout=30)


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def wait_for_job(job_id, statuses=ContentJob.TERMINAL, timeout: float = 20.0) -> ContentJob:
    def check():
        job = ContentJob.objects.get(pk=job_id)
        return job if job.status in statuses else None

    return wait_for(check, timeout)


@pytest.fixture(scope="session")
def live_server_proc(tmp_path_factory):
    """One real server process (daphne + embedded worker on its own SQLite file) per test worker."""
    server = LiveServer(
        var_dir=tmp_path_factory.mktemp("live"),
        extra_env={"NEXUS_INTERNAL_STATS": "true", "NEXUS_SSE_KEEPALIVE_SECONDS": "2"},
    ).prepare().start()
    yield server
    server.destroy()


logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used a live server shows the end of that server's log, and a browser
    test what its page logged and which requests failed: CI keeps no files."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    servers = {id(v): v for v in getattr(item, "funcargs", {}).values() if isinstance(v, LiveServer)}
    for server in servers.values():  # `server`, `live_server_proc`, a module's own, ...
        if server.log_path is not None and server.log_path.exists():
            tail = server.log_path.read_text(errors="replace").splitlines()[-80:]
            report.sections.append((f"server log, port {server.port} (last 80 lines)", "\n".join(tail)))
    browser_log = getattr(item, "browser_log", None)
    if browser_log:
        report.sections.append(("browser", "\n".join(browser_log[-80:])))


@pytest.fixture
def server(live_server_proc) -> LiveServer:
    """The shared live server (modules that need a server of their own define `server` themselves)."""
    return live_server_proc


def race(rounds: int, step) -> tuple[list, list]:
    """Call step(thread_no, round_no) from two threads, starting each round in both at the same
    moment; each thread's results, in round order."""
    barrier = threading.Barrier(2, timeout=30)
    results: dict[int, list] = {0: [], 1: []}
    errors: list[BaseException] = []

    def run(thread_no: int) -> None:
        try:
            for round_no in range(rounds):
                barrier.wait()
                results[thread_no].append(step(thread_no, round_no))
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(results[0]) == len(results[1]) == rounds
    return results[0], results[1]
