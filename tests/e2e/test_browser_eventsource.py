"""A browser's own EventSource against the job and log streams of a real server process.

The page is served through Playwright routing at the server's origin, so its EventSources are
same-origin; it does nothing but what any web page would: `new EventSource(url)` with the
stream token of the job in the URL, `onmessage` for the log lines, `addEventListener` for the
named job events. Reconnecting (and sending Last-Event-ID) is the browser's business alone.
"""
from contextlib import contextmanager

import pytest

from tests.browser import record_browser_log
from tests.live import ROOT, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.live]

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 30_000
CLOSED = 2

HTML = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>EventSource under test</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 16px; }
  li { font-family: monospace; }
  .sev-success { color: #0a7a2f; } .sev-warning { color: #a36b00; } .sev-error { color: #b00020; }
</style>
</head>
<body>
<h1>EventSource under test</h1>
<h2>Job events</h2><ol id="job"></ol>
<h2>Log lines</h2><ol id="log"></ol>
<h2>States</h2><ol id="states"></ol>
<script>
  window.received = [];   // every log line as it arrived: {id, log}, duplicates included
  window.jobEvents = [];  // every named job event: {name, id, status, progress}
  window.states = [];     // open/error transitions: {stream, event, readyState}

  function item(list, text, cls) {
    const li = document.createElement("li");
    li.textContent = text;
    if (cls) li.className = cls;
    document.getElementById(list).appendChild(li);
  }

  function watchStates(name, es) {
    const note = (event) => {
      window.states.push({stream: name, event: event, readyState: es.readyState});
      item("states", name + " " + event + " readyState=" + es.readyState);
    };
    es.onopen = () => note("open");
    es.onerror = () => note("error");
  }

  window.openLogs = function (url) {
    const es = new EventSource(url);
    window.logSource = es;
    watchStates("logs", es);
    es.onmessage = (e) => {
      const log = JSON.parse(e.data).log;
      window.received.push({id: e.lastEventId, log: log});
      item("log", "#" + e.lastEventId + " [" + log.severity + "] " + log.event_message, "sev-" + log.severity);
    };
  };

  window.openJob = function (url) {
    const es = new EventSource(url);
    window.jobSource = es;
    watchStates("job", es);
    for (const name of ["content_job.status", "content_job.running", "content_job.progress", "content_job.done"]) {
      es.addEventListener(name, (e) => {
        const job = JSON.parse(e.data);
        window.jobEvents.push({name: e.type, id: e.lastEventId, status: job.status, progress: job.progress});
        item("job", "#" + e.lastEventId + " " + e.type + " " + job.status + " " + job.progress + "%");
      });
    }
  };
</script>
</body>
</html>
"""


class WireLog:
    """What the browser put on the wire for each request, from Chromium's own network events over
    CDP (Network.requestWillBeSentExtraInfo: the headers as sent). Playwright's Request headers
    (headers / all_headers()) of an EventSource reconnect lack its Last-Event-ID header here
    (Chromium 156), though Chromium sends it: only the raw headers show what the server got."""

    def __init__(self, page):
        self.urls: dict[str, str] = {}
        self.headers: dict[str, dict] = {}
        self.statuses: dict[str, int] = {}
        self.order: list[str] = []
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.requestWillBeSentExtraInfo", self._extra)
        cdp.on("Network.responseReceived", self._response)
        cdp.send("Network.enable")

    def _sent(self, params) -> None:
        if params["requestId"] not in self.urls:
            self.order.append(params["requestId"])
        self.urls[params["requestId"]] = params["request"]["url"]

    def _extra(self, params) -> None:
        self.headers[params["requestId"]] = {k.lower(): v for k, v in params["headers"].items()}

    def _response(self, params) -> None:
        self.statuses[params["requestId"]] = params["response"]["status"]

    def requests_to(self, path: str) -> list[tuple[dict | None, int | None]]:
        """(headers sent, response status) of each request to `path`, in order; headers are None
        for a request that never reached a server (connection refused)."""
        return [(self.headers.get(rid), self.statuses.get(rid)) for rid in self.order if path in self.urls[rid]]

    def last_event_ids(self, path: str) -> list[str | None]:
        """The Last-Event-ID sent by each request to `path` that reached a server."""
        return [headers.get("last-event-id") for headers, _ in self.requests_to(path) if headers is not None]


@contextmanager
def stream_page(browser, server: LiveServer, node):
    """A page at the server's origin holding HTML; yields it and the log of its requests. The
    page's console, errors and failed requests go on the test item `node` (shown should it fail)."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    record_browser_log(page, node)
    page.set_default_timeout(TIMEOUT_MS)
    page_url = f"{server.url}/__test__/page.html"
    page.route(page_url, lambda route: route.fulfill(status=200, content_type="text/html", body=HTML))
    wire = WireLog(page)
    try:
        page.goto(page_url)
        yield page, wire
    finally:
        context.close()


def submit(api, company_id: str, **params) -> dict:
    response = api.post(f"/api/companies/{company_id}/content-jobs", json={"jobType": "demo.steps", "params": params})
    assert response.status_code == 202, response.text
    return response.json()


def received(page) -> list[tuple[int, str, int]]:
    return [(int(r["id"]), r["log"]["event_message"], r["log"]["event_id"]) for r in page.evaluate("window.received")]


def states(page, stream: str) -> list[tuple[str, int]]:
    return [(s["event"], s["readyState"]) for s in page.evaluate("window.states") if s["stream"] == stream]


# 1. A job's whole life in a plain EventSource ----------------------------------------------------


def test_a_plain_eventsource_gets_every_log_line_and_job_event_once_then_stops_on_204(browser, live_server_proc, request):
    server = live_server_proc
    company_id = server.company()
    with server.client("alice") as api:
        # Keep the embedded worker busy, so that the job is still queued when the page connects:
        # the job's whole life then happens while the browser watches, however slow the machine.
        blocker = submit(api, company_id, steps=10000, delayMs=50)
        server.wait_for_status(api, company_id, blocker["jobId"], {"running"})
        try:
            job = submit(api, company_id, steps=5, delayMs=100)
            with stream_page(browser, server, request.node) as (page, wire):
                page.evaluate("([logs, events]) => { openLogs(logs); openJob(events); }",
                              [job["logsUrl"], job["eventsUrl"]])
                page.wait_for_function(
                    "window.logSource.readyState === 1 && window.jobEvents.length >= 1", timeout=TIMEOUT_MS
                )
                assert page.evaluate("window.jobEvents[0]")["status"] == "queued"
                cancel = api.post(f"/api/companies/{company_id}/content-jobs/{blocker['jobId']}/cancel")
                assert cancel.status_code in (200, 202), cancel.text

                # The server ends both streams once the job is done; the browser reconnects by
                # itself, gets 204 and gives up: readyState CLOSED.
                page.wait_for_function(
                    "window.logSource.readyState === 2 && window.jobSource.readyState === 2", timeout=TIMEOUT_MS
                )

                lines = received(page)
                expected = [f"step {i}/5" for i in range(1, 6)] + ["finished"]
                assert [message for _, message, _ in lines] == expected
                assert [event_id for event_id, _, _ in lines] == list(range(1, 7))
                assert [event_id for _, _, event_id in lines] == list(range(1, 7))  # the payload's event_id
                assert len({event_id for event_id, _, _ in lines}) == len(lines), "a line arrived twice"
                last = page.evaluate("window.received[window.received.length - 1].log")
                assert last["severity"] == "success" and last["task_id"] == job["jobId"]

                job_events = page.evaluate("window.jobEvents")
                names = [e["name"] for e in job_events]
                assert names == (["content_job.status", "content_job.running"] + ["content_job.progress"] * 5
                                 + ["content_job.done"])
                ids = [int(e["id"]) for e in job_events]
                assert ids == list(range(ids[0], ids[0] + len(ids))), ids
                assert job_events[-1]["status"] == "done" and job_events[-1]["progress"] == 100

                # Each stream: open; the server's end (error, CONNECTING: the browser reconnects by
                # itself); the 204 (error, CLOSED: it gives up).
                for stream in ("logs", "job"):
                    assert states(page, stream) == [("open", 1), ("error", 0), ("error", CLOSED)], stream
                # On the wire: the first request without Last-Event-ID, answered 200 with the stream;
                # the reconnect with the last id the page got, answered 204.
                logs = wire.requests_to(f"/jobs/{job['jobId']}/logs")
                assert [(h and h.get("last-event-id"), status) for h, status in logs] == [(None, 200), ("6", 204)]
                events = wire.requests_to(f"/content-jobs/{job['jobId']}/events")
                assert [(h and h.get("last-event-id"), status) for h, status in events] == [
                    (None, 200), (str(ids[-1]), 204)
                ]

                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "browser-eventsource.png"), full_page=True)
        finally:
            api.post(f"/api/companies/{company_id}/content-jobs/{blocker['jobId']}/cancel")


