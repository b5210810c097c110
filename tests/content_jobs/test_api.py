"""The job API as a client sees it: status codes, problem bodies, headers and rows."""
import json

import pytest

from content_jobs import services
from content_jobs.models import ContentJob
from content_jobs.runner import JobContext

JOB_KEYS = {
    "jobId", "companyId", "jobType", "status", "progress", "stage", "params", "result", "error", "sourceTaskId",
    "attempt", "cancelRequested", "createdAt", "startedAt", "finishedAt", "eventsUrl", "logsUrl",
}


def submit(api, url, body, **headers):
    return api.post(url, body, format="json", **headers)


def fields(response) -> set[str]:
    return {e.get("field") for e in response.json().get("errors", [])}


def assert_problem(response, status: int, code: str | None = None):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:nexus:problem:{body['code']}"
    if code:
        assert body["code"] == code
    return body


# Submit --------------------------------------------------------------------------------------
@pytest.mark.parametrize("slash", ["", "/"])
def test_submit_answers_202_with_the_whole_job_and_a_location(api, jobs_url, company, slash):
    response = submit(api, jobs_url + slash, {"jobType": "demo.steps", "params": {"steps": 3}, "sourceTaskId": "t-1"})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == JOB_KEYS
    assert body["status"] == "queued" and body["progress"] == 0.0 and body["attempt"] == 0
    assert body["params"] == {"steps": 3, "delayMs": 200, "failAt": None}
    assert body["companyId"] == str(company.id) and body["sourceTaskId"] == "t-1"
    assert body["createdAt"].endswith("Z") and body["startedAt"] is None
    assert response["Location"] == f"{jobs_url}/{body['jobId']}"
    assert body["eventsUrl"].startswith(f"{jobs_url}/{body['jobId']}/events?token=")
    assert body["logsUrl"].startswith(f"/jobs/{body['jobId']}/logs?token=")
    assert ContentJob.objects.filter(pk=body["jobId"], status="queued").exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "jobType"),
        ({"jobType": ""}, "jobType"),
        ({"jobType": "   "}, "jobType"),
        ({"jobType": "no.such.type"}, "jobType"),
        ({"jobType": "demo.steps", "params": [1, 2]}, "params"),
        ({"jobType": "demo.steps", "params": "steps=3"}, "params"),
        ({"jobType": "demo.steps", "params": {"steps": 0}}, "params.steps"),
        ({"jobType": "demo.steps", "params": {"steps": 10001}}, "params.steps"),
        ({"jobType": "demo.steps", "params": {"delayMs": -1}}, "params.delayMs"),
        ({"jobType": "demo.steps", "params": {"stepz": 3}}, "params.stepz"),
        ({"jobType": "render.card", "params": {"title": "x", "theme": "neon"}}, "params.theme"),
        ({"jobType": "demo.steps", "sourceTaskId": "x" * 256}, "sourceTaskId"),
    ],
)
def test_bad_submissions_are_400_naming_the_field_and_create_nothing(api, jobs_url, body, field):
    response = submit(api, jobs_url, body)
    assert_problem(response, 400)
    assert field in fields(response)
    assert ContentJob.objects.count() == 0


def test_malformed_json_is_400_and_creates_nothing(api, jobs_url):
    response = api.post(jobs_url, data='{"jobType": "demo.steps",', content_type="application/json")
    assert_problem(response, 400, "parse_error")
    assert ContentJob.objects.count() == 0


def test_a_5_mib_body_is_413_and_creates_nothing(api, jobs_url):
    body = json.dumps({"jobType": "render.markdown", "params": {"markdown": "x" * (5 * 1024 * 1024)}})
    response = api.post(jobs_url, data=body, content_type="application/json")
    assert_problem(response, 413, "body_too_large")
    assert ContentJob.objects.count() == 0


def test_a_non_json_content_type_is_415(api, jobs_url):
    response = api.post(jobs_url, data="jobType=demo.steps", content_type="application/x-www-form-urlencoded")
    assert_problem(response, 415)
    assert ContentJob.objects.count() == 0


