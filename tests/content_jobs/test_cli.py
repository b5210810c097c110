"""`manage.py jobs` against a real server process: submit, list, follow and its exit codes."""
import re
import select
import subprocess
import sys
import threading
import time

import pytest

from tests.live import ROOT

pytestmark = pytest.mark.live


LOG_LINE = re.compile(r"^\s*(\d+) (info|warning|error|success)\s+(.*)$")


def log_lines(output: str) -> list[tuple[int, str, str]]:
    """The log lines `follow` printed: (event id, severity, message)."""
    return [(int(m[1]), m[2], m[3]) for m in map(LOG_LINE.match, output.splitlines()) if m]


def jobs_cli(server, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "jobs", *args], cwd=ROOT, env=server.env(), capture_output=True, text=True,
        timeout=timeout,
    )


def test_submit_with_follow_prints_progress_and_lines_and_exits_0_when_done(live_server_proc):
    result = jobs_cli(live_server_proc, "submit", "acme", "demo.steps", "--param", "steps=3", "--param", "delayMs=50",
                      "--follow", "--url", live_server_proc.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    job_id = lines[0]
    assert [(i, m) for i, _, m in log_lines(result.stdout)] == [
        (1, "step 1/3"), (2, "step 2/3"), (3, "step 3/3"), (4, "finished")
    ]
    assert any("100.0% done" in l for l in lines)
    assert lines[-1] == f"job {job_id} done"


def test_follow_exits_1_when_the_job_failed_and_names_the_error(live_server_proc):
    submitted = jobs_cli(live_server_proc, "submit", "acme", "demo.steps", "--param", "steps=3", "--param", "failAt=2",
                         "--param", "delayMs=0")
    job_id = submitted.stdout.strip()
    result = jobs_cli(live_server_proc, "follow", job_id, "--url", live_server_proc.url)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith(f"job {job_id} failed: step_failed: step 2/3 failed")


def test_follow_exits_2_when_the_job_is_cancelled(live_server_proc):
    submitted = jobs_cli(live_server_proc, "submit", "acme", "demo.steps", "--param", "steps=200", "--param", "delayMs=50")
    job_id = submitted.stdout.strip()
    outcome = {}

    def follow():
        outcome["result"] = jobs_cli(live_server_proc, "follow", job_id, "--url", live_server_proc.url,
                                     "--token", live_server_proc.data["token_alice"])

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(1.0)
    with live_server_proc.client("alice") as client:
        response = client.post(f"/api/companies/{live_server_proc.company()}/content-jobs/{job_id}/cancel")
    assert response.status_code == 202
    follower.join(60)
    result = outcome["result"]
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == f"job {job_id} cancelled"


def test_follow_resumes_after_the_server_restarts_and_misses_no_line(tmp_path_factory):
    from tests.live import LiveServer

    server = LiveServer(var_dir=tmp_path_factory.mktemp("cli-restart")).prepare().start()
    try:
        job_id = jobs_cli(server, "submit", "acme", "demo.steps", "--param", "steps=30", "--param", "delayMs=100").stdout.strip()
        proc = subprocess.Popen([sys.executable, "manage.py", "jobs", "follow", job_id, "--url", server.url],
                                cwd=ROOT, env=server.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        server.stop()  # the stream breaks; the job's worker stops with the server
        server.start()  # the job is picked up again once its lease runs out, or was finished
        out, err = proc.communicate(timeout=90)
        lines = log_lines(out)
        ids = [line[0] for line in lines]
        assert ids == list(range(1, len(ids) + 1)), out  # every line once, in order
        assert proc.returncode == 0, out + err
        assert lines[-1][2] == "finished"
    finally:
        server.destroy()


def test_list_shows_the_company_jobs_newest_first(live_server_proc):
    first = jobs_cli(live_server_proc, "submit", "acme", "demo.steps", "--param", "delayMs=0").stdout.strip()
    second = jobs_cli(live_server_proc, "submit", "acme", "demo.steps", "--param", "delayMs=0").stdout.strip()
    result = jobs_cli(live_server_proc, "list", "acme", "--limit", "2")
    assert result.returncode == 0
    assert [l.split()[0] for l in result.stdout.splitlines()] == [second, first]


def test_submit_with_invalid_params_fails_with_the_field_named(live_server_proc):
    result = jobs_cli(live_server_proc, "submit", "acme", "demo.steps", "--param", "steps=0")
    assert result.returncode != 0
    assert "params.steps" in result.stderr


def test_follow_of_a_server_it_cannot_reach_says_so_and_keeps_trying(live_server_proc):
    """It waited in silence; a server that is starting (or restarting) is still waited for."""
    job_id = jobs_cli(live_server_proc, "submit", "acme", "demo.steps", "--param", "delayMs=0").stdout.strip()
    proc = subprocess.Popen([sys.executable, "manage.py", "jobs", "follow", job_id, "--url", "http://127.0.0.1:9"],
                            cwd=ROOT, env=live_server_proc.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 20)  # not a readline that waits for ever
        assert ready, "nothing said"
        line = proc.stderr.readline()  # at its first try (each of its two streams says it once)
        assert line.startswith("Cannot reach http://127.0.0.1:9: "), line
        assert line.rstrip().endswith("; trying again until it answers."), line
        time.sleep(1.5)
        assert proc.poll() is None  # still trying
    finally:
        proc.kill()
        proc.communicate()
