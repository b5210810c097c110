"""The job event stream over real HTTP, read by a real SSE client from a real server process."""
import json
import re
import threading
import time

import httpx
import pytest
from httpx_sse import connect_sse

from tests.streams import submit, cancel, hold_worker, release_once_watching, release_worker
from tests.live import LiveServer
from tests.sse_client import Received, read_stream

pytestmark = pytest.mark.live

STATUS_OF = {
    "content_job.running": "running",
    "content_job.progress": "running",
    "content_job.done": "done",
    "content_job.failed": "failed",
    "content_job.cancelled": "cancelled",
}
TERMINAL = {"content_job.done", "content_job.failed", "content_job.cancelled"}


def read_released(server: LiveServer, api: httpx.Client, blocker: dict, url: str, *, limit: int | None = None):
    """Read a stream opened while the worker is held, letting the worker go once the stream is
    open: the job's whole life then happens while the client watches, however slow the machine.
    Returns the events (name, id, data) and whether the server ended the response."""
    got = []
    with httpx.Client(base_url=server.url, timeout=20) as client:
        with connect_sse(client, "GET", url) as source:
            assert source.response.status_code == 200
            for sse in source.iter_sse():
                if sse.retry is not None:  # the stream's first block: it is open and listening
                    release_worker(server, api, blocker)
                if not sse.data:
                    continue
                got.append((sse.event, sse.id, sse.data))
                if limit is not None and len(got) >= limit:
                    return got, False
    return got, True


def events_path(job: dict) -> str:
    return f"/api/companies/{job['companyId']}/content-jobs/{job['jobId']}/events"


def decoded(received) -> list[tuple[str, int, dict]]:
    return [(name, int(event_id), json.loads(data)) for name, event_id, data in received.events]


def assert_consecutive(ids: list[int]) -> None:
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids


def assert_consistent(job_id: str, events: list[tuple[str, int, dict]]) -> None:
    for name, _, data in events:
        assert data["jobId"] == job_id
        if name != "content_job.status":
            assert data["status"] == STATUS_OF[name], (name, data["status"])


def without_urls(job: dict) -> dict:
    # The stream token inside the URLs is signed with a timestamp: compare the paths only.
    return {**job, "eventsUrl": job["eventsUrl"].split("?")[0], "logsUrl": job["logsUrl"].split("?")[0]}


# A job from queued to done ----------------------------------------------------------------------


def test_job_stream_follows_a_job_from_queued_to_done_and_then_ends(server):
    company_id = server.company()
    with server.client() as api:
        blocker = hold_worker(server, api)
        try:
            job = submit(api, company_id, steps=5, delayMs=50)
            got = []
            retry_hints = []
            with httpx.Client(base_url=server.url, timeout=15) as sse_client:
                with connect_sse(sse_client, "GET", job["eventsUrl"]) as source:
                    response = source.response
                    assert response.status_code == 200
                    assert response.headers["content-type"].split(";")[0] == "text/event-stream"
                    assert response.headers["cache-control"] == "no-cache"
                    assert response.headers["x-accel-buffering"] == "no"
                    for sse in source.iter_sse():
                        if sse.retry is not None:
                            retry_hints.append(sse.retry)
                        if not sse.data:
                            continue
                        got.append((sse.event, int(sse.id), json.loads(sse.data)))
                        if len(got) == 1:
                            # The first event came at once, while the job is still queued.
                            first = got[0]
                            assert first[0] == "content_job.status"
                            assert first[2]["status"] == "queued"
                            current = api.get(f"/api/companies/{company_id}/content-jobs/{job['jobId']}").json()
                            assert set(first[2]) == set(current)
                            assert without_urls(first[2]) == without_urls(current)
                            release_worker(server, api, blocker)
                # The loop above ended because the server ended the response (a hung stream is a
                # ReadTimeout, not an end).
        finally:
            release_worker(server, api, blocker)  # a no-op once released

        names = [name for name, _, _ in got]
        ids = [event_id for _, event_id, _ in got]
        assert retry_hints and retry_hints[0] > 0
        assert names[0] == "content_job.status" and names[1] == "content_job.running"
        assert names[2:-1] == ["content_job.progress"] * 5
        assert names[-1] == "content_job.done"
        assert names.count("content_job.done") == 1
        assert_consecutive(ids)
        assert_consistent(job["jobId"], got)
        progress = [data["progress"] for name, _, data in got if name == "content_job.progress"]
        assert progress == sorted(set(progress)), progress  # rises with every event
        assert progress[-1] == 100.0
        done = got[-1][2]
        assert done["result"] == {"steps": 5} and done["progress"] == 100.0 and done["finishedAt"]

        # The bytes on the wire: a retry hint first, then named events with ids.
        with httpx.Client(base_url=server.url, timeout=15) as raw_client:
            with raw_client.stream("GET", job["eventsUrl"], headers={"Last-Event-ID": str(ids[-2])}) as response:
                assert response.headers["cache-control"] == "no-cache"
                assert response.headers["x-accel-buffering"] == "no"
                raw = response.read().decode()
        assert raw.startswith("retry: ")
        hint, _, rest = raw.partition("\n\n")
        assert int(hint[len("retry: "):]) > 0
        assert rest.startswith(f"event: content_job.done\nid: {ids[-1]}\ndata: {{")
        assert rest.endswith("}\n\n") and rest.count("\n\n") == 1


