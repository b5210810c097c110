"""Many subscribers, slow subscribers and disconnects, against a real server process."""
import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from httpx_sse import aconnect_sse, connect_sse

from tests.streams import submit, cancel, hold_worker, release_once_watching, release_worker

pytestmark = pytest.mark.live

RESOURCES = ("listeners", "groups", "subscribers", "tasks", "threads", "openFds")


def without_urls(job: dict) -> dict:
    return {**job, "eventsUrl": job["eventsUrl"].split("?")[0], "logsUrl": job["logsUrl"].split("?")[0]}


def stats(api: httpx.Client) -> dict:
    body = api.get("/internal/stats").json()
    return {
        "listeners": body["listeners"],
        "groups": body["hub"]["groups"],
        "subscribers": body["hub"]["subscribers"],
        "tasks": body["tasks"],
        "threads": body["threads"],
        "openFds": body["openFds"],
    }


def steady_stats(api: httpx.Client, timeout: float = 10) -> dict:
    """Stats that two reads 0.2 s apart agree on (background threads open and close files)."""
    deadline = time.monotonic() + timeout
    previous = stats(api)
    while True:
        time.sleep(0.2)
        current = stats(api)
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current


# Many subscribers -----------------------------------------------------------------------------


def test_two_hundred_subscribers_all_receive_every_event_and_end(server):
    clients = 200
    with server.client() as api:
        blocker = hold_worker(server, api)
        try:
            job = submit(api, server.company(), steps=10, delayMs=50)

            async def watch(client: httpx.AsyncClient, connected: list) -> tuple[list, bool]:
                got = []
                async with aconnect_sse(client, "GET", job["eventsUrl"]) as source:
                    assert source.response.status_code == 200
                    async for sse in source.aiter_sse():
                        if not sse.data:
                            continue
                        got.append((sse.event, int(sse.id), sse.data))
                        if len(got) == 1:
                            connected.append(1)
                return got, True  # the server ended the response

            async def main():
                connected: list = []
                limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=0)
                async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
                    tasks = [asyncio.create_task(watch(client, connected)) for _ in range(clients)]
                    deadline = time.monotonic() + 20
                    while len(connected) < clients:
                        assert time.monotonic() < deadline, f"only {len(connected)} clients got the first event"
                        assert not any(t.done() and t.exception() for t in tasks), [t.exception() for t in tasks if t.done()]
                        await asyncio.sleep(0.05)
                    # Every client has the queued job's status: now let the job run.
                    await asyncio.to_thread(release_worker, server, api, blocker)
                    return await asyncio.wait_for(asyncio.gather(*tasks), 30)

            results = asyncio.run(main())
        finally:
            cancel(api, blocker)
        final = server.wait_for_status(api, server.company(), job["jobId"], {"done"})
    assert final["status"] == "done"
    reference, _ = results[0]
    names = [name for name, _, _ in reference]
    assert names[0] == "content_job.status" and names[1] == "content_job.running" and names[-1] == "content_job.done"
    assert names.count("content_job.progress") == 10
    assert [event_id for _, event_id, _ in reference] == list(range(1, len(reference) + 1))
    assert json.loads(reference[-1][2])["status"] == "done"
    for got, ended in results:
        assert ended
        # The first event is made for each client (its URLs carry a freshly signed token); the
        # others are the stored events themselves.
        assert [(name, event_id) for name, event_id, _ in got] == [(name, event_id) for name, event_id, _ in reference]
        assert without_urls(json.loads(got[0][2])) == without_urls(json.loads(reference[0][2]))
        assert got[1:] == reference[1:]


def test_slow_subscriber_catches_up_and_does_not_delay_the_others(server):
    with server.client() as api:
        blocker = hold_worker(server, api)
        try:
            job = submit(api, server.company(), steps=40, delayMs=20)
            # Everyone holds the queued job's status event before the job may run.
            first_event = threading.Barrier(7, timeout=15)
            # The slow one stops reading until all the fast ones have their end: if the stream
            # made anyone wait for it, they never would, and it would wait in vain.
            fast_done = threading.Semaphore(0)
            results: dict = {}

            def watch(name: str, slow: bool) -> None:
                got = []
                try:
                    with httpx.Client(base_url=server.url, timeout=20) as client:
                        with connect_sse(client, "GET", job["eventsUrl"]) as source:
                            for sse in source.iter_sse():
                                if not sse.data:
                                    continue
                                got.append((sse.event, int(sse.id), sse.data))
                                if len(got) == 1:
                                    first_event.wait()
                                    if slow:
                                        results["all fast ended first"] = all(
                                            fast_done.acquire(timeout=30) for _ in range(5))
                    results[name] = got
                except BaseException as exc:
                    results[name] = exc
                finally:
                    if not slow:
                        fast_done.release()

            threads = [threading.Thread(target=watch, args=("slow", True))]
            threads += [threading.Thread(target=watch, args=(f"fast{i}", False)) for i in range(5)]
            release_once_watching(server, api, blocker, threads, first_event, join_timeout=30)
        finally:
            cancel(api, blocker)
        server.wait_for_status(api, server.company(), job["jobId"], {"done"})

    slow = results["slow"]
    assert not isinstance(slow, BaseException), slow
    assert [event_id for _, event_id, _ in slow] == list(range(1, len(slow) + 1))
    assert [name for name, _, _ in slow].count("content_job.progress") == 40
    assert slow[-1][0] == "content_job.done"
    for i in range(5):
        fast = results[f"fast{i}"]
        assert not isinstance(fast, BaseException), fast
        assert [event[:2] for event in fast] == [event[:2] for event in slow]
        assert fast[1:] == slow[1:]  # the first, made per client, carries its own signed token
    assert results["all fast ended first"] is True  # nobody waited for the slow one


