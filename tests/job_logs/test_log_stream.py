"""The log stream over real HTTP, read by a real SSE client from a real server process."""
import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest
from httpx_sse import connect_sse

from tests.streams import submit, cancel, hold_worker, release_worker
from tests.live import LiveServer
from tests.sse_client import read_stream

pytestmark = pytest.mark.live

LOG_KEYS = ["event_id", "task_id", "event_message", "severity", "event_time"]
EVENT_TIME = re.compile(r'"event_time":(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\}\}\n\n')


def finished_job(server: LiveServer, steps: int) -> dict:
    with server.client() as api:
        job = submit(api, server.company(), steps=steps, delayMs=0)
        return server.wait_for_status(api, server.company(), job["jobId"], {"done"})


def raw_frames(server: LiveServer, url: str, **kwargs) -> tuple[httpx.Response, str, list[str]]:
    """The response, its whole body, and its frames (each with its trailing blank line)."""
    with httpx.Client(base_url=server.url, timeout=15) as client:
        with client.stream("GET", url, **kwargs) as response:
            body = "".join(response.iter_text())
    frames = [frame + "\n\n" for frame in body.split("\n\n") if frame]
    return response, body, frames


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_log_stream_frame_is_exactly_id_and_data(server):
    job = finished_job(server, steps=3)
    response, body, frames = raw_frames(server, job["logsUrl"])
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert frames[0].startswith("retry: ")
    assert "\nevent:" not in body and not body.startswith("event:")  # unnamed: EventSource.onmessage gets them

    frame = frames[1]
    match = EVENT_TIME.search(frame)
    assert match, frame
    event_time = match.group(1)
    expected = (
        f'id: 1\ndata: {{"log":{{"event_id":1,"task_id":"{job["jobId"]}","event_message":"step 1/3",'
        f'"severity":"info","event_time":{event_time}}}}}\n\n'
    )
    assert frame == expected
    assert unix(job["startedAt"]) - 1 <= float(event_time) <= unix(job["finishedAt"]) + 1

    lines = [json.loads(f.split("\ndata: ", 1)[1], object_pairs_hook=list) for f in frames[1:]]
    assert [pairs[0][0] for pairs in lines] == ["log"] * 4
    assert all([key for key, _ in pairs[0][1]] == LOG_KEYS for pairs in lines)
    assert [f.split("\n", 1)[0] for f in frames[1:]] == ["id: 1", "id: 2", "id: 3", "id: 4"]


def test_log_line_has_the_same_bytes_live_and_replayed(server):
    with server.client() as api:
        blocker = hold_worker(server, api)
        try:
            job = submit(api, server.company(), steps=3, delayMs=100)
            with httpx.Client(base_url=server.url, timeout=15) as client:
                with client.stream("GET", job["logsUrl"]) as response:
                    chunks = response.iter_text()
                    live = next(chunks)  # the retry hint: the stream is open while the job is queued
                    release_worker(server, api, blocker)
                    live += "".join(chunks)
        finally:
            release_worker(server, api, blocker)
    _, replayed, _ = raw_frames(server, job["logsUrl"])
    assert [frame.split("\n", 1)[0] for frame in live.split("\n\n")[1:-1]] == ["id: 1", "id: 2", "id: 3", "id: 4"]
    assert live == replayed


def test_live_log_lines_arrive_in_order_and_the_stream_ends_after_the_job(server):
    steps = 4
    with server.client() as api:
        blocker = hold_worker(server, api)
        got = []
        try:
            job = submit(api, server.company(), steps=steps, delayMs=100)
            with httpx.Client(base_url=server.url, timeout=15) as client:
                with connect_sse(client, "GET", job["logsUrl"]) as source:
                    for sse in source.iter_sse():
                        if sse.retry is not None:
                            # The stream is open before the job runs: every line arrives live.
                            release_worker(server, api, blocker)
                        if sse.data:
                            got.append((sse.event, int(sse.id), sse.data))
            # The server ended the response: by then the job is over.
            assert api.get(f"/api/companies/{job['companyId']}/content-jobs/{job['jobId']}").json()["status"] == "done"
        finally:
            release_worker(server, api, blocker)
    assert [event_id for _, event_id, _ in got] == list(range(1, steps + 2))
    assert {name for name, _, _ in got} == {"message"}
    logs = [json.loads(data)["log"] for _, _, data in got]
    assert [line["event_message"] for line in logs] == [f"step {i}/{steps}" for i in range(1, steps + 1)] + ["finished"]
    assert [line["severity"] for line in logs] == ["info"] * steps + ["success"]
    assert [line["event_id"] for line in logs] == [event_id for _, event_id, _ in got]
    assert {line["task_id"] for line in logs} == {job["jobId"]}
    times = [line["event_time"] for line in logs]
    assert times == sorted(times)


