"""The OpenAPI schema: valid OpenAPI 3, every API URL in it, the SSE endpoints described."""
import re

import pytest
from django.urls import get_resolver
from openapi_spec_validator import validate

from content_jobs.representation import job_representation
from content_jobs import services


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_schema_is_valid_openapi_3(schema):
    validate(schema)  # raises on any violation
    assert schema["openapi"].startswith("3.")


def _api_patterns() -> list[str]:
    """The URL regexes of the API (everything but admin, schema/docs, health and internals)."""
    out = []
    for pattern in get_resolver().url_patterns:
        regex = getattr(pattern.pattern, "_regex", None) or str(pattern.pattern)
        if regex.startswith(("^api/", "^jobs/")) and "schema" not in regex and "docs" not in regex:
            out.append(regex)
    return out


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path).rstrip("/")


def test_every_api_url_is_in_the_schema(schema):
    documented = {_normalise(p) for p in schema["paths"]}
    patterns = _api_patterns()
    assert len(patterns) >= 9
    for regex in patterns:
        # ^api/companies/(?P<company_id>[^/]+)/content-jobs/?$ -> /api/companies/{}/content-jobs
        path = "/" + re.sub(r"\(\?P<[^>]+>[^)]+\)", "{}", regex).lstrip("^").replace("/?$", "").rstrip("$")
        assert path in documented, f"{path} is not in the schema"


def test_both_auth_schemes_and_the_stream_token_are_declared(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["tokenAuth"] == {  # and where a key comes from
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "`Token <key>` (python manage.py issue_token <username>)",
    }
    assert schemes["cookieAuth"]["in"] == "cookie"
    assert schemes["streamToken"]["in"] == "query"


def test_sse_endpoints_answer_text_event_stream_and_name_their_events(schema):
    streams = {
        "/api/companies/{company_id}/content-jobs/{job_id}/events/": ("content_job.done", "Job"),
        "/api/companies/{company_id}/events/": ("content_job.progress", "Job"),
        "/jobs/{job_id}/logs/": ("message (unnamed)", "LogEvent"),
    }
    for path, (event, payload) in streams.items():
        ok = schema["paths"][path]["get"]["responses"]["200"]
        body = ok["content"]["text/event-stream"]["schema"]
        assert event in body["x-sse-events"]
        assert body["x-sse-data"]["$ref"] == f"#/components/schemas/{payload}"
        assert "204" in schema["paths"][path]["get"]["responses"]


def test_error_bodies_are_documented_as_problem_details(schema):
    create = schema["paths"]["/api/companies/{company_id}/content-jobs/"]["post"]["responses"]
    for status in ("400", "401", "403", "404", "413", "422"):
        assert create[status]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Problem"


@pytest.mark.django_db
def test_the_documented_job_has_exactly_the_keys_the_api_sends(schema, company):
    job, _ = services.job_submit(company=company, job_type="demo.steps", params={})
    assert set(schema["components"]["schemas"]["Job"]["properties"]) == set(job_representation(job))


def test_swagger_ui_is_served_from_our_own_static_files(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    scripts = re.findall(r'src="([^"]+)"', html)
    assert scripts and all(src.startswith("/static/") for src in scripts), scripts
    assert "cdn" not in html.lower()
    bundle = client.get(scripts[0])
    assert bundle.status_code == 200
    assert b"SwaggerUIBundle" in b"".join(bundle.streaming_content)