def test_same_idempotency_key_and_body_returns_the_first_job_and_creates_nothing(api, jobs_url):
    body = {"jobType": "demo.steps", "params": {"steps": 2}}
    first = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="order-42")
    again = submit(api, jobs_url, body, HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == again.status_code == 202
    assert again.json()["jobId"] == first.json()["jobId"]
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert ContentJob.objects.count() == 1


def test_same_idempotency_key_with_another_body_is_422(api, jobs_url):
    submit(api, jobs_url, {"jobType": "demo.steps", "params": {"steps": 2}}, HTTP_IDEMPOTENCY_KEY="k")
    response = submit(api, jobs_url, {"jobType": "demo.steps", "params": {"steps": 3}}, HTTP_IDEMPOTENCY_KEY="k")
    assert_problem(response, 422, "idempotency_key_reused")
    assert ContentJob.objects.count() == 1


def test_an_idempotency_key_over_255_characters_is_400(api, jobs_url):
    response = submit(api, jobs_url, {"jobType": "demo.steps"}, HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert_problem(response, 400)
    assert "Idempotency-Key" in fields(response)
    assert ContentJob.objects.count() == 0


# List and detail -----------------------------------------------------------------------------
def test_list_is_newest_first_filtered_and_paginated_without_duplicates(api, jobs_url):
    ids = [submit(api, jobs_url, {"jobType": "demo.steps", "sourceTaskId": f"t{i % 2}"}).json()["jobId"] for i in range(7)]
    card = submit(api, jobs_url, {"jobType": "render.card", "params": {"title": "x"}}).json()["jobId"]
    listing = api.get(jobs_url).json()
    assert [j["jobId"] for j in listing["results"]] == [card, *reversed(ids)]
    assert [j["jobId"] for j in api.get(jobs_url, {"jobType": "render.card"}).json()["results"]] == [card]
    assert {j["jobId"] for j in api.get(jobs_url, {"sourceTaskId": "t1"}).json()["results"]} == set(ids[1::2])
    assert api.get(jobs_url, {"status": "done"}).json()["results"] == []
    seen, url = [], f"{jobs_url}?pageSize=3"
    while url:
        page = api.get(url).json()
        assert len(page["results"]) <= 3
        seen += [j["jobId"] for j in page["results"]]
        url = page["next"]
    assert seen == [card, *reversed(ids)]


def test_an_unknown_status_filter_is_400(api, jobs_url):
    response = api.get(jobs_url, {"status": "sleeping"})
    assert_problem(response, 400)
    assert "status" in fields(response)


def test_list_shows_only_the_companys_own_jobs(api, outsider_api, jobs_url, other_company):
    submit(api, jobs_url, {"jobType": "demo.steps"})
    other_url = f"/api/companies/{other_company.id}/content-jobs"
    submit(outsider_api, other_url, {"jobType": "demo.steps"})
    assert len(api.get(jobs_url).json()["results"]) == 1
    assert len(outsider_api.get(other_url).json()["results"]) == 1


def test_detail_returns_the_job(api, jobs_url):
    job = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    body = api.get(f"{jobs_url}/{job['jobId']}").json()
    assert set(body) == JOB_KEYS and body["jobId"] == job["jobId"]
    assert api.get(f"{jobs_url}/{job['jobId']}/").status_code == 200


# Tenancy, auth, roles ------------------------------------------------------------------------
def test_another_companys_job_is_404_everywhere_and_says_nothing_about_it(api, outsider_api, jobs_url, company):
    job = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    base = f"{jobs_url}/{job['jobId']}"
    for method, url in [
        ("get", jobs_url), ("post", jobs_url), ("get", base), ("post", f"{base}/cancel"), ("post", f"{base}/retry"),
        ("get", f"{base}/logs"), ("post", f"{base}/logs"), ("get", f"{base}/artifacts/card.png"),
    ]:
        response = getattr(outsider_api, method)(url, {"jobType": "demo.steps"} if method == "post" else None, format="json")
        assert_problem(response, 404, "not_found")
        assert job["jobId"] not in response.content.decode()
        assert str(company.id) not in response.content.decode()
    assert ContentJob.objects.get(pk=job["jobId"]).status == "queued"


@pytest.mark.parametrize("path", ["not-a-uuid/content-jobs", "{company}/content-jobs/not-a-uuid",
                                  "{company}/content-jobs/00000000-0000-0000-0000-000000000000"])
def test_bad_or_unknown_ids_in_the_path_are_404_json(api, company, path):
    response = api.get("/api/companies/" + path.format(company=company.id))
    assert_problem(response, 404, "not_found")


def test_without_credentials_every_endpoint_is_401_json(client, jobs_url, api):
    job = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    base = f"{jobs_url}/{job['jobId']}"
    for method, url in [("get", jobs_url), ("post", jobs_url), ("get", base), ("post", f"{base}/cancel"),
                        ("post", f"{base}/retry"), ("get", f"{base}/logs"), ("post", f"{base}/logs"),
                        ("get", f"{base}/artifacts/x")]:
        response = getattr(client, method)(url)
        assert_problem(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"].startswith("Token")


def test_a_wrong_token_is_401(client, jobs_url):
    response = client.get(jobs_url, HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_problem(response, 401, "authentication_failed")


def test_the_stream_token_is_not_accepted_by_the_api(client, api, jobs_url):
    job = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    token = job["eventsUrl"].split("token=")[1]
    assert_problem(client.get(f"{jobs_url}/{job['jobId']}?token={token}"), 401)


def test_session_auth_reads_and_writes_with_csrf(member, jobs_url):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.login(username="alice", password="pw-alice")
    assert client.get(jobs_url).status_code == 200
    assert_problem(client.post(jobs_url, {"jobType": "demo.steps"}, format="json"), 403)  # no CSRF token
    assert ContentJob.objects.count() == 0


def test_a_viewer_reads_but_cannot_write(api, viewer_api, jobs_url):
    job = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    base = f"{jobs_url}/{job['jobId']}"
    assert viewer_api.get(jobs_url).status_code == 200
    assert viewer_api.get(base).status_code == 200
    assert viewer_api.get(f"{base}/logs").status_code == 200
    for url, body in [(jobs_url, {"jobType": "demo.steps"}), (f"{base}/cancel", None), (f"{base}/retry", None),
                      (f"{base}/logs", {"event_message": "hi"})]:
        assert_problem(viewer_api.post(url, body, format="json"), 403, "permission_denied")
    assert ContentJob.objects.count() == 1
    assert ContentJob.objects.get().status == "queued"


# Cancel and retry ----------------------------------------------------------------------------
def test_cancel_of_a_queued_job_cancels_it_at_once(api, jobs_url):
    job = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    response = api.post(f"{jobs_url}/{job['jobId']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"


def test_cancel_of_a_running_job_asks_it_to_stop(api, jobs_url):
    job = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    services.job_start(job_id=job["jobId"])
    body = api.post(f"{jobs_url}/{job['jobId']}/cancel").json()
    assert body["status"] == "running" and body["cancelRequested"] is True


def test_cancel_of_a_finished_job_is_409(api, jobs_url):
    job = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    api.post(f"{jobs_url}/{job['jobId']}/cancel")
    assert_problem(api.post(f"{jobs_url}/{job['jobId']}/cancel"), 409, "invalid_transition")


def test_retry_queues_a_failed_or_cancelled_job_and_refuses_others(api, jobs_url):
    failed = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    started = services.job_start(job_id=failed["jobId"])
    services.job_fail(job=started, code="x", message="y")
    body = api.post(f"{jobs_url}/{failed['jobId']}/retry").json()
    assert body["status"] == "queued" and body["error"] is None
    cancelled = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    api.post(f"{jobs_url}/{cancelled['jobId']}/cancel")
    assert api.post(f"{jobs_url}/{cancelled['jobId']}/retry").status_code == 202
    queued = submit(api, jobs_url, {"jobType": "demo.steps"}).json()
    assert_problem(api.post(f"{jobs_url}/{queued['jobId']}/retry"), 409, "invalid_transition")
    services.job_start(job_id=queued["jobId"])
    assert_problem(api.post(f"{jobs_url}/{queued['jobId']}/retry"), 409)


# Artifacts -----------------------------------------------------------------------------------
def test_an_artifact_downloads_with_its_bytes_and_type(api, outsider_api, jobs_url, other_company):
    job = submit(api, jobs_url, {"jobType": "render.card", "params": {"title": "x"}}).json()
    running = services.job_start(job_id=job["jobId"])
    ctx = JobContext(running)
    ctx.save_artifact("card.png", b"\x89PNG fake bytes", "image/png")
    services.job_complete(job=running, result={"artifacts": ctx.artifacts})
    url = f"{jobs_url}/{job['jobId']}/artifacts/card.png"
    assert api.get(f"{jobs_url}/{job['jobId']}").json()["result"]["artifacts"][0]["url"] == url
    response = api.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == b"\x89PNG fake bytes"
    assert_problem(api.get(f"{jobs_url}/{job['jobId']}/artifacts/other.png"), 404)


def test_healthz_answers_without_auth(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