# 2. The server goes away mid-stream and comes back ---------------------------------------------


@pytest.fixture(scope="module")
def restart_server(browser, tmp_path_factory):
    """A server of this module's own: the test stops and starts it."""
    server = LiveServer(var_dir=tmp_path_factory.mktemp("browser")).prepare().start()
    yield server
    server.destroy()


def test_the_browser_reconnects_after_a_server_restart_and_resumes_with_last_event_id(browser, restart_server, request):
    server = restart_server
    company_id = server.company()
    with server.client("alice") as api:
        job = submit(api, company_id, steps=30, delayMs=100)
    logs_path = f"/jobs/{job['jobId']}/logs"

    with stream_page(browser, server, request.node) as (page, wire):
        page.evaluate("(url) => openLogs(url)", job["logsUrl"])
        page.wait_for_function("window.received.length >= 3", timeout=TIMEOUT_MS)

        server.stop()  # SIGTERM: daphne goes away, and with it every open stream
        page.wait_for_function(
            "window.states.some(s => s.stream === 'logs' && s.event === 'error' && s.readyState === 0)",
            timeout=TIMEOUT_MS,
        )
        before_restart = received(page)
        server.start()  # same port, same SQLite file

        # What became of the job: SIGTERM made daphne drop its connections at once, while the
        # process's embedded worker drained (worker.stop waits for the running task) and finished
        # the job, storing its remaining lines, before the process exited. So the job is done, in
        # its first attempt, when the new process starts, and the lines the page missed are stored.
        with server.client("alice") as api:
            after_restart = api.get(f"/api/companies/{company_id}/content-jobs/{job['jobId']}").json()
        assert (after_restart["status"], after_restart["attempt"]) == ("done", 1), after_restart
        assert 3 <= len(before_restart) < 31, before_restart  # the page did miss lines

        # The page was told nothing: its EventSource comes back by itself, resumes, and stops on
        # the 204 after the job's last line.
        page.wait_for_function("window.logSource.readyState === 2", timeout=TIMEOUT_MS)

        lines = received(page)
        ids = [event_id for event_id, _, _ in lines]
        messages = [message for _, message, _ in lines]
        assert len(set(ids)) == len(ids), f"a line arrived twice: {ids}"
        assert ids == list(range(1, len(ids) + 1)), f"ids with a gap or out of order: {ids}"
        assert [event_id for _, _, event_id in lines] == ids
        assert messages == [f"step {i}/30" for i in range(1, 31)] + ["finished"], messages
        assert lines[: len(before_restart)] == before_restart

        # open; the server gone: error with readyState CONNECTING, once per failed try while it
        # was down; OPEN again after the restart; the end of the stream (CONNECTING), the 204 (CLOSED).
        seen = states(page, "logs")
        assert seen[0] == ("open", 1), seen
        reopen = seen.index(("open", 1), 1)
        assert reopen >= 2 and seen[1:reopen] == [("error", 0)] * (reopen - 1), seen
        assert seen[reopen:] == [("open", 1), ("error", 0), ("error", CLOSED)], seen

        # On the wire: the page's own first request, without Last-Event-ID; then, after the
        # restart, a reconnect carrying the id of the last line the page had, answered 200 with
        # exactly the lines after it; then the reconnect after the end, answered 204. (Tries
        # while the server was down never reached a server and are not listed.)
        sent = [(h.get("last-event-id"), status) for h, status in wire.requests_to(logs_path) if h is not None]
        assert sent == [(None, 200), (str(before_restart[-1][0]), 200), (str(ids[-1]), 204)], sent
