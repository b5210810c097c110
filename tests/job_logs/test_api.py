"""Log history and append over the API: the five keys of the log payload, paging, validation."""
import time

import pytest
from rest_framework.test import APIClient

from content_jobs import services
from content_jobs.models import ContentJob
from job_logs.models import LogLine
from job_logs.services import log_append_many

KEYS = {"event_id", "task_id", "event_message", "severity", "event_time"}
LIMIT = 64 * 1024


@pytest.fixture
def job(company):
    return services.job_submit(company=company, job_type="demo.steps", params={})[0]


@pytest.fixture
def logs_url(jobs_url, job):
    return f"{jobs_url}/{job.pk}/logs"


def lines_of(job) -> list[tuple[int, str, str]]:
    return list(LogLine.objects.filter(job=job).order_by("event_id").values_list("event_id", "message", "severity"))


def assert_problem(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["type"] == f"urn:nexus:problem:{body['code']}"
    if code:
        assert body["code"] == code, body
    return body


def error_fields(response) -> set[str]:
    return {e.get("field") for e in response.json().get("errors", [])}


# History -------------------------------------------------------------------------------------
def test_history_of_a_job_without_lines_is_empty(api, logs_url):
    response = api.get(logs_url)
    assert response.status_code == 200
    assert response.json() == {"results": [], "next": None}


@pytest.mark.parametrize("slash", ["", "/"])
def test_history_is_oldest_first_with_exactly_the_five_keys(api, job, logs_url, slash):
    before = time.time()
    log_append_many(job_id=job.pk, entries=[("first", "info"), ("careful", "warning"), ("bad", "error"), ("yay", "success")])
    response = api.get(logs_url + slash)
    assert response.status_code == 200
    body = response.json()
    assert [l["event_id"] for l in body["results"]] == [1, 2, 3, 4]
    assert [(l["event_message"], l["severity"]) for l in body["results"]] == [
        ("first", "info"), ("careful", "warning"), ("bad", "error"), ("yay", "success"),
    ]
    for line in body["results"]:
        assert set(line) == KEYS
        assert line["task_id"] == str(job.pk)
        assert isinstance(line["event_id"], int)
        assert isinstance(line["event_time"], float)
        assert before - 1 <= line["event_time"] <= time.time() + 1
    assert body["next"] is None


def test_history_shows_only_this_jobs_lines(api, jobs_url, company, job, logs_url):
    other = services.job_submit(company=company, job_type="demo.steps", params={})[0]
    log_append_many(job_id=job.pk, entries=[("mine", "info")])
    log_append_many(job_id=other.pk, entries=[("other", "info"), ("other 2", "info")])
    assert [l["event_message"] for l in api.get(logs_url).json()["results"]] == ["mine"]
    theirs = api.get(f"{jobs_url}/{other.pk}/logs").json()["results"]
    assert [(l["event_id"], l["task_id"]) for l in theirs] == [(1, str(other.pk)), (2, str(other.pk))]


def test_history_after_an_id_and_with_a_limit(api, job, logs_url):
    log_append_many(job_id=job.pk, entries=[(f"line {i}", "info") for i in range(1, 8)])
    assert [l["event_message"] for l in api.get(logs_url, {"after": 5}).json()["results"]] == ["line 6", "line 7"]
    assert api.get(logs_url, {"after": 7}).json() == {"results": [], "next": None}
    assert api.get(logs_url, {"after": 100}).json()["results"] == []
    assert [l["event_id"] for l in api.get(logs_url, {"after": 0}).json()["results"]] == list(range(1, 8))
    limited = api.get(logs_url, {"limit": 2}).json()
    assert [l["event_id"] for l in limited["results"]] == [1, 2]
    assert limited["next"]
    both = api.get(logs_url, {"after": 2, "limit": 3}).json()
    assert [l["event_id"] for l in both["results"]] == [3, 4, 5]
    assert api.get(logs_url, {"limit": 7}).json()["next"] is None


@pytest.mark.parametrize("limit", [1, 3, 6])
def test_next_walks_every_line_once(api, job, logs_url, limit):
    log_append_many(job_id=job.pk, entries=[(f"line {i}", "info") for i in range(1, 8)])
    seen, pages, url = [], 0, f"{logs_url}?limit={limit}"
    while url:
        page = api.get(url)
        assert page.status_code == 200, page.content
        assert len(page.json()["results"]) <= limit
        seen += [l["event_id"] for l in page.json()["results"]]
        url = page.json()["next"]
        pages += 1
        assert pages < 20, "next never ends"
    assert seen == list(range(1, 8))
    assert pages == -(-7 // limit)


def test_next_picks_up_lines_appended_after_the_last_page(api, job, logs_url):
    log_append_many(job_id=job.pk, entries=[("a", "info"), ("b", "info"), ("c", "info")])
    first = api.get(logs_url, {"limit": 2}).json()
    log_append_many(job_id=job.pk, entries=[("d", "info")])
    second = api.get(first["next"]).json()
    assert [l["event_message"] for l in second["results"]] == ["c", "d"]


@pytest.mark.parametrize(
    "query, field",
    [({"after": -1}, "after"), ({"after": "x"}, "after"), ({"after": "1.5"}, "after"),
     ({"limit": 0}, "limit"), ({"limit": "x"}, "limit"), ({"limit": 100000}, "limit")],
)
def test_bad_history_queries_are_400_naming_the_parameter(api, job, logs_url, query, field):
    log_append_many(job_id=job.pk, entries=[("a", "info")])
    response = api.get(logs_url, query)
    assert_problem(response, 400, "validation_error")
    assert field in error_fields(response)


def test_a_viewer_reads_the_history(viewer_api, job, logs_url):
    log_append_many(job_id=job.pk, entries=[("a", "info")])
    response = viewer_api.get(logs_url)
    assert response.status_code == 200
    assert [l["event_message"] for l in response.json()["results"]] == ["a"]


# Append --------------------------------------------------------------------------------------
def test_append_one_line(api, job, logs_url):
    response = api.post(logs_url, {"event_message": "from CI", "severity": "warning"}, format="json")
    assert response.status_code == 201, response.content
    results = response.json()["results"]
    assert len(results) == 1
    assert set(results[0]) == KEYS
    assert results[0]["event_id"] == 1 and results[0]["task_id"] == str(job.pk)
    assert (results[0]["event_message"], results[0]["severity"]) == ("from CI", "warning")
    assert isinstance(results[0]["event_time"], float)
    assert lines_of(job) == [(1, "from CI", "warning")]
    assert api.get(logs_url).json()["results"] == results


def test_append_a_list_in_order(api, job, logs_url):
    log_append_many(job_id=job.pk, entries=[("runner line", "info")])
    body = [{"event_message": "a", "severity": "info"}, {"event_message": "b", "severity": "success"},
            {"event_message": "c", "severity": "error"}]
    response = api.post(logs_url + "/", body, format="json")
    assert response.status_code == 201, response.content
    results = response.json()["results"]
    assert [(l["event_id"], l["event_message"], l["severity"]) for l in results] == [
        (2, "a", "info"), (3, "b", "success"), (4, "c", "error"),
    ]
    assert all(set(l) == KEYS for l in results)
    assert lines_of(job) == [(1, "runner line", "info"), (2, "a", "info"), (3, "b", "success"), (4, "c", "error")]


def test_append_keeps_the_message_exactly(api, job, logs_url):
    message = "  two spaces, a tab\t, a newline\n and ünïcödé ✓  "
    response = api.post(logs_url, {"event_message": message, "severity": "info"}, format="json")
    assert response.status_code == 201
    assert response.json()["results"][0]["event_message"] == message
    assert lines_of(job) == [(1, message, "info")]


def test_a_message_of_exactly_64_kib_is_stored(api, job, logs_url):
    response = api.post(logs_url, {"event_message": "x" * LIMIT, "severity": "info"}, format="json")
    assert response.status_code == 201, response.content[:300]
    assert len(lines_of(job)[0][1]) == LIMIT


@pytest.mark.parametrize(
    "body, field",
    [
        ({"event_message": "x", "severity": "fatal"}, "severity"),
        ({"event_message": "x", "severity": "INFO"}, "severity"),
        ({"event_message": "x", "severity": None}, "severity"),
        ({"severity": "info"}, "event_message"),
        ({"event_message": None, "severity": "info"}, "event_message"),
        ([{"event_message": "ok"}, {"severity": "info"}], "[1].event_message"),
        ([{"event_message": "ok"}, {"event_message": "x", "severity": "fatal"}], "[1].severity"),
    ],
)
def test_bad_appends_are_400_naming_the_field_and_store_nothing(api, job, logs_url, body, field):
    log_append_many(job_id=job.pk, entries=[("before", "info")])
    response = api.post(logs_url, body, format="json")
    assert_problem(response, 400, "validation_error")
    assert field in error_fields(response), response.json()
    assert lines_of(job) == [(1, "before", "info")]


@pytest.mark.parametrize("body", [[], "just a string", 42])
def test_an_empty_list_or_a_non_object_is_400_and_stores_nothing(api, job, logs_url, body):
    response = api.post(logs_url, body, format="json")
    assert_problem(response, 400, "validation_error")
    assert response.json()["errors"]
    assert LogLine.objects.count() == 0


def test_malformed_json_is_400_and_stores_nothing(api, logs_url):
    response = api.post(logs_url, data='{"event_message": "x"', content_type="application/json")
    assert_problem(response, 400, "parse_error")
    assert LogLine.objects.count() == 0


@pytest.mark.parametrize(
    "message",
    ["x" * (LIMIT + 1), "é" * (LIMIT // 2 + 1)],  # over the limit in characters; in UTF-8 bytes only
    ids=["ascii", "multibyte"],
)
def test_a_message_over_64_kib_is_400_naming_event_message_and_stores_nothing(api, job, logs_url, message):
    response = api.post(logs_url, {"event_message": message, "severity": "info"}, format="json")
    assert_problem(response, 400, "message_too_long")
    assert "event_message" in error_fields(response)
    assert LogLine.objects.count() == 0


def test_one_over_long_message_in_a_list_stores_none_of_the_list(api, job, logs_url):
    body = [{"event_message": "fine"}, {"event_message": "x" * (LIMIT + 1)}, {"event_message": "also fine"}]
    response = api.post(logs_url, body, format="json")
    assert_problem(response, 400, "message_too_long")
    assert any(field and field.endswith("event_message") for field in error_fields(response))
    assert LogLine.objects.count() == 0


# Who may append ------------------------------------------------------------------------------
def test_a_viewer_cannot_append(viewer_api, job, logs_url):
    for body in [{"event_message": "x", "severity": "info"}, [{"event_message": "x"}]]:
        assert_problem(viewer_api.post(logs_url, body, format="json"), 403, "permission_denied")
    assert LogLine.objects.count() == 0


def test_another_company_gets_404_and_learns_nothing(outsider_api, job, logs_url, company, other_company):
    log_append_many(job_id=job.pk, entries=[("secret line", "info")])
    for url in [logs_url, f"/api/companies/{other_company.id}/content-jobs/{job.pk}/logs"]:
        for response in [outsider_api.get(url), outsider_api.post(url, {"event_message": "x"}, format="json")]:
            assert_problem(response, 404, "not_found")
            text = response.content.decode()
            assert "secret line" not in text and str(job.pk) not in text and str(company.id) not in text
    assert lines_of(job) == [(1, "secret line", "info")]


def test_without_credentials_the_logs_are_401(job, logs_url):
    client = APIClient()
    assert_problem(client.get(logs_url), 401, "not_authenticated")
    assert_problem(client.post(logs_url, {"event_message": "x"}, format="json"), 401, "not_authenticated")
    assert LogLine.objects.count() == 0


def test_logs_of_a_nonexistent_job_are_404(api, jobs_url, job):
    url = f"{jobs_url}/00000000-0000-0000-0000-000000000000/logs"
    assert_problem(api.get(url), 404, "not_found")
    assert_problem(api.post(url, {"event_message": "x"}, format="json"), 404, "not_found")
    assert LogLine.objects.count() == 0
    assert ContentJob.objects.count() == 1
