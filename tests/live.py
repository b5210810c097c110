"""A real server process for tests: `manage.py serve` (daphne + embedded worker) on a free port."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROVISION = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from content_jobs.models import Company, Membership
out = {}
for slug in ("acme", "globex"):
    company, _ = Company.objects.get_or_create(slug=slug, defaults={"name": slug.title()})
    out[slug] = str(company.id)
for username, slug, role in (("alice", "acme", "member"), ("victor", "acme", "viewer"), ("gina", "globex", "member")):
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_password("pw-" + username)
        user.save()
    Membership.objects.get_or_create(user=user, company_id=out[slug], defaults={"role": role})
    out["token_" + username] = Token.objects.get_or_create(user=user)[0].key
admin, created = get_user_model().objects.get_or_create(username="root", defaults={"is_staff": True, "is_superuser": True})
if created:
    admin.set_password("pw-root")
    admin.save()
print("PROVISIONED " + json.dumps(out))
"""


def scaled() -> bool:
    """True when the suite runs against PostgreSQL and Redis (the scale-out pass)."""
    return os.environ.get("DATABASE_URL", "").startswith("postgres") and bool(os.environ.get("REDIS_URL"))


def create_database(prefix: str) -> str:
    """A fresh PostgreSQL database next to DATABASE_URL's; returns its URL."""
    import uuid

    import psycopg

    base = os.environ["DATABASE_URL"]
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    server = base.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def drop_database(url: str) -> None:
    import psycopg

    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class LiveServer:
    var_dir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    data: dict = field(default_factory=dict)
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    database_url: str | None = None

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.update({"NEXUS_VAR_DIR": str(self.var_dir), "PORT": str(self.port), "PYTHONUNBUFFERED": "1"})
        if self.database_url:
            # Its own database and channel prefix: parallel test servers never hear each other.
            env["DATABASE_URL"] = self.database_url
            env["NEXUS_CHANNEL_PREFIX"] = self.database_url.rsplit("/", 1)[1]
        # One process that serves and runs jobs, on whatever engines the suite runs on; the
        # cluster tests ask for web processes without a worker explicitly.
        env["NEXUS_EMBEDDED_WORKER"] = "true"
        env.update(self.extra_env)
        return env

    def manage(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env(), capture_output=True, text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def prepare(self) -> "LiveServer":
        self.var_dir.mkdir(parents=True, exist_ok=True)
        if scaled() and self.database_url is None:
            self.database_url = create_database("nexus_live")
        self.manage("migrate", "--noinput", "-v", "0")
        out = self.manage("shell", "-c", PROVISION)
        line = next(l for l in out.splitlines() if l.startswith("PROVISIONED "))
        self.data = json.loads(line[len("PROVISIONED "):])
        return self

    def spawn(self, *args: str, name: str, extra_env: dict | None = None) -> subprocess.Popen:
        """Another process of this server's kind (a worker, a second web process) on its database."""
        log = open(self.var_dir / f"{name}.log", "ab")
        env = {**self.env(), **(extra_env or {})}
        return subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> "LiveServer":
        self.log_path = self.var_dir / f"server-{self.port}.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port)],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.log_path.read_text()}")

    def destroy(self) -> None:
        """Stop the server and drop its database (PostgreSQL)."""
        self.stop()
        if self.database_url:
            drop_database(self.database_url)
            self.database_url = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def client(self, username: str = "alice", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Token {self.data['token_' + username]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 10), **kwargs)

    def company(self, slug: str = "acme") -> str:
        return self.data[slug]

    def wait_for_status(self, client: httpx.Client, company_id: str, job_id: str, statuses, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            job = client.get(f"/api/companies/{company_id}/content-jobs/{job_id}").json()
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job stayed {job['status']}: {job}")
            time.sleep(0.05)