# Disconnects --------------------------------------------------------------------------------


REQUEST_THREADS = 8  # NEXUS_REQUEST_THREADS, the default


def cycle(client: httpx.Client, url: str, through_django: bool = False) -> str:
    """Open a stream, read its first event, and go away while the stream is live. A stream
    token is served beside Django's request cycle (nexus_site.asgi_streams); with an Origin
    header (a cross-origin request) Django's middleware serves it."""
    headers = {"Origin": "http://elsewhere.example"} if through_django else {}
    with connect_sse(client, "GET", url, headers=headers) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            if sse.data:
                return sse.event
    raise AssertionError("the stream ended before its first event")


def wait_until_equal(api: httpx.Client, expected: dict, keys, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = {key: value for key, value in stats(api).items() if key in keys}
        if current == {key: expected[key] for key in keys} or time.monotonic() > deadline:
            return current
        time.sleep(0.2)


def test_a_thousand_disconnects_leave_nothing_behind(server):
    log_start = server.log_path.stat().st_size
    with server.client() as api:
        # Warm up what a first stream creates once, on a finished job's streams; then the idle state.
        warm = submit(api, server.company(), steps=1, delayMs=0)
        warm = server.wait_for_status(api, server.company(), warm["jobId"], {"done"})
        with httpx.Client(base_url=server.url, timeout=10) as client:
            # Requests take turns on the server's request threads, and each thread keeps its
            # SQLite connection once opened: give every thread a turn.
            for _ in range(2 * REQUEST_THREADS):
                for url in (warm["eventsUrl"], warm["logsUrl"]):
                    cycle(client, url)
        idle = steady_stats(api)
        assert idle["listeners"] == 0 and idle["subscribers"] == 0 and idle["groups"] == 0, idle

        job = submit(api, server.company(), steps=10000, delayMs=100)
        try:
            server.wait_for_status(api, server.company(), job["jobId"], {"running"})
            urls = [job["eventsUrl"], job["logsUrl"]]
            before = steady_stats(api)  # with the job's own threads and connections

            # While a stream is connected the counters say so.
            with httpx.Client(base_url=server.url, timeout=10) as client:
                with connect_sse(client, "GET", job["eventsUrl"]) as source:
                    events = source.iter_sse()  # held: a dropped iterator closes the connection
                    assert next(events).retry is not None
                    assert next(events).event == "content_job.status"
                    during = stats(api)
            assert during["listeners"] == before["listeners"] + 1, (before, during)
            assert during["subscribers"] == before["subscribers"] + 1
            assert during["groups"] == before["groups"] + 1

            local = threading.local()
            clients: list[httpx.Client] = []
            lock = threading.Lock()

            def one(i: int) -> str:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(base_url=server.url, timeout=10)
                    with lock:
                        clients.append(local.client)
                return cycle(local.client, urls[i % 2], through_django=i % 4 >= 2)

            direct_before = api.get("/internal/stats").json()["directStreams"]
            try:
                with ThreadPoolExecutor(max_workers=20) as pool:
                    first_events = list(pool.map(one, range(1000)))
            finally:
                for client in clients:
                    client.close()
            assert first_events.count("content_job.status") == 500
            assert first_events.count("message") == 500  # the log stream's first line
            # Half of them beside Django's cycle, half through it: both leave nothing behind.
            assert api.get("/internal/stats").json()["directStreams"] - direct_before == 500

            # Every stream noticed its client left: nothing of them is left while the job runs on.
            alive = ("listeners", "groups", "subscribers", "tasks", "threads")
            after = wait_until_equal(api, before, alive)
            assert after == {key: before[key] for key in alive}, (before, after)
        finally:
            cancel(api, job)
        server.wait_for_status(api, server.company(), job["jobId"], {"cancelled"})
        # File descriptors are compared once the job is over. SQLite defers closing a closed
        # connection's file while another connection of the process holds a lock on it (the
        # request threads keep theirs open, in WAL mode) and reuses it for the next one opened;
        # the background threads open and close theirs, so one or two such files may be
        # pending. A leak per stream would be a thousand.
        after = wait_until_equal(api, idle, RESOURCES)
        assert {k: v for k, v in after.items() if k != "openFds"} == {k: idle[k] for k in RESOURCES if k != "openFds"}
        assert idle["openFds"] <= after["openFds"] <= idle["openFds"] + 3, (idle, after)

    # No stream outlived its client until daphne had to kill it.
    log = server.log_path.read_bytes()[log_start:].decode(errors="replace")
    killed = log.count("took too long to shut down and was killed")
    assert killed == 0, f"{killed} streams outlived their client until daphne killed them"
