"""Log history and append over the API."""
import pytest

from content_jobs import services
from job_logs.models import LogLine
from job_logs.services import log_append_many

KEYS = {"event_id", "task_id", "event_message", "severity", "event_time"}


@pytest.fixture
def job(company):
    return services.job_submit(company=company, job_type="demo.steps", params={})[0]


@pytest.fixture
def logs_url(jobs_url, job):
    return f"{jobs_url}/{job.pk}/logs"


def test_history_is_oldest_first_with_the_five_keys_and_pages_after_an_id(api, job, logs_url):
    log_append_many(job_id=job.pk, entries=[(f"line {i}", "info") for i in range(1, 8)])
    body = api.get(logs_url).json()
    assert [l["event_id"] for l in body["results"]] == list(range(1, 8))
    assert all(set(l) == KEYS and l["task_id"] == str(job.pk) for l in body["results"])
    assert isinstance(body["results"][0]["event_time"], float)
    assert body["next"] is None
    assert [l["event_message"] for l in api.get(logs_url, {"after": 5}).json()["results"]] == ["line 6", "line 7"]
    seen, url = [], f"{logs_url}?limit=3"
    while url:
        page = api.get(url).json()
        seen += [l["event_id"] for l in page["results"]]
        url = page["next"]
    assert seen == list(range(1, 8))


@pytest.mark.parametrize("query", [{"after": -1}, {"after": "x"}, {"limit": 0}, {"limit": 100000}])
def test_bad_history_queries_are_400(api, logs_url, query):
    response = api.get(logs_url, query)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] in query


def test_append_one_line_or_a_list(api, job, logs_url):
    one = api.post(logs_url, {"event_message": "from CI", "severity": "warning"}, format="json")
    assert one.status_code == 201
    assert one.json()["results"][0]["event_id"] == 1 and one.json()["results"][0]["severity"] == "warning"
    many = api.post(logs_url, [{"event_message": "a", "severity": "info"}, {"event_message": "b", "severity": "success"}],
                    format="json")
    assert [l["event_id"] for l in many.json()["results"]] == [2, 3]
    assert list(LogLine.objects.filter(job=job).values_list("message", flat=True)) == ["from CI", "a", "b"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"event_message": "x", "severity": "fatal"}, "severity"),
        ({"severity": "info"}, "event_message"),
        ([], None),
        ([{"event_message": "ok"}, {"severity": "info"}], "[1].event_message"),
    ],
)
def test_bad_appends_are_400_and_store_nothing(api, logs_url, body, field):
    response = api.post(logs_url, body, format="json")
    assert response.status_code == 400
    if field:
        assert field in {e.get("field") for e in response.json()["errors"]}
    assert LogLine.objects.count() == 0


def test_a_message_over_64_kib_is_400_and_stores_nothing(api, logs_url):
    response = api.post(logs_url, {"event_message": "x" * (64 * 1024 + 1)}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "message_too_long"
    assert response.json()["errors"][0]["field"] == "event_message"
    assert LogLine.objects.count() == 0


def test_viewers_cannot_append_and_outsiders_see_404(viewer_api, outsider_api, logs_url):
    assert viewer_api.post(logs_url, {"event_message": "x"}, format="json").status_code == 403
    assert outsider_api.post(logs_url, {"event_message": "x"}, format="json").status_code == 404
    assert outsider_api.get(logs_url).status_code == 404
    assert LogLine.objects.count() == 0
