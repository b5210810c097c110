"""nexus_site.asgi_handler: a request for a synchronous view (the API, the admin, a 404) runs
Django's whole cycle in one hand-off to its request thread; an async view (a stream that Django
serves) takes Django's own asynchronous cycle. Driven in-process over ASGI, as daphne calls it."""
import asyncio
import json
import re
import threading
from http.cookies import SimpleCookie

import pytest
from django.core import signals

from content_jobs import services
from content_jobs.models import ContentJob
from content_jobs.runner import JobContext
from nexus_site.asgi_handler import NexusASGIHandler
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def handler():
    return NexusASGIHandler(threads=2)


@pytest.fixture
def hand_offs(handler, monkeypatch):
    """The calls handed to the request threads, in order."""
    calls = []
    for executor in handler.threads.executors:
        def submit(fn, *args, _submit=executor.submit, **kwargs):
            calls.append(fn)
            return _submit(fn, *args, **kwargs)

        monkeypatch.setattr(executor, "submit", submit)
    return calls


@pytest.fixture
def lifecycle():
    """request_started and request_finished as they fire: (signal, thread name)."""
    fired = []

    def started(**kwargs):
        fired.append(("started", threading.current_thread().name))

    def finished(**kwargs):
        fired.append(("finished", threading.current_thread().name))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield fired
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


def call(handler, method: str, path: str, body: bytes = b"", headers=(), fired=None) -> dict:
    """One request through the ASGI app; the answer's status, headers, body and the order of
    its messages (with the signals of `fired` interleaved where they came)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-length", str(len(body)).encode()), *headers], "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    order = fired if fired is not None else []
    answer = {"status": None, "headers": [], "body": b"", "order": order}

    async def run():
        inbox = [{"type": "http.request", "body": body, "more_body": False}]
        gone = asyncio.Event()

        async def receive():
            if inbox:
                return inbox.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = message["headers"]
                order.append(("start", None))
            else:
                answer["body"] += message.get("body", b"")
                order.append(("body", None))

        await handler(scope, receive, send)
        gone.set()

    asyncio.run(run())
    return answer


def header(answer: dict, name: bytes) -> list[bytes]:
    return [v for k, v in answer["headers"] if k.lower() == name]


def test_a_submission_runs_in_one_hand_off_to_its_request_thread(handler, hand_offs, lifecycle, member, company):
    token = Token.objects.create(user=member).key
    answer = call(handler, "POST", f"/api/companies/{company.id}/content-jobs",
                  json.dumps({"jobType": "demo.steps"}).encode(),
                  [(b"authorization", f"Token {token}".encode()), (b"content-type", b"application/json")],
                  fired=lifecycle)
    assert answer["status"] == 202
    job = json.loads(answer["body"])
    assert ContentJob.objects.get(pk=job["jobId"]).status == "queued"
    assert header(answer, b"location") == [f"/api/companies/{company.id}/content-jobs/{job['jobId']}".encode()]
    assert len(hand_offs) == 1  # Django's asynchronous cycle took four
    # Both signals fire in the request's thread, around the view, before the answer is sent.
    names = {name for kind, name in lifecycle if kind in ("started", "finished")}
    assert len(names) == 1 and names.pop().startswith("nexus-request-")
    assert [kind for kind, _ in lifecycle] == ["started", "finished", "start", "body"]


def test_a_404_and_an_error_of_the_api_take_the_same_path_and_keep_their_bodies(handler, hand_offs, member, company):
    token = Token.objects.create(user=member).key
    answer = call(handler, "GET", "/no/such/page")
    assert answer["status"] == 404
    answer = call(handler, "POST", f"/api/companies/{company.id}/content-jobs", b"{not json",
                  [(b"authorization", f"Token {token}".encode()), (b"content-type", b"application/json")])
    assert answer["status"] == 400
    assert header(answer, b"content-type") == [b"application/problem+json"]
    assert json.loads(answer["body"])["code"] == "parse_error"
    assert len(hand_offs) == 2
    assert ContentJob.objects.count() == 0


def test_a_file_answer_is_read_as_it_is_sent_and_the_request_finishes_after_it(handler, hand_offs, lifecycle, member,
                                                                              company, recwarn):
    job, _ = services.job_submit(company=company, job_type="demo.steps", params={})
    ContentJob.objects.filter(pk=job.pk).update(status="running")
    job.refresh_from_db()
    ctx = JobContext(job)
    data = bytes(range(256)) * 4096  # 1 MiB: more than one chunk
    ctx.save_artifact("blob.bin", data, "application/octet-stream")
    services.job_complete(job=job, result={"artifacts": ctx.artifacts})
    token = Token.objects.create(user=member).key
    answer = call(handler, "GET", f"/api/companies/{company.id}/content-jobs/{job.pk}/artifacts/blob.bin",
                  headers=[(b"authorization", f"Token {token}".encode())], fired=lifecycle)
    assert answer["status"] == 200
    assert header(answer, b"content-type") == [b"application/octet-stream"]
    assert answer["body"] == data
    kinds = [kind for kind, _ in lifecycle]
    assert kinds[0] == "started" and kinds[1] == "start" and kinds[-1] == "finished"
    assert set(kinds[2:-1]) == {"body"}
    # Read from the file a chunk (64 KiB) at a time in the request's thread: Django's own
    # cycle reads a synchronous body whole into memory first, and warns that it does.
    assert len(hand_offs) == 1 + len(data) // (64 * 1024) + 2  # the cycle, each chunk, the end, the close
    assert not [w for w in recwarn if "synchronous iterators" in str(w.message)]


def test_the_admin_login_sets_its_cookies_and_saves_the_session(handler, admin_user):
    page = call(handler, "GET", "/admin/login/")
    assert page["status"] == 200
    cookies = SimpleCookie()
    for value in header(page, b"set-cookie"):
        cookies.load(value.decode())
    csrf = cookies["csrftoken"].value
    form = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page["body"]).group(1)
    login = call(handler, "POST", "/admin/login/",
                 b"csrfmiddlewaretoken=" + form + b"&username=admin&password=password&next=/admin/",
                 [(b"content-type", b"application/x-www-form-urlencoded"), (b"cookie", f"csrftoken={csrf}".encode())])
    assert login["status"] == 302
    assert header(login, b"location") == [b"/admin/"]
    session = SimpleCookie()
    for value in header(login, b"set-cookie"):
        session.load(value.decode())
    index = call(handler, "GET", "/admin/",
                 headers=[(b"cookie", f"sessionid={session['sessionid'].value}".encode())])
    assert index["status"] == 200
    assert b"Site administration" in index["body"]


def test_a_stream_that_django_serves_still_runs_its_async_view(handler, hand_offs, company):
    """A stream request with a session cookie (no token) goes to Django's asynchronous cycle; a
    stranger's is 401 with the problem body of the stream's checks."""
    answer = call(handler, "GET", f"/api/companies/{company.id}/events",
                  headers=[(b"cookie", b"sessionid=none"), (b"accept", b"text/event-stream")])
    assert answer["status"] == 401
    assert header(answer, b"content-type") == [b"application/problem+json"]
    assert json.loads(answer["body"])["code"] == "not_authenticated"
    # Django's asynchronous cycle: request_started, the stream's checks and the close, each handed over.
    assert len(hand_offs) == 3