# Terminal jobs and resume ------------------------------------------------------------------------


def test_stream_of_a_finished_job_sends_its_status_and_ends(server):
    with server.client() as api:
        job = submit(api, server.company(), steps=1, delayMs=0)
        server.wait_for_status(api, server.company(), job["jobId"], {"done"})
    received = read_stream(server.url, job["eventsUrl"], timeout=10)
    assert received.ended
    [(name, event_id, data)] = decoded(received)
    assert name == "content_job.status"
    assert data["status"] == "done" and data["jobId"] == job["jobId"]

    # The stored events end at that id: reconnecting after it is 204, so EventSource stops.
    everything = decoded(read_stream(server.url, job["eventsUrl"], last_event_id="0", timeout=10))
    assert everything[-1][1] == event_id and everything[-1][0] == "content_job.done"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.get(job["eventsUrl"], headers={"Last-Event-ID": str(event_id)})
    assert response.status_code == 204
    assert response.content == b""


def test_resume_of_a_finished_job_sends_exactly_the_missed_events(server):
    with server.client() as api:
        job = submit(api, server.company(), steps=6, delayMs=0)
        server.wait_for_status(api, server.company(), job["jobId"], {"done"})
    everything = read_stream(server.url, job["eventsUrl"], last_event_id="0", timeout=10)
    assert everything.ended
    assert everything.ids == list(range(1, len(everything.ids) + 1))
    assert everything.events[0][0] == "content_job.status" and everything.events[-1][0] == "content_job.done"
    for k in (1, len(everything.ids) // 2, len(everything.ids) - 1):
        resumed = read_stream(server.url, job["eventsUrl"], last_event_id=str(k), timeout=10)
        assert resumed.ended
        assert resumed.events == everything.events[k:]


def test_reconnect_after_a_cut_mid_run_misses_nothing_and_repeats_nothing(server):
    with server.client() as api:
        blocker = hold_worker(server, api)
        try:
            job = submit(api, server.company(), steps=20, delayMs=50)
            events, ended = read_released(server, api, blocker, job["eventsUrl"], limit=3)
        finally:
            release_worker(server, api, blocker)
        first = Received(events=events)
        assert not ended and [name for name, _, _ in events] == ["content_job.status", "content_job.running", "content_job.progress"]
        time.sleep(0.3)  # events happen while the client is away
        second = read_stream(server.url, job["eventsUrl"], last_event_id=first.last_id, timeout=20)
        assert second.ended
        server.wait_for_status(api, server.company(), job["jobId"], {"done"})
    assert second.ids[0] == first.ids[-1] + 1
    union = first.events + second.events
    ids = [int(event_id) for _, event_id, _ in union]
    assert_consecutive(ids)
    assert [name for name, _, _ in union].count("content_job.done") == 1
    assert union[-1][0] == "content_job.done"
    assert_consistent(job["jobId"], decoded(first) + decoded(second))


# Failed and cancelled ------------------------------------------------------------------------


def test_failed_job_stream_ends_with_failed(server):
    with server.client() as api:
        blocker = hold_worker(server, api)
        try:
            job = submit(api, server.company(), steps=5, delayMs=10, failAt=3)
            got, ended = read_released(server, api, blocker, job["eventsUrl"])
        finally:
            release_worker(server, api, blocker)
    assert ended
    events = decoded(Received(events=got))
    assert_consecutive([event_id for _, event_id, _ in events])
    assert_consistent(job["jobId"], events)
    names = [name for name, _, _ in events]
    assert names[-1] == "content_job.failed"
    assert not TERMINAL & set(names[:-1])
    assert events[-1][2]["error"]["code"] == "step_failed"


def test_cancelled_running_job_stream_ends_with_cancelled(server):
    with server.client() as api:
        job = submit(api, server.company(), steps=10000, delayMs=50)
        got = []
        cancelled = False
        try:
            with httpx.Client(base_url=server.url, timeout=15) as client:
                with connect_sse(client, "GET", job["eventsUrl"]) as source:
                    for sse in source.iter_sse():
                        if not sse.data:
                            continue
                        got.append((sse.event, int(sse.id), json.loads(sse.data)))
                        if sse.event == "content_job.progress" and not cancelled:
                            assert cancel(api, job).status_code == 202  # it is running: stops at a checkpoint
                            cancelled = True
        finally:
            cancel(api, job)  # never leave a long job running for the next test
    assert_consecutive([event_id for _, event_id, _ in got])
    assert_consistent(job["jobId"], got)
    names = [name for name, _, _ in got]
    assert names[-1] == "content_job.cancelled"
    assert "content_job.done" not in names
    assert got[-1][2]["status"] == "cancelled"


# Auth ----------------------------------------------------------------------------------------


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert "json" in response.headers["content-type"]
    body = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code


@pytest.fixture(scope="module")
def finished_jobs(live_server_proc):
    """Two finished jobs of acme."""
    server = live_server_proc
    with server.client() as api:
        jobs = [submit(api, server.company(), steps=1, delayMs=0) for _ in range(2)]
        return [server.wait_for_status(api, server.company(), job["jobId"], {"done"}) for job in jobs]


def test_streams_without_credentials_are_401_json(server, finished_jobs):
    job = finished_jobs[0]
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        assert_problem(anonymous.get(events_path(job)), 401, "not_authenticated")
        assert_problem(anonymous.get(f"/jobs/{job['jobId']}/logs"), 401, "not_authenticated")


def test_streams_with_a_forged_token_are_401_json(server, finished_jobs):
    job = finished_jobs[0]
    token = job["eventsUrl"].split("token=")[1]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        for bad in (forged, "not-a-token"):
            assert_problem(anonymous.get(events_path(job), params={"token": bad}), 401, "token_invalid")
            assert_problem(anonymous.get(f"/jobs/{job['jobId']}/logs", params={"token": bad}), 401, "token_invalid")


def test_stream_token_of_one_job_is_403_on_another_jobs_streams(server, finished_jobs):
    a, b = finished_jobs
    token_of_a = a["eventsUrl"].split("token=")[1]
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        assert_problem(anonymous.get(events_path(b), params={"token": token_of_a}), 403)
        assert_problem(anonymous.get(f"/jobs/{b['jobId']}/logs", params={"token": token_of_a}), 403)
        # ...while it opens its own job's streams.
        assert anonymous.get(a["eventsUrl"]).status_code == 200
        assert anonymous.get(a["logsUrl"]).status_code == 200


def test_a_bad_token_answers_alike_whether_the_job_exists_and_whoever_owns_it(server, finished_jobs):
    """The token is checked before the job is looked up: a forged one is 401 on an unknown job
    and under another company's path too, and a valid one of another job is 403 there as well,
    so a caller without credentials learns nothing of which jobs exist."""
    job = finished_jobs[0]
    token_of_a = job["eventsUrl"].split("token=")[1]
    unknown, elsewhere = "0b5e9c1e-4f7a-4c55-9a38-3a3c1c0f1a2b", "6d0c4b1e-9d8a-4f3c-8b2a-1e2f3a4b5c6d"
    paths = [
        events_path(job),
        events_path({**job, "jobId": unknown}),
        events_path({**job, "companyId": elsewhere}),
        f"/jobs/{job['jobId']}/logs",
        f"/jobs/{unknown}/logs",
    ]
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        for path in paths:
            assert_problem(anonymous.get(path, params={"token": "forged"}), 401, "token_invalid")
        for path in paths[1:2] + paths[4:]:
            assert_problem(anonymous.get(path, params={"token": token_of_a}), 403, "token_wrong_job")
        assert_problem(anonymous.get(paths[2], params={"token": token_of_a}), 404, "not_found")  # its own job, elsewhere


def test_a_last_event_id_past_a_streams_latest_event_is_400_on_every_stream(server):
    """No stream sent such an id: taken as it was, a running job's stream passed over every
    event up to it, its end too, and never ended; the company stream left out new events."""
    company_id = server.company()
    with server.client() as api:
        job = submit(api, company_id, steps=10000, delayMs=50)
        try:
            server.wait_for_status(api, company_id, job["jobId"], {"running"})
            paths = [events_path(job), job["logsUrl"], f"/api/companies/{company_id}/events"]
            for path in paths:
                for past in ("1000000", "99999999999999999999"):
                    with api.stream("GET", path, headers={"Last-Event-ID": past}) as response:
                        assert response.status_code == 400, (path, response.status_code)  # not a stream that hangs
                        response.read()
                    assert_problem(response, 400, "invalid_last_event_id")
                    assert f"Last-Event-ID {past} is past this stream's latest event" in response.json()["detail"]
            # The latest id itself is a resume (a new client's first event is the job's status,
            # numbered as its latest event).
            with connect_sse(api, "GET", events_path(job)) as source:
                first = next(source.iter_sse())
            with connect_sse(api, "GET", events_path(job), headers={"Last-Event-ID": first.id}) as source:
                assert source.response.status_code == 200
        finally:
            cancel(api, job)


@pytest.mark.parametrize("raw", ["+1", "1_0", "\u0661", "1.0", "-1", "0x1", "one"])
def test_a_last_event_id_that_is_not_plain_digits_is_400(server, finished_jobs, raw):
    """int() reads "+1", "1_0" and an Arabic-Indic one as numbers; an event id is digits."""
    job = finished_jobs[0]
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        for path in (job["eventsUrl"], job["logsUrl"]):
            assert_problem(anonymous.get(path, headers={"Last-Event-ID": raw.encode()}), 400, "invalid_last_event_id")
        assert anonymous.get(job["logsUrl"] + "&lastEventId=%201%20").status_code == 200  # spaces aside


def test_the_token_scheme_is_read_as_the_api_reads_it(server, finished_jobs):
    """DRF takes `token` in any case on the API; the streams refused all but `Token`."""
    job = finished_jobs[0]
    key = server.data["token_alice"]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for scheme in ("Token", "token", "TOKEN"):
            headers = {"Authorization": f"{scheme} {key}"}
            assert client.get(f"/api/companies/{job['companyId']}/content-jobs/{job['jobId']}", headers=headers).status_code == 200
            assert client.get(events_path(job), headers=headers).status_code == 200
        assert_problem(client.get(events_path(job), headers={"Authorization": f"Token {key} extra"}), 401,
                       "authentication_failed")


def unsigned(content: bytes) -> bytes:
    return re.sub(rb"token=[^\"&]+", b"token=...", content)


def internal_stats(server) -> dict:
    with server.client() as api:
        return api.get("/internal/stats").json()


def direct_streams(server) -> int:
    return internal_stats(server)["directStreams"]


def test_direct_stream_path_answers_byte_for_byte_like_django(server, finished_jobs):
    """A token-authenticated stream skips Django's request cycle (nexus_site.asgi_streams); with
    an Origin header (CORS) the same request goes through Django's middleware. The two answers
    carry the same status, headers and bytes."""
    job = finished_jobs[0]
    header = {"Authorization": f"Token {server.data['token_alice']}"}
    elsewhere = {**header, "Origin": "http://elsewhere.example"}  # not an allowed origin
    token = job["eventsUrl"].split("token=")[1]
    cases = [
        (events_path(job), header, {}),
        (f"/jobs/{job['jobId']}/logs", header, {}),
        (f"/jobs/{job['jobId']}/logs", {}, {"token": token}),
        (f"/jobs/{job['jobId']}/logs", header, {"lastEventId": "1"}),
    ]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for path, headers, params in cases:
            before = direct_streams(server)
            direct = client.get(path, headers=headers, params=params)
            assert direct_streams(server) == before + 1, "served beside Django"
            through_django = client.get(path, headers={**headers, **elsewhere}, params=params)
            assert direct_streams(server) == before + 1, "served by Django"
            assert direct.status_code == through_django.status_code == 200
            assert sorted(direct.headers.multi_items()) == sorted(through_django.headers.multi_items())
            assert direct.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert direct.headers["x-frame-options"] == "DENY" and direct.headers["vary"] == "origin"
            # The same bytes, but for the stream tokens in a job's URLs: each carries its own time.
            assert unsigned(direct.content) == unsigned(through_django.content)
            assert direct.content.startswith(b"retry: ")
        # What is not a stream comes from Django, whichever way the request came in.
        before = direct_streams(server)
        gone = client.get(f"/jobs/{job['jobId']}/logs", headers=header, params={"lastEventId": "2"})
        assert gone.status_code == 204 and gone.content == b""
        other = client.get(events_path(job), headers={"Authorization": f"Token {server.data['token_gina']}"})
        assert_problem(other, 404, "not_found")
        assert direct_streams(server) == before


def fields_of(body: bytes) -> list[dict]:
    """The fields of each event (a block with an id) of a raw stream body, in order."""
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
        if "id" in fields:
            events.append(fields)
    return events


def test_live_events_written_by_the_fan_out_are_the_bytes_django_sends(server):
    """While a stream served beside Django waits, the fan-out writes its next events to the
    connection itself (a burst in one write). A job bursting 300 steps is watched on its event
    and log streams both ways: the same bytes, every event in order, and the streams end."""
    header = {"Authorization": f"Token {server.data['token_alice']}"}
    through_django = {**header, "Origin": "http://elsewhere.example"}
    with server.client() as api:
        blocker = hold_worker(server, api)
        try:
            job = submit(api, server.company(), steps=300, delayMs=0)
            logs_path = f"/jobs/{job['jobId']}/logs"
            watches = [(events_path(job), header), (events_path(job), through_django),
                       (logs_path, header), (logs_path, through_django)]
            opened = threading.Barrier(len(watches) + 1, timeout=20)
            bodies: dict = {}
            before = internal_stats(server)

            def watch(index: int, path: str, headers: dict) -> None:
                body = b""
                try:
                    with httpx.Client(base_url=server.url, timeout=30) as client:
                        with client.stream("GET", path, headers=headers) as response:
                            assert response.status_code == 200
                            for chunk in response.iter_raw():
                                if b"\n\n" not in body and b"\n\n" in body + chunk:
                                    opened.wait()  # the stream is open and listening
                                body += chunk
                    bodies[index] = body
                except BaseException as exc:
                    bodies[index] = exc
                    opened.abort()

            threads = [threading.Thread(target=watch, args=(i, *w)) for i, w in enumerate(watches)]
            release_once_watching(server, api, blocker, threads, opened, join_timeout=60)
        finally:
            cancel(api, blocker)
    after = internal_stats(server)

    assert after["directStreams"] == before["directStreams"] + 2  # the two without Origin
    assert after["directWrites"] > before["directWrites"]  # written by the fan-out itself
    for direct, django in ((0, 1), (2, 3)):
        assert isinstance(bodies[direct], bytes), bodies[direct]
        assert isinstance(bodies[django], bytes), bodies[django]
        assert unsigned(bodies[direct]) == unsigned(bodies[django])
    events = fields_of(bodies[0])
    assert_consecutive([int(event["id"]) for event in events])
    assert events[-1]["event"] == "content_job.done"
    assert [event["event"] for event in events].count("content_job.progress") == 300
    lines = fields_of(bodies[2])
    assert [int(line["id"]) for line in lines] == list(range(1, 302))  # 300 steps, then "finished"


def test_authorization_header_opens_the_job_and_log_streams(server, finished_jobs):
    job = finished_jobs[0]
    header = {"Authorization": f"Token {server.data['token_alice']}"}
    events = read_stream(server.url, events_path(job), headers=header, timeout=10)
    assert events.ended and [e[0] for e in events.events] == ["content_job.status"]
    logs = read_stream(server.url, f"/jobs/{job['jobId']}/logs", headers=header, timeout=10)
    assert logs.ended and logs.ids == [1, 2]
    # A viewer reads too.
    viewer = {"Authorization": f"Token {server.data['token_victor']}"}
    assert read_stream(server.url, events_path(job), headers=viewer, timeout=10).ended


def test_another_companys_job_stream_is_404(server, finished_jobs):
    job = finished_jobs[0]
    with server.client("gina") as gina:
        assert_problem(gina.get(events_path(job)), 404, "not_found")
        assert_problem(gina.get(f"/jobs/{job['jobId']}/logs"), 404, "not_found")
        # Under gina's own company the acme job does not exist either.
        globex = server.company("globex")
        assert_problem(gina.get(f"/api/companies/{globex}/content-jobs/{job['jobId']}/events"), 404, "not_found")
    with server.client() as alice:
        assert_problem(alice.get(f"/api/companies/{server.company()}/content-jobs/not-a-uuid/events"), 404)
        assert_problem(alice.get(f"/api/companies/not-a-uuid/content-jobs/{job['jobId']}/events"), 404)
        assert_problem(alice.get("/jobs/not-a-uuid/logs"), 404)


def test_stream_token_is_not_accepted_on_the_api(server, finished_jobs):
    job = finished_jobs[0]
    token = job["eventsUrl"].split("token=")[1]
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        response = anonymous.get(f"/api/companies/{server.company()}/content-jobs/{job['jobId']}", params={"token": token})
        assert_problem(response, 401)
        response = anonymous.get(f"/api/companies/{server.company()}/content-jobs/{job['jobId']}/logs", params={"token": token})
        assert_problem(response, 401)


@pytest.fixture(scope="module")
def short_token_server(tmp_path_factory):
    """A second server whose stream tokens expire after one second."""
    server = LiveServer(
        var_dir=tmp_path_factory.mktemp("short-token"), extra_env={"NEXUS_STREAM_TOKEN_SECONDS": "1"}
    ).prepare().start()
    yield server
    server.destroy()


def test_expired_stream_token_is_401_token_expired(short_token_server):
    server = short_token_server
    with server.client() as api:
        job = submit(api, server.company(), steps=1, delayMs=0)
        server.wait_for_status(api, server.company(), job["jobId"], {"done"})
    time.sleep(2.2)  # signed timestamps have whole seconds: older than 1 s for sure
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        assert_problem(anonymous.get(job["eventsUrl"]), 401, "token_expired")
        assert_problem(anonymous.get(job["logsUrl"]), 401, "token_expired")


# No gap between the first event and the live ones ------------------------------------------------


def test_clients_connecting_as_the_job_starts_miss_no_event(server):
    with server.client() as api:
        blocker = hold_worker(server, api)
        try:
            job = submit(api, server.company(), steps=100, delayMs=20)
            start = threading.Barrier(21, timeout=10)
            results: list = [None] * 20

            def watch(i: int) -> None:
                try:
                    start.wait()
                    results[i] = read_stream(server.url, job["eventsUrl"], timeout=20)
                except Exception as exc:  # reported below, with the others
                    results[i] = exc

            threads = [threading.Thread(target=watch, args=(i,)) for i in range(20)]
            # The worker starts the job within one of the blocker's steps: the 20 clients connect
            # while it starts and reports.
            release_once_watching(server, api, blocker, threads, start, join_timeout=40)
        finally:
            release_worker(server, api, blocker)
        server.wait_for_status(api, server.company(), job["jobId"], {"done"})
    last_ids = set()
    for received in results:
        assert not isinstance(received, BaseException) and received is not None, received
        assert received.ended
        assert received.events[0][0] == "content_job.status"
        assert received.events[-1][0] == "content_job.done"
        assert_consecutive(received.ids)  # a gap is a missed event
        last_ids.add(received.ids[-1])
    assert len(last_ids) == 1


def test_without_credentials_a_missing_job_and_an_existing_one_both_answer_401(server, finished_jobs):
    job = finished_jobs[0]
    missing = "00000000-0000-0000-0000-000000000000"
    for job_id in (job["jobId"], missing):
        for path in (f"/api/companies/{server.company()}/content-jobs/{job_id}/events", f"/jobs/{job_id}/logs"):
            response = httpx.get(server.url + path, timeout=10)
            assert response.status_code == 401, (path, response.status_code)
            assert response.json()["code"] == "not_authenticated"
