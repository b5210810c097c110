"""The job API as a client sees it: status codes, problem bodies, headers and rows."""
import base64
import json
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from content_jobs import services
from content_jobs.models import ContentJob, JobEvent
from content_jobs.runner import JobContext
from job_logs.models import LogLine
from tests.conftest import client_for

JOB_KEYS = {
    "jobId", "companyId", "jobType", "status", "progress", "stage", "params", "result", "error", "sourceTaskId",
    "attempt", "cancelRequested", "createdAt", "startedAt", "finishedAt", "eventsUrl", "logsUrl",
}
NO_SUCH_JOB = "00000000-0000-0000-0000-000000000000"


def submit(client, url, body, **headers):
    return client.post(url, body, format="json", **headers)


def error_fields(response) -> set[str]:
    return {e.get("field") for e in response.json().get("errors", [])}


def assert_problem(response, status: int, code: str | None = None) -> dict:
    """An RFC 9457 problem body with the given status (and code)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:nexus:problem:{body['code']}"
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    if code:
        assert body["code"] == code, body
    return body


def snapshot() -> dict:
    """Everything a bad request must leave alone: jobs, their stored events and log lines."""
    return {
        "jobs": list(
            ContentJob.objects.order_by("id").values_list(
                "id", "status", "attempt", "cancel_requested", "progress", "stage", "params", "result", "error",
                "idempotency_key", "updated_at", "finished_at",
            )
        ),
        "events": JobEvent.objects.count(),
        "lines": LogLine.objects.count(),
    }


def new_job(company, **params) -> ContentJob:
    return services.job_submit(company=company, job_type="demo.steps", params=params)[0]


def job_in(company, status: str) -> ContentJob:
    """A job moved through the services to `status`."""
    job = new_job(company)
    if status == "queued":
        return job
    if status == "cancelled":
        return services.job_cancel(job=job)
    job = services.job_start(job_id=job.pk)
    if status == "done":
        job = services.job_complete(job=job, result={"steps": 5})
    elif status == "failed":
        job = services.job_fail(job=job, code="boom", message="it broke")
    return job


def parse_ts(value: str) -> datetime:
    assert value.endswith("Z")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")


# Submit --------------------------------------------------------------------------------------
@pytest.mark.parametrize("slash", ["", "/"])
def test_submit_answers_202_with_exactly_the_job_fields_and_a_location(api, jobs_url, company, slash):
    before = timezone.now().replace(tzinfo=None)
    response = submit(api, jobs_url + slash, {"jobType": "demo.steps", "params": {"steps": 3}, "sourceTaskId": "t-1"})
    assert response.status_code == 202, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == JOB_KEYS
    job_id = body["jobId"]
    assert body == {
        "jobId": job_id,
        "companyId": str(company.id),
        "jobType": "demo.steps",
        "status": "queued",
        "progress": 0.0,
        "stage": "",
        "params": {"steps": 3, "delayMs": 200, "failAt": None},
        "result": None,
        "error": None,
        "sourceTaskId": "t-1",
        "attempt": 0,
        "cancelRequested": False,
        "createdAt": body["createdAt"],
        "startedAt": None,
        "finishedAt": None,
        "eventsUrl": body["eventsUrl"],
        "logsUrl": body["logsUrl"],
    }
    assert before <= parse_ts(body["createdAt"]) <= timezone.now().replace(tzinfo=None)
    assert response["Location"] == f"{jobs_url}/{job_id}"
    assert body["eventsUrl"].startswith(f"{jobs_url}/{job_id}/events?token=")
    assert body["logsUrl"].startswith(f"/jobs/{job_id}/logs?token=")
    assert len(body["eventsUrl"].split("token=")[1]) > 10
    assert "Idempotent-Replayed" not in response
    row = ContentJob.objects.get()
    assert str(row.pk) == job_id and row.company_id == company.id and row.status == "queued"
    assert row.params == {"steps": 3, "delayMs": 200, "failAt": None} and row.source_task_id == "t-1"


def test_submit_body_is_the_same_as_get_of_the_job(api, jobs_url):
    posted = submit(api, jobs_url, {"jobType": "render.card", "params": {"title": "Hello"}})
    assert posted.status_code == 202
    fetched = api.get(posted["Location"])
    assert fetched.status_code == 200
    strip = lambda body: {k: v for k, v in body.items() if k not in ("eventsUrl", "logsUrl")}  # noqa: E731
    assert strip(fetched.json()) == strip(posted.json())
    assert posted.json()["params"] == {"title": "Hello", "theme": "light"}


@pytest.mark.parametrize("body", [{"jobType": "demo.steps"}, {"jobType": "demo.steps", "params": None},
                                  {"jobType": "demo.steps", "params": {}}])
def test_submit_without_params_fills_every_default(api, jobs_url, body):
    response = submit(api, jobs_url, body)
    assert response.status_code == 202, response.content
    assert response.json()["params"] == {"steps": 5, "delayMs": 200, "failAt": None}
    assert response.json()["sourceTaskId"] is None
    assert ContentJob.objects.get().params == {"steps": 5, "delayMs": 200, "failAt": None}


@pytest.mark.parametrize(
    "body",
    [
        {"jobType": "demo.steps", "params": {"steps": 1}},
        {"jobType": "demo.steps", "params": {"steps": 10000}},
        {"jobType": "demo.steps", "params": {"delayMs": 0}},
        {"jobType": "demo.steps", "params": {"delayMs": 60000, "failAt": 2}},
        {"jobType": "demo.steps", "sourceTaskId": "x" * 255},
    ],
)
def test_submit_accepts_values_at_the_limits(api, jobs_url, body):
    response = submit(api, jobs_url, body)
    assert response.status_code == 202, response.content
    for key, value in body.get("params", {}).items():
        assert response.json()["params"][key] == value
    assert ContentJob.objects.count() == 1


@pytest.mark.parametrize(
    "body, field, code",
    [
        ({}, "jobType", "validation_error"),
        ({"params": {"steps": 3}}, "jobType", "validation_error"),
        ({"jobType": None}, "jobType", "validation_error"),
        ({"jobType": ""}, "jobType", "validation_error"),
        ({"jobType": "   "}, "jobType", "validation_error"),
        ({"jobType": "\t\n "}, "jobType", "validation_error"),
        ({"jobType": "no.such.type"}, "jobType", "unknown_job_type"),
        ({"jobType": "Demo.Steps"}, "jobType", "unknown_job_type"),
        ({"jobType": "x" * 101}, "jobType", "validation_error"),
        ({"jobType": "demo.steps", "params": [1, 2]}, "params", "validation_error"),
        ({"jobType": "demo.steps", "params": "steps=3"}, "params", "validation_error"),
        ({"jobType": "demo.steps", "params": 3}, "params", "validation_error"),
        ({"jobType": "demo.steps", "params": {"steps": 0}}, "params.steps", "invalid_params"),
        ({"jobType": "demo.steps", "params": {"steps": 10001}}, "params.steps", "invalid_params"),
        ({"jobType": "demo.steps", "params": {"steps": "many"}}, "params.steps", "invalid_params"),
        ({"jobType": "demo.steps", "params": {"delayMs": -1}}, "params.delayMs", "invalid_params"),
        ({"jobType": "demo.steps", "params": {"delayMs": 60001}}, "params.delayMs", "invalid_params"),
        ({"jobType": "demo.steps", "params": {"failAt": 0}}, "params.failAt", "invalid_params"),
        ({"jobType": "demo.steps", "params": {"stepz": 3}}, "params.stepz", "invalid_params"),
        ({"jobType": "render.card", "params": {"title": "x", "theme": "neon"}}, "params.theme", "invalid_params"),
        ({"jobType": "render.card", "params": {}}, "params.title", "invalid_params"),
        ({"jobType": "demo.steps", "sourceTaskId": "x" * 256}, "sourceTaskId", "validation_error"),
    ],
)
def test_bad_submissions_are_400_naming_the_field_and_create_nothing(api, jobs_url, body, field, code):
    before = snapshot()
    response = submit(api, jobs_url, body)
    assert_problem(response, 400, code)
    assert field in error_fields(response), response.json()
    assert snapshot() == before
    assert ContentJob.objects.count() == 0


def test_a_body_that_is_not_an_object_is_400_and_creates_nothing(api, jobs_url):
    response = submit(api, jobs_url, [{"jobType": "demo.steps"}])
    assert_problem(response, 400, "validation_error")
    assert response.json()["errors"]
    assert ContentJob.objects.count() == 0


@pytest.mark.parametrize("raw", ['{"jobType": "demo.steps",', "{jobType: demo.steps}", "[1,", "nope", b"\xff\xfe{}"])
def test_malformed_json_is_400_and_creates_nothing(api, jobs_url, raw):
    response = api.post(jobs_url, data=raw, content_type="application/json")
    assert_problem(response, 400, "parse_error")
    assert ContentJob.objects.count() == 0
    assert JobEvent.objects.count() == 0


def test_a_5_mib_body_is_413_and_creates_nothing(api, jobs_url):
    body = json.dumps({"jobType": "render.markdown", "params": {"markdown": "x" * (5 * 1024 * 1024)}})
    response = api.post(jobs_url, data=body, content_type="application/json")
    assert_problem(response, 413, "body_too_large")
    assert ContentJob.objects.count() == 0
    assert JobEvent.objects.count() == 0


def test_a_non_json_content_type_is_415_and_creates_nothing(api, jobs_url):
    response = api.post(jobs_url, data="jobType=demo.steps", content_type="application/x-www-form-urlencoded")
    assert_problem(response, 415)
    assert ContentJob.objects.count() == 0


@pytest.mark.parametrize("charset", ["base64", "rot13", "hex", "zlib_codec", "no-such-charset"])
def test_a_charset_that_is_no_text_encoding_is_415_and_creates_nothing(api, jobs_url, company, charset):
    """Django decodes with any codec it finds (base64 is one, and not text) and ignores a name
    it does not know: either was a 500 or a body read as UTF-8 against what the client said."""
    job = new_job(company)
    before = snapshot()
    for url, body in ((jobs_url, b'{"jobType": "demo.steps"}'), (f"{jobs_url}/{job.pk}/logs", b'{"event_message": "x"}')):
        response = api.post(url, data=body, content_type=f"application/json; charset={charset}")
        body = assert_problem(response, 415, "unsupported_media_type")
        assert repr(charset) in body["detail"]
    assert snapshot() == before


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", "latin-1"])
def test_a_text_charset_is_read_as_said(api, jobs_url, charset):
    body = '{"jobType": "demo.steps", "sourceTaskId": "café"}'.encode(charset)
    response = api.post(jobs_url, data=body, content_type=f"application/json; charset={charset}")
    assert response.status_code == 202, response.content
    assert response.json()["sourceTaskId"] == "café"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_the_infinities_are_not_json_400_and_store_nothing(api, jobs_url, company, value):
    job = new_job(company)
    before = snapshot()
    submitted = api.post(jobs_url, data=f'{{"jobType": "demo.steps", "sourceTaskId": {value}}}',
                         content_type="application/json")
    assert_problem(submitted, 400, "parse_error")
    logged = api.post(f"{jobs_url}/{job.pk}/logs", data=f'{{"event_message": {value}}}', content_type="application/json")
    assert_problem(logged, 400, "parse_error")
    assert snapshot() == before


def test_json_nested_deeper_than_the_parser_goes_is_400_and_stores_nothing(api, jobs_url, company):
    job = new_job(company)
    before = snapshot()
    deep = "[" * 5000 + "]" * 5000  # 10 KB, far under the body limit
    submitted = api.post(jobs_url, data=f'{{"jobType": "demo.steps", "params": {{"steps": {deep}}}}}',
                         content_type="application/json")
    assert assert_problem(submitted, 400, "parse_error")["detail"] == "Malformed JSON: nested too deeply."
    assert_problem(api.post(f"{jobs_url}/{job.pk}/logs", data="[" * 5000, content_type="application/json"),
                   400, "parse_error")
    assert snapshot() == before


def test_a_nul_character_in_a_body_is_400_and_stores_nothing(api, jobs_url, company):
    """Valid JSON, which PostgreSQL stores neither in text nor in jsonb (there it was a 500):
    refused on every database alike, in a key or a value, at any depth."""
    job = new_job(company)
    before = snapshot()
    for url, raw in (
        (jobs_url, r'{"jobType": "render.markdown", "params": {"markdown": "a\u0000b"}}'),
        (jobs_url, r'{"jobType": "demo.steps", "sourceTaskId": "\u0000"}'),
        (jobs_url, r'{"jobType": "demo.steps", "params": {"\u0000": [1, ["x\u0000"]]}}'),
        (f"{jobs_url}/{job.pk}/logs", r'{"event_message": "line\u0000"}'),
    ):
        body = assert_problem(api.post(url, data=raw, content_type="application/json"), 400, "parse_error")
        assert "NUL character" in body["detail"]
    assert snapshot() == before
    # The text of a backslash before "u0000" is no NUL.
    literal = api.post(jobs_url, data=r'{"jobType": "demo.steps", "sourceTaskId": "a\\u0000b"}',
                       content_type="application/json")
    assert literal.status_code == 202 and literal.json()["sourceTaskId"] == "a\\u0000b"


# Idempotency ---------------------------------------------------------------------------------
def test_same_idempotency_key_and_body_returns_the_first_job_and_creates_nothing(api, jobs_url):
    body = {"jobType": "demo.steps", "params": {"steps": 2}, "sourceTaskId": "t-9"}
    first = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="order-42")
    events_after_first = JobEvent.objects.count()
    again = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == again.status_code == 202
    assert again.json()["jobId"] == first.json()["jobId"]
    assert set(again.json()) == JOB_KEYS
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert ContentJob.objects.count() == 1
    assert JobEvent.objects.count() == events_after_first


def test_a_replay_returns_the_first_job_as_it_is_now(api, jobs_url):
    body = {"jobType": "demo.steps"}
    first = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="k-1").json()
    assert api.post(f"{jobs_url}/{first['jobId']}/cancel").status_code == 202
    again = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 202
    assert again.json()["jobId"] == first["jobId"] and again.json()["status"] == "cancelled"
    assert again["Idempotent-Replayed"] == "true"
    assert ContentJob.objects.count() == 1


def test_same_idempotency_key_with_another_body_is_422_and_changes_nothing(api, jobs_url):
    assert submit(api, jobs_url, {"jobType": "demo.steps", "params": {"steps": 2}}, HTTP_IDEMPOTENCY_KEY="k").status_code == 202
    before = snapshot()
    for other in [{"jobType": "demo.steps", "params": {"steps": 3}}, {"jobType": "render.card", "params": {"title": "x"}},
                  {"jobType": "demo.steps", "params": {"steps": 2}, "sourceTaskId": "t"}]:
        response = submit(api, jobs_url, other, HTTP_IDEMPOTENCY_KEY="k")
        assert_problem(response, 422, "idempotency_key_reused")
        assert "Idempotency-Key" in error_fields(response)
        assert "Idempotent-Replayed" not in response
    assert snapshot() == before


def test_different_idempotency_keys_create_different_jobs(api, jobs_url):
    body = {"jobType": "demo.steps"}
    a = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="a").json()["jobId"]
    b = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="b").json()["jobId"]
    c = submit(api, jobs_url, body).json()["jobId"]
    assert len({a, b, c}) == 3
    assert ContentJob.objects.count() == 3


def test_an_idempotency_key_belongs_to_one_company(api, outsider_api, jobs_url, other_company):
    body = {"jobType": "demo.steps"}
    mine = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="shared")
    theirs = submit(outsider_api, f"/api/companies/{other_company.id}/content-jobs", body, HTTP_IDEMPOTENCY_KEY="shared")
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["jobId"] != theirs.json()["jobId"]
    assert theirs.json()["companyId"] == str(other_company.id)
    assert "Idempotent-Replayed" not in theirs
    assert ContentJob.objects.count() == 2


def test_an_idempotency_key_older_than_24_hours_names_a_new_job(api, jobs_url):
    body = {"jobType": "demo.steps"}
    first = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="old").json()["jobId"]
    ContentJob.objects.filter(pk=first).update(created_at=timezone.now() - timedelta(hours=25))
    again = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="old")
    assert again.status_code == 202
    assert again.json()["jobId"] != first
    assert "Idempotent-Replayed" not in again
    assert ContentJob.objects.count() == 2


def test_an_idempotency_key_over_255_characters_is_400_and_creates_nothing(api, jobs_url):
    response = submit(api, jobs_url, {"jobType": "demo.steps"}, HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert_problem(response, 400, "validation_error")
    assert "Idempotency-Key" in error_fields(response)
    assert ContentJob.objects.count() == 0
    ok = submit(api, jobs_url, {"jobType": "demo.steps"}, HTTP_IDEMPOTENCY_KEY="k" * 255)
    assert ok.status_code == 202
    assert ContentJob.objects.get().idempotency_key == "k" * 255


def test_a_bad_body_with_an_idempotency_key_creates_nothing_and_does_not_use_up_the_key(api, jobs_url):
    bad = submit(api, jobs_url, {"jobType": "demo.steps", "params": {"steps": 0}}, HTTP_IDEMPOTENCY_KEY="k2")
    assert_problem(bad, 400, "invalid_params")
    assert ContentJob.objects.count() == 0
    good = submit(api, jobs_url, {"jobType": "demo.steps"}, HTTP_IDEMPOTENCY_KEY="k2")
    assert good.status_code == 202 and "Idempotent-Replayed" not in good


# List ----------------------------------------------------------------------------------------
def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [job["jobId"] for job in response.json()["results"]]


def test_list_is_newest_first_with_whole_jobs(api, jobs_url):
    created = [submit(api, jobs_url, {"jobType": "demo.steps"}).json()["jobId"] for _ in range(4)]
    response = api.get(jobs_url)
    assert {"results", "next"} <= set(response.json())
    assert ids(response) == list(reversed(created))
    assert all(set(job) == JOB_KEYS for job in response.json()["results"])
    stamps = [parse_ts(job["createdAt"]) for job in response.json()["results"]]
    assert stamps == sorted(stamps, reverse=True)
    assert response.json()["next"] is None
    assert ids(api.get(jobs_url + "/")) == list(reversed(created))


def test_list_filters_by_status_job_type_and_source_task(api, jobs_url, company):
    a = submit(api, jobs_url, {"jobType": "demo.steps", "sourceTaskId": "t0"}).json()["jobId"]
    b = submit(api, jobs_url, {"jobType": "demo.steps", "sourceTaskId": "t1"}).json()["jobId"]
    c = submit(api, jobs_url, {"jobType": "render.card", "params": {"title": "x"}, "sourceTaskId": "t1"}).json()["jobId"]
    d = submit(api, jobs_url, {"jobType": "demo.steps", "sourceTaskId": "t1"}).json()["jobId"]
    assert api.post(f"{jobs_url}/{b}/cancel").status_code == 202
    services.job_start(job_id=d)
    assert ids(api.get(jobs_url, {"status": "cancelled"})) == [b]
    assert ids(api.get(jobs_url, {"status": "running"})) == [d]
    assert ids(api.get(jobs_url, {"status": "queued"})) == [c, a]
    assert ids(api.get(jobs_url, {"status": "done"})) == []
    assert ids(api.get(jobs_url, {"jobType": "render.card"})) == [c]
    assert ids(api.get(jobs_url, {"jobType": "demo.steps"})) == [d, b, a]
    assert ids(api.get(jobs_url, {"jobType": "no.such.type"})) == []
    assert ids(api.get(jobs_url, {"sourceTaskId": "t1"})) == [d, c, b]
    assert ids(api.get(jobs_url, {"sourceTaskId": "t1", "jobType": "demo.steps", "status": "running"})) == [d]
    assert ids(api.get(jobs_url, {"sourceTaskId": "nope"})) == []


@pytest.mark.parametrize("status", ["sleeping", "QUEUED", "terminal"])
def test_an_unknown_status_filter_is_400_naming_status(api, jobs_url, company, status):
    new_job(company)
    response = api.get(jobs_url, {"status": status})
    assert_problem(response, 400, "validation_error")
    assert "status" in error_fields(response)


def test_pages_follow_next_through_every_job_once(api, jobs_url, company):
    created = [new_job(company).pk for _ in range(8)]
    expected = [str(pk) for pk in reversed(created)]
    seen, sizes, url = [], [], f"{jobs_url}?pageSize=3"
    while url:
        page = api.get(url)
        assert page.status_code == 200, page.content
        sizes.append(len(page.json()["results"]))
        seen += ids(page)
        url = page.json()["next"]
        assert len(sizes) < 10, "next never ends"
    assert sizes == [3, 3, 2]
    assert seen == expected
    assert len(set(seen)) == len(seen)


def test_a_job_submitted_while_paging_shows_no_duplicates(api, jobs_url, company):
    old = [str(new_job(company).pk) for _ in range(5)]
    first = api.get(jobs_url, {"pageSize": 2})
    seen = ids(first)
    new_job(company)  # newer than everything: belongs before the cursor
    url = first.json()["next"]
    while url:
        page = api.get(url)
        seen += ids(page)
        url = page.json()["next"]
    assert seen == list(reversed(old))


def test_filters_apply_on_every_page(api, jobs_url, company):
    wanted = [services.job_submit(company=company, job_type="demo.steps", params={}, source_task_id="w")[0] for _ in range(5)]
    for _ in range(5):
        new_job(company)
    seen, url = [], f"{jobs_url}?pageSize=2&sourceTaskId=w"
    while url:
        page = api.get(url)
        seen += ids(page)
        url = page.json()["next"]
    assert seen == [str(job.pk) for job in reversed(wanted)]


def test_the_default_page_size_is_50(api, jobs_url, company):
    for _ in range(51):
        new_job(company)
    first = api.get(jobs_url)
    assert len(ids(first)) == 50
    assert first.json()["next"]
    assert len(ids(api.get(first.json()["next"]))) == 1


@pytest.mark.parametrize("cursor", [
    base64.b64encode(b"p=garbage").decode(),  # decodes; its position is no time
    base64.b64encode(b"p=2026-13-45 10:00:00").decode(),  # the shape of a time; no such time
    base64.b64encode(b"o=-1").decode(),
    "not-base64!",
    "é",
])
def test_a_cursor_the_api_did_not_hand_out_is_400_naming_it(api, jobs_url, company, cursor):
    new_job(company)
    body = assert_problem(api.get(jobs_url, {"cursor": cursor}), 400, "validation_error")
    assert body["errors"] == [{"field": "cursor", "code": "invalid_cursor",
                               "message": "Invalid cursor: use the next or previous link of a page."}]


def test_list_shows_only_the_companys_own_jobs(api, outsider_api, jobs_url, company, other_company):
    mine = [submit(api, jobs_url, {"jobType": "demo.steps"}).json()["jobId"] for _ in range(2)]
    other_url = f"/api/companies/{other_company.id}/content-jobs"
    theirs = submit(outsider_api, other_url, {"jobType": "demo.steps"}).json()["jobId"]
    listing = api.get(jobs_url)
    assert ids(listing) == list(reversed(mine))
    assert {job["companyId"] for job in listing.json()["results"]} == {str(company.id)}
    assert ids(outsider_api.get(other_url)) == [theirs]
    assert ids(api.get(jobs_url, {"jobType": "demo.steps", "status": "queued"})) == list(reversed(mine))


@pytest.mark.parametrize("route", ["", "/{job}/cancel", "/{job}/retry"])
def test_options_describes_a_route_to_its_companys_users_and_is_404_to_others(
        api, viewer_api, outsider_api, jobs_url, company, route):
    """DRF answers OPTIONS with what the route takes; to a member, who may POST, that was a 500."""
    url = jobs_url + route.format(job=new_job(company).pk)
    member = api.options(url)
    assert member.status_code == 200, member.content
    posted = member.json()["actions"]["POST"]
    if route:
        assert posted == {}  # a cancel or a retry takes no body
    else:
        assert set(posted) == {"jobType", "params", "sourceTaskId"}
        assert (posted["jobType"]["required"], posted["params"]["required"]) == (True, False)
    viewer = viewer_api.options(url)
    assert viewer.status_code == 200, viewer.content
    assert "actions" not in viewer.json()  # a viewer may not POST here
    assert_problem(outsider_api.options(url), 404)


# Detail and ids in the path ------------------------------------------------------------------
@pytest.mark.parametrize("slash", ["", "/"])
def test_detail_returns_the_job(api, jobs_url, company, slash):
    job = job_in(company, "running")
    response = api.get(f"{jobs_url}/{job.pk}{slash}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == JOB_KEYS
    assert body["jobId"] == str(job.pk) and body["companyId"] == str(company.id)
    assert body["status"] == "running" and body["attempt"] == 1
    assert parse_ts(body["startedAt"]) and body["finishedAt"] is None


def test_detail_of_a_nonexistent_job_is_404(api, jobs_url, company):
    new_job(company)
    assert_problem(api.get(f"{jobs_url}/{NO_SUCH_JOB}"), 404, "not_found")


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/companies/not-a-uuid/content-jobs"),
        ("post", "/api/companies/not-a-uuid/content-jobs"),
        ("get", f"/api/companies/{NO_SUCH_JOB}/content-jobs"),
        ("get", "{jobs}/not-a-uuid"),
        ("get", "{jobs}/1234"),
        ("post", "{jobs}/not-a-uuid/cancel"),
        ("post", "{jobs}/not-a-uuid/retry"),
        ("get", "{jobs}/not-a-uuid/logs"),
        ("post", "{jobs}/not-a-uuid/logs"),
        ("get", "{jobs}/not-a-uuid/artifacts/card.png"),
        ("get", "/api/companies/not-a-uuid/content-jobs/{job}"),
        ("get", "{jobs}/" + NO_SUCH_JOB),
        ("post", "{jobs}/" + NO_SUCH_JOB + "/cancel"),
        ("post", "{jobs}/" + NO_SUCH_JOB + "/retry"),
        ("get", "{jobs}/" + NO_SUCH_JOB + "/logs"),
        ("get", "{jobs}/{job}/no-such-action"),
    ],
)
def test_bad_or_unknown_ids_in_the_path_are_404_json_and_change_nothing(api, jobs_url, company, method, path):
    job = new_job(company)
    before = snapshot()
    url = path.format(jobs=jobs_url, job=job.pk)
    body = {"jobType": "demo.steps"} if url.endswith("content-jobs") else {"event_message": "x"}
    response = getattr(api, method)(url, body if method == "post" else None, format="json")
    assert_problem(response, 404, "not_found")
    assert snapshot() == before


def test_a_method_the_endpoint_does_not_have_is_405_json(api, jobs_url, company):
    job = new_job(company)
    before = snapshot()
    assert_problem(api.delete(f"{jobs_url}/{job.pk}"), 405, "method_not_allowed")
    assert_problem(api.get(f"{jobs_url}/{job.pk}/cancel"), 405, "method_not_allowed")
    assert snapshot() == before


# Tenancy -------------------------------------------------------------------------------------
def test_another_companys_job_is_404_everywhere_and_says_nothing_about_it(api, outsider_api, jobs_url, company):
    job = job_in(company, "failed")
    ctx = JobContext(job)
    ctx.save_artifact("card.png", b"secret", "image/png")
    base = f"{jobs_url}/{job.pk}"
    before = snapshot()
    for method, url, body in [
        ("get", jobs_url, None),
        ("get", jobs_url + "/", None),
        ("post", jobs_url, {"jobType": "demo.steps"}),
        ("get", base, None),
        ("get", base + "/", None),
        ("post", f"{base}/cancel", None),
        ("post", f"{base}/retry", None),
        ("get", f"{base}/logs", None),
        ("post", f"{base}/logs", {"event_message": "x"}),
        ("get", f"{base}/artifacts/card.png", None),
        ("get", f"{base}/events", None),
        ("get", f"/api/companies/{company.id}/events", None),
    ]:
        response = getattr(outsider_api, method)(url, body, format="json")
        assert_problem(response, 404, "not_found")
        text = response.content.decode()
        for secret in (str(job.pk), str(company.id), company.slug, company.name):
            assert secret not in text, (url, text)
    assert snapshot() == before


def test_another_companys_job_is_404_under_the_outsiders_own_company_too(api, outsider_api, company, other_company):
    job = job_in(company, "failed")
    own = f"/api/companies/{other_company.id}/content-jobs/{job.pk}"
    before = snapshot()
    for method, url in [("get", own), ("post", f"{own}/cancel"), ("post", f"{own}/retry"), ("get", f"{own}/logs"),
                        ("post", f"{own}/logs")]:
        response = getattr(outsider_api, method)(url, {"event_message": "x"} if method == "post" else None, format="json")
        assert_problem(response, 404, "not_found")
        assert str(job.pk) not in response.content.decode()
    assert snapshot() == before


def test_an_unknown_company_and_a_foreign_company_answer_alike(outsider_api, company):
    foreign = outsider_api.get(f"/api/companies/{company.id}/content-jobs")
    unknown = outsider_api.get(f"/api/companies/{NO_SUCH_JOB}/content-jobs")
    assert_problem(foreign, 404)
    assert foreign.json() == unknown.json()


# Authentication ------------------------------------------------------------------------------
def every_endpoint(jobs_url, company, job):
    base = f"{jobs_url}/{job.pk}"
    return [
        ("get", jobs_url), ("post", jobs_url), ("get", jobs_url + "/"), ("get", base), ("post", f"{base}/cancel"),
        ("post", f"{base}/retry"), ("get", f"{base}/logs"), ("post", f"{base}/logs"),
        ("get", f"{base}/artifacts/card.png"), ("get", f"{base}/events"), ("get", f"/jobs/{job.pk}/logs"),
        ("get", f"/api/companies/{company.id}/events"),
    ]


def test_without_credentials_every_endpoint_is_401_json_and_changes_nothing(jobs_url, company):
    job = job_in(company, "failed")
    before = snapshot()
    client = APIClient()
    for method, url in every_endpoint(jobs_url, company, job):
        body = {"jobType": "demo.steps"} if method == "post" else None
        response = getattr(client, method)(url, body, format="json")
        assert_problem(response, 401, "not_authenticated")
        assert str(job.pk) not in response.content.decode()
    assert snapshot() == before


def test_the_api_401_names_the_token_scheme(jobs_url):
    response = APIClient().get(jobs_url)
    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.parametrize("header", ["Token not-a-real-token", "Token ", "Token a b"])
def test_a_wrong_token_is_401_everywhere_and_changes_nothing(jobs_url, company, header):
    job = job_in(company, "failed")
    before = snapshot()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    for method, url in every_endpoint(jobs_url, company, job):
        response = getattr(client, method)(url, {"jobType": "demo.steps"} if method == "post" else None, format="json")
        assert_problem(response, 401)
        assert response.json()["code"] in {"authentication_failed", "not_authenticated"}
    assert snapshot() == before


def test_the_stream_token_is_not_accepted_by_the_api(api, jobs_url):
    job = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    token = job["eventsUrl"].split("token=")[1]
    client = APIClient()
    assert_problem(client.get(f"{jobs_url}/{job['jobId']}?token={token}"), 401)
    assert_problem(client.post(f"{jobs_url}/{job['jobId']}/cancel?token={token}"), 401)
    assert ContentJob.objects.get(pk=job["jobId"]).status == "queued"


def test_session_auth_reads_after_force_login(member, jobs_url, company):
    job = new_job(company)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(member)
    assert ids(client.get(jobs_url)) == [str(job.pk)]
    assert client.get(f"{jobs_url}/{job.pk}").json()["jobId"] == str(job.pk)


def test_session_auth_with_a_password_login_reads(member, jobs_url, company):
    job = new_job(company)
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password="pw-alice")
    assert ids(client.get(jobs_url)) == [str(job.pk)]
    assert client.get(f"{jobs_url}/{job.pk}/logs").status_code == 200


def test_session_writes_need_the_csrf_token(member, jobs_url):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(member)
    assert_problem(client.post(jobs_url, {"jobType": "demo.steps"}, format="json"), 403)
    assert ContentJob.objects.count() == 0
    secret = "a" * 32  # a CSRF secret as Django stores it in the cookie
    client.cookies["csrftoken"] = secret
    response = client.post(jobs_url, {"jobType": "demo.steps"}, format="json", HTTP_X_CSRFTOKEN=secret)
    assert response.status_code == 202, response.content
    assert ContentJob.objects.count() == 1


def test_a_session_of_a_non_member_is_404(outsider, jobs_url, company):
    new_job(company)
    client = APIClient()
    client.force_login(outsider)
    assert_problem(client.get(jobs_url), 404, "not_found")


# Viewers -------------------------------------------------------------------------------------
def test_a_viewer_reads_everything(viewer_api, jobs_url, company):
    job = job_in(company, "running")
    ctx = JobContext(job)
    ctx.save_artifact("card.png", b"png bytes", "image/png")
    services.job_complete(job=job, result={"artifacts": ctx.artifacts})
    base = f"{jobs_url}/{job.pk}"
    assert ids(viewer_api.get(jobs_url)) == [str(job.pk)]
    assert viewer_api.get(base).json()["status"] == "done"
    assert viewer_api.get(f"{base}/logs").json()["results"] == []
    artifact = viewer_api.get(f"{base}/artifacts/card.png")
    assert artifact.status_code == 200
    assert b"".join(artifact.streaming_content) == b"png bytes"


def test_a_viewer_cannot_write_and_nothing_changes(viewer_api, jobs_url, company):
    queued, failed = job_in(company, "queued"), job_in(company, "failed")
    before = snapshot()
    for url, body in [
        (jobs_url, {"jobType": "demo.steps"}),
        (jobs_url + "/", {"jobType": "demo.steps"}),
        (f"{jobs_url}/{queued.pk}/cancel", None),
        (f"{jobs_url}/{failed.pk}/retry", None),
        (f"{jobs_url}/{queued.pk}/logs", {"event_message": "hi", "severity": "info"}),
        (f"{jobs_url}/{queued.pk}/logs", [{"event_message": "hi"}]),
    ]:
        assert_problem(viewer_api.post(url, body, format="json"), 403, "permission_denied")
    assert snapshot() == before
    assert ContentJob.objects.get(pk=queued.pk).status == "queued"
    assert ContentJob.objects.get(pk=failed.pk).status == "failed"


# Cancel --------------------------------------------------------------------------------------
@pytest.mark.parametrize("slash", ["", "/"])
def test_cancel_of_a_queued_job_cancels_it_at_once(api, jobs_url, company, slash):
    job = new_job(company)
    response = api.post(f"{jobs_url}/{job.pk}/cancel{slash}")
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == JOB_KEYS
    assert body["jobId"] == str(job.pk) and body["status"] == "cancelled"
    assert parse_ts(body["finishedAt"])
    job.refresh_from_db()
    assert job.status == "cancelled" and job.finished_at is not None
    assert api.get(f"{jobs_url}/{job.pk}").json()["status"] == "cancelled"


def test_cancel_of_a_running_job_asks_it_to_stop(api, jobs_url, company):
    job = job_in(company, "running")
    response = api.post(f"{jobs_url}/{job.pk}/cancel")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "running" and body["cancelRequested"] is True and body["finishedAt"] is None
    job.refresh_from_db()
    assert job.status == "running" and job.cancel_requested is True
    # Asking again is harmless.
    again = api.post(f"{jobs_url}/{job.pk}/cancel")
    assert again.status_code == 202 and again.json()["cancelRequested"] is True


@pytest.mark.parametrize("status", ["done", "failed", "cancelled"])
def test_cancel_of_a_finished_job_is_409_and_changes_nothing(api, jobs_url, company, status):
    job = job_in(company, status)
    before = snapshot()
    response = api.post(f"{jobs_url}/{job.pk}/cancel")
    assert_problem(response, 409, "invalid_transition")
    assert snapshot() == before
    assert ContentJob.objects.get(pk=job.pk).status == status


# Retry ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_retry_queues_a_failed_or_cancelled_job_for_another_attempt(api, jobs_url, company, status):
    job = job_in(company, status)
    attempt = job.attempt
    response = api.post(f"{jobs_url}/{job.pk}/retry")
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == JOB_KEYS
    assert body["status"] == "queued" and body["error"] is None and body["result"] is None
    assert body["cancelRequested"] is False and body["finishedAt"] is None and body["progress"] == 0.0
    job.refresh_from_db()
    assert job.status == "queued"
    services.job_start(job_id=job.pk)
    assert api.get(f"{jobs_url}/{job.pk}").json()["attempt"] == attempt + 1


def test_retry_with_a_trailing_slash(api, jobs_url, company):
    job = job_in(company, "failed")
    assert api.post(f"{jobs_url}/{job.pk}/retry/").json()["status"] == "queued"


@pytest.mark.parametrize("status", ["queued", "running", "done"])
def test_retry_of_a_queued_running_or_done_job_is_409_and_changes_nothing(api, jobs_url, company, status):
    job = job_in(company, status)
    before = snapshot()
    assert_problem(api.post(f"{jobs_url}/{job.pk}/retry"), 409, "invalid_transition")
    assert snapshot() == before
    assert ContentJob.objects.get(pk=job.pk).status == status


# Artifacts -----------------------------------------------------------------------------------
PNG_BYTES = b"\x89PNG\r\n\x1a\n fake bytes"
HTML_BYTES = "<!doctype html><p>héllo</p>".encode()


@pytest.fixture
def done_with_artifacts(company):
    job = job_in(company, "running")
    ctx = JobContext(job)
    ctx.save_artifact("card.png", PNG_BYTES, "image/png")
    ctx.save_artifact("document.html", HTML_BYTES, "text/html; charset=utf-8")
    return services.job_complete(job=job, result={"artifacts": ctx.artifacts})


def test_an_artifact_downloads_with_its_bytes_and_type(api, jobs_url, done_with_artifacts):
    job = done_with_artifacts
    base = f"{jobs_url}/{job.pk}"
    listed = api.get(base).json()["result"]["artifacts"]
    assert [a["name"] for a in listed] == ["card.png", "document.html"]
    assert listed[0] == {"name": "card.png", "contentType": "image/png", "size": len(PNG_BYTES), "url": f"{base}/artifacts/card.png"}
    for entry, data in zip(listed, [PNG_BYTES, HTML_BYTES]):
        response = api.get(entry["url"])
        assert response.status_code == 200
        assert response["Content-Type"] == entry["contentType"]
        assert int(response["Content-Length"]) == len(data) == entry["size"]
        assert b"".join(response.streaming_content) == data
    assert api.get(f"{base}/artifacts/card.png/").status_code == 200


@pytest.mark.parametrize("name", ["other.png", "card.PNG", "card.png.bak"])
def test_an_unknown_artifact_is_404_json(api, jobs_url, done_with_artifacts, name):
    assert_problem(api.get(f"{jobs_url}/{done_with_artifacts.pk}/artifacts/{name}"), 404, "not_found")


def test_a_job_without_artifacts_has_none_to_download(api, jobs_url, company):
    job = job_in(company, "queued")
    assert_problem(api.get(f"{jobs_url}/{job.pk}/artifacts/card.png"), 404, "not_found")


def test_another_companys_artifact_is_404(outsider_api, jobs_url, other_company, done_with_artifacts):
    job = done_with_artifacts
    for url in [f"{jobs_url}/{job.pk}/artifacts/card.png",
                f"/api/companies/{other_company.id}/content-jobs/{job.pk}/artifacts/card.png"]:
        response = outsider_api.get(url)
        assert_problem(response, 404, "not_found")
        assert b"PNG" not in response.content
        assert str(job.pk) not in response.content.decode()


# Operations ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/healthz", "/healthz/"])
def test_healthz_answers_without_auth(db, path):
    response = APIClient().get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_a_token_acts_as_its_user_and_an_inactive_users_token_is_401_and_changes_nothing(member, jobs_url, company):
    client = client_for(member)
    created = submit(client, jobs_url, {"jobType": "demo.steps"})
    assert created.status_code == 202
    assert ContentJob.objects.get(pk=created.json()["jobId"]).created_by == member

    member.is_active = False
    member.save(update_fields=["is_active"])
    before = snapshot()
    for method, url in [("get", jobs_url), ("post", jobs_url)]:
        response = getattr(client, method)(url, {"jobType": "demo.steps"} if method == "post" else None, format="json")
        body = assert_problem(response, 401, "authentication_failed")
        assert body["detail"] == "User inactive or deleted."
    assert snapshot() == before


@pytest.mark.parametrize("accept, status", [
    (None, 200), ("*/*", 200), ("application/json", 200), ("application/json; indent=4", 200),
    ("text/html;q=0.9, */*;q=0.8", 200), ("application/*", 200), ("text/html", 406), ("image/png, text/csv", 406),
])
def test_the_answer_to_an_accept_header_is_drfs_each_time(member, company, accept, status):
    """Content negotiation's choice is kept for each Accept header (content_jobs.negotiation):
    DRF's own choice, the first time and after; a 406 each time for a header no renderer takes."""
    from rest_framework.exceptions import NotAcceptable
    from rest_framework.negotiation import DefaultContentNegotiation
    from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from content_jobs.negotiation import KeptNegotiation

    url = f"/api/companies/{company.pk}/content-jobs"
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}

    def choice(negotiation, renderers):
        request = Request(APIRequestFactory().get(url, **headers))
        try:
            renderer, media_type = negotiation.select_renderer(request, renderers)
        except NotAcceptable:
            return "406"
        return type(renderer), media_type

    for renderers in ([JSONRenderer()], [BrowsableAPIRenderer(), JSONRenderer()]):
        expected = choice(DefaultContentNegotiation(), renderers)
        assert [choice(KeptNegotiation(), renderers) for _ in range(3)] == [expected] * 3

    client = client_for(member)
    answers = [client.get(url, **headers) for _ in range(3)]
    assert {(r.status_code, r["Content-Type"], r.content) for r in answers} == {
        (status, answers[0]["Content-Type"], answers[0].content)}
    assert client.get(url + "?format=json", **headers).status_code == status
    assert client.get(url + "?format=xml").status_code == 404
