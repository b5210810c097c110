"""The company event stream over real HTTP, read by a real SSE client from a real server process."""
import json
import threading
import time

import httpx
import pytest
from httpx_sse import connect_sse

from tests.streams import submit
from tests.live import LiveServer
from tests.sse_client import Received, read_stream

pytestmark = pytest.mark.live


def company_events_path(company_id: str) -> str:
    return f"/api/companies/{company_id}/events"


def auth(server: LiveServer, username: str) -> dict:
    return {"Authorization": f"Token {server.data['token_' + username]}"}


class Watcher:
    """A company stream read on a thread of its own until `until(events)` says enough."""

    def __init__(self, server: LiveServer, username: str, company_id: str, until):
        self.server, self.headers, self.path, self.until = server, auth(server, username), company_events_path(company_id), until
        self.received = Received()
        self.opened = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = dict(self.headers)
        try:
            with httpx.Client(base_url=self.server.url, timeout=20) as client:
                with connect_sse(client, "GET", self.path, headers=headers) as source:
                    assert source.response.status_code == 200, source.response.read()
                    for sse in source.iter_sse():
                        self.opened.set()  # the retry hint: the stream is open and listening
                        if sse.data:
                            self.received.events.append((sse.event, sse.id, sse.data))
                        # Also asked on a keep-alive: the test may learn what to wait for (the ids
                        # of the jobs it submits) only after their events arrived.
                        if self.until(self.received.events):
                            return
        except BaseException as exc:
            self.error = exc
        finally:
            self.opened.set()

    def start(self) -> "Watcher":
        self.thread.start()
        assert self.opened.wait(10)
        return self

    def join(self, timeout: float = 30) -> Received:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stream did not deliver what was expected in time"
        if self.error is not None:
            raise self.error
        return self.received


def finished(job_ids: set[str]):
    def check(events) -> bool:
        done = {json.loads(data)["jobId"] for name, _, data in events if name == "content_job.done"}
        return job_ids <= done

    return check


def decoded(events) -> list[tuple[str, int, dict]]:
    return [(name, int(event_id), json.loads(data)) for name, event_id, data in events]


def test_company_stream_carries_every_job_of_the_company_and_no_other(server):
    acme, globex = server.company("acme"), server.company("globex")
    with server.client("alice") as alice, server.client("gina") as gina:
        # History exists before the client connects: a fresh connection must not replay or summarise it.
        earlier = submit(alice, acme, steps=1, delayMs=0)
        server.wait_for_status(alice, acme, earlier["jobId"], {"done"})

        jobs: dict[str, str] = {}
        watcher = Watcher(server, "alice", acme, until=lambda events: bool(jobs) and finished(set(jobs))(events)).start()
        other = submit(gina, globex, steps=2, delayMs=20)
        a = submit(alice, acme, steps=3, delayMs=20)
        b = submit(alice, acme, steps=3, delayMs=20)
        jobs.update({a["jobId"]: "a", b["jobId"]: "b"})
        received = watcher.join()
        server.wait_for_status(gina, globex, other["jobId"], {"done"})

    events = decoded(received.events)
    ids = [event_id for _, event_id, _ in events]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # gapless
    assert {data["jobId"] for _, _, data in events} == set(jobs)  # nothing of globex, nothing earlier
    assert all(data["companyId"] == acme for _, _, data in events)
    # The first event is a real one: job a's submission, not a status summary of the company.
    first_name, _, first = events[0]
    assert (first_name, first["jobId"], first["status"]) == ("content_job.status", a["jobId"], "queued")
    for job_id in jobs:
        names = [name for name, _, data in events if data["jobId"] == job_id]
        assert names == ["content_job.status", "content_job.running"] + ["content_job.progress"] * 3 + ["content_job.done"]
        statuses = [data["status"] for name, _, data in events if data["jobId"] == job_id]
        assert statuses == ["queued"] + ["running"] * 4 + ["done"]

    # Resume from the middle: exactly the missed ones, in order.
    middle = ids[len(ids) // 2]
    missed = [e for e in received.events if int(e[1]) > middle]
    resumed = read_stream(server.url, company_events_path(acme), headers=auth(server, "alice"),
                          last_event_id=str(middle), limit=len(missed), timeout=10)
    assert resumed.events == missed


def test_viewer_reads_the_company_stream(server):
    acme = server.company("acme")
    with server.client("alice") as alice:
        holder: dict = {}
        watcher = Watcher(server, "victor", acme, until=lambda events: "job" in holder and finished({holder["job"]})(events)).start()
        holder["job"] = submit(alice, acme, steps=1, delayMs=0)["jobId"]
        received = watcher.join()
    names = [name for name, _, data in received.events if json.loads(data)["jobId"] == holder["job"]]
    assert names[0] == "content_job.status" and names[-1] == "content_job.done"


def test_company_stream_rejects_a_stream_token_and_accepts_the_api_token(server):
    acme = server.company("acme")
    with server.client("alice") as alice:
        job = submit(alice, acme, steps=1, delayMs=0)
        server.wait_for_status(alice, acme, job["jobId"], {"done"})
    token = job["eventsUrl"].split("token=")[1]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.get(company_events_path(acme), params={"token": token})
        assert response.status_code == 401
        assert response.json()["status"] == 401
        response = client.get(company_events_path(acme))
        assert response.status_code == 401 and response.json()["code"] == "not_authenticated"
        with client.stream("GET", company_events_path(acme), headers=auth(server, "alice")) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].split(";")[0] == "text/event-stream"
            assert next(response.iter_lines()).startswith("retry: ")
        # Another company's member does not see that it exists.
        response = client.get(company_events_path(acme), headers=auth(server, "gina"))
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_idle_company_stream_gets_a_keep_alive_comment(server):
    # globex is quiet here; the server was started with a 2 s keep-alive.
    path = company_events_path(server.company("globex"))
    lines = []
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(10, read=6)) as client:
        with client.stream("GET", path, headers=auth(server, "gina")) as response:
            assert response.status_code == 200
            deadline = time.monotonic() + 6
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith(":") or time.monotonic() > deadline:
                    break
    assert lines[0].startswith("retry: ")
    comments = [line for line in lines if line.startswith(":")]
    assert comments, lines
    assert not [line for line in lines if line.startswith(("data:", "event:"))]