def test_log_stream_resumes_after_last_event_id(server):
    job = finished_job(server, steps=5)
    everything = read_stream(server.url, job["logsUrl"], timeout=10)
    assert everything.ended and everything.ids == [1, 2, 3, 4, 5, 6]
    resumed = read_stream(server.url, job["logsUrl"], last_event_id="2", timeout=10)
    assert resumed.ended
    assert resumed.events == everything.events[2:]

    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.get(job["logsUrl"], headers={"Last-Event-ID": "6"})
    assert response.status_code == 204
    assert response.content == b""


def test_lines_appended_over_the_api_reach_a_watching_client_live(server):
    company_id = server.company()
    with server.client() as api:
        job = submit(api, company_id, steps=10000, delayMs=50)
        logs_api = f"/api/companies/{company_id}/content-jobs/{job['jobId']}/logs"
        got = []
        posted = None
        try:
            with httpx.Client(base_url=server.url, timeout=15) as client:
                with connect_sse(client, "GET", job["logsUrl"]) as source:
                    for sse in source.iter_sse():
                        if not sse.data:
                            continue
                        got.append((int(sse.id), json.loads(sse.data)["log"]))
                        if posted is None:
                            response = api.post(logs_api, json={"event_message": "hello from outside", "severity": "warning"})
                            assert response.status_code == 201, response.text
                            posted = response.json()["results"][0]
                        elif got[-1][1]["event_message"] == "hello from outside":
                            # It arrived while the job still runs; now end the job, and so the stream.
                            assert api.get(f"/api/companies/{company_id}/content-jobs/{job['jobId']}").json()["status"] == "running"
                            assert cancel(api, job).status_code == 202
        finally:
            cancel(api, job)
    ids = [event_id for event_id, _ in got]
    assert ids == list(range(1, len(ids) + 1))
    outside = [line for _, line in got if line["event_message"] == "hello from outside"]
    assert outside == [posted]
    assert outside[0]["severity"] == "warning"
    assert got[-1][1]["event_message"] == "Cancelled at a checkpoint."


def test_clients_coming_back_together_each_get_exactly_the_lines_after_their_own_id(server):
    """Hundreds of reconnects at once (their checks and first reads share batches): each gets
    the lines after its own Last-Event-ID and the end, whether it holds a stream token or an API
    token, and clients that hang up before their stream opens hold up no one."""
    job = finished_job(server, steps=30)
    response, body, frames = raw_frames(server, job["logsUrl"])
    retry, lines = frames[0], frames[1:]
    assert retry.startswith("retry: ") and len(lines) == 31
    bare_url = job["logsUrl"].split("?")[0]
    api_token = {"Authorization": f"Token {server.data['token_alice']}"}
    request = f"GET {job['logsUrl']} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()

    async def resume(client: httpx.AsyncClient, last: int, with_api_token: bool):
        url, headers = (bare_url, api_token) if with_api_token else (job["logsUrl"], {})
        response = await client.get(url, headers={**headers, "Last-Event-ID": str(last)})
        return last, response.status_code, response.text

    async def hang_up():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request)
        await writer.drain()
        writer.close()

    async def main():
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            resumes = [resume(client, i % 33, i % 2 == 0) for i in range(300)]
            gone = [hang_up() for _ in range(100)]
            results = await asyncio.gather(*resumes, *gone)
        return results[:300]

    for last, status, text in asyncio.run(main()):
        if last >= 31:
            assert (status, text) == (204, ""), last
        else:
            assert status == 200, (last, text)
            assert text == retry + "".join(lines[last:]), last


def read_until_end(url: str, opened: threading.Event, seconds: float) -> bool:
    """Whether the server ends the stream within `seconds` (keep-alives come every 2 s)."""
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", url) as response:
            assert response.status_code == 200, response.status_code
            opened.set()
            for _ in response.iter_lines():
                if time.monotonic() > deadline:
                    return False
    return True


def test_streams_whose_job_ended_unheard_or_was_deleted_end_at_the_next_keep_alive(server):
    """A stream hears of its job's end live. Were that message lost (an outage of the channel
    layer: here the status is changed in the database, with no event), or the job deleted (the
    admin's delete), the streams stayed open for ever; a keep-alive's look at storage ends them."""
    with server.client() as api:
        blocker = hold_worker(server, api)  # the two jobs stay queued
        try:
            unheard, deleted = (submit(api, server.company(), steps=3, delayMs=0) for _ in range(2))
            urls = [server.url + unheard["logsUrl"], server.url + deleted["logsUrl"], server.url + deleted["eventsUrl"]]
            opened = [threading.Event() for _ in urls]
            with ThreadPoolExecutor(len(urls)) as pool:
                ends = [pool.submit(read_until_end, url, event, 20) for url, event in zip(urls, opened)]
                assert all(event.wait(10) for event in opened)
                server.manage("shell", "-c", (
                    "from content_jobs import services\n"
                    "from content_jobs.models import ContentJob\n"
                    f"ContentJob.objects.filter(pk='{unheard['jobId']}').update(status='cancelled')\n"
                    f"services.jobs_delete(ContentJob.objects.filter(pk='{deleted['jobId']}'))\n"
                ))
                assert [end.result() for end in ends] == [True, True, True]
        finally:
            release_worker(server, api, blocker)
