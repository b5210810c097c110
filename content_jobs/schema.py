"""OpenAPI: shapes that drf-spectacular cannot see from the views, and the three SSE endpoints.

The job and log payloads are built by plain functions (representation.job_representation,
job_logs.serializers.log_payload) for speed; the serializers here describe them, and a test
checks that what the API sends has exactly the documented keys.
"""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_serializer
from rest_framework import serializers

from .models import ContentJob


@extend_schema_serializer(component_name="ProblemError")
class ErrorItemSchema(serializers.Serializer):
    field = serializers.CharField(required=False, help_text="Dotted path of the offending field, e.g. params.steps")
    code = serializers.CharField()
    message = serializers.CharField()


@extend_schema_serializer(component_name="Problem")
class ProblemSchema(serializers.Serializer):
    """RFC 9457 problem details: the body of every 4xx and 5xx answer."""

    type = serializers.CharField(help_text="urn:nexus:problem:<code>")
    title = serializers.CharField()
    status = serializers.IntegerField()
    code = serializers.CharField(help_text="Stable, machine-readable error code")
    detail = serializers.CharField()
    errors = ErrorItemSchema(many=True, required=False)


@extend_schema_serializer(component_name="JobError")
class JobErrorSchema(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


@extend_schema_serializer(component_name="Artifact")
class ArtifactSchema(serializers.Serializer):
    name = serializers.CharField()
    contentType = serializers.CharField()
    size = serializers.IntegerField()
    url = serializers.CharField()


@extend_schema_serializer(component_name="Job")
class JobSchema(serializers.Serializer):
    jobId = serializers.UUIDField()
    companyId = serializers.UUIDField()
    jobType = serializers.CharField()
    status = serializers.ChoiceField(choices=ContentJob.Status.choices)
    progress = serializers.FloatField(min_value=0, max_value=100)
    stage = serializers.CharField(allow_blank=True)
    params = serializers.DictField()
    result = serializers.DictField(allow_null=True, help_text="Set when done; `artifacts` lists stored files")
    error = JobErrorSchema(allow_null=True)
    sourceTaskId = serializers.CharField(allow_null=True)
    attempt = serializers.IntegerField()
    cancelRequested = serializers.BooleanField()
    createdAt = serializers.DateTimeField()
    startedAt = serializers.DateTimeField(allow_null=True)
    finishedAt = serializers.DateTimeField(allow_null=True)
    eventsUrl = serializers.CharField(help_text="Job event stream, with a stream token")
    logsUrl = serializers.CharField(help_text="Log stream, with a stream token")


@extend_schema_serializer(component_name="JobPage")
class JobPageSchema(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = JobSchema(many=True)


@extend_schema_serializer(component_name="LogLine")
class LogLineSchema(serializers.Serializer):
    event_id = serializers.IntegerField()
    task_id = serializers.UUIDField()
    event_message = serializers.CharField()
    severity = serializers.ChoiceField(choices=["info", "warning", "error", "success"])
    event_time = serializers.FloatField(help_text="Unix time in seconds")


@extend_schema_serializer(component_name="LogPage")
class LogPageSchema(serializers.Serializer):
    results = LogLineSchema(many=True)
    next = serializers.URLField(allow_null=True)


@extend_schema_serializer(component_name="LogLines")
class LogLinesSchema(serializers.Serializer):
    results = LogLineSchema(many=True)


def problems(*statuses: int) -> dict:
    return {status: OpenApiResponse(ProblemSchema, description="Problem details") for status in statuses}


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="At most 255 characters. The same key with the same body within 24 hours returns the first job.",
)


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "content_jobs.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` (python manage.py issue_token <username>)",
        }


# The SSE endpoints are plain async Django views; this hook adds them to the schema. -----------
JOB_EVENT_NAMES = [
    "content_job.status", "content_job.running", "content_job.progress",
    "content_job.done", "content_job.failed", "content_job.cancelled",
]


def _sse_operation(operation_id, summary, description, parameters, payload_ref, events, stream_token, tags):
    security = [{"tokenAuth": []}, {"cookieAuth": []}]
    if stream_token:
        security.append({"streamToken": []})
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": tags,
        "parameters": parameters + [
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "Resume after this event id: exactly the missed events follow."},
        ],
        "security": security,
        "responses": {
            "200": {
                "description": "An SSE stream. Events: " + ", ".join(f"`{e}`" for e in events)
                + ". Each event's `data` is one JSON document of the schema below; every event has an `id`.",
                "content": {"text/event-stream": {"schema": {
                    "type": "string",
                    "description": "Server-Sent Events; the data of each event:",
                    "x-sse-events": events,
                    "x-sse-data": {"$ref": payload_ref},
                }}},
                "headers": {
                    "Cache-Control": {"schema": {"type": "string", "enum": ["no-cache"]}},
                    "X-Accel-Buffering": {"schema": {"type": "string", "enum": ["no"]}},
                },
            },
            "204": {"description": "The client already has the end of this stream: nothing more will come."},
            **{
                str(status): {"description": text, "content": {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"}}}}
                for status, text in (
                    (400, "Malformed Last-Event-ID"), (401, "No, forged or expired credentials"),
                    (403, "A stream token of another job"), (404, "Not found or not this company's"),
                )
            },
        },
    }


def add_sse_endpoints(result, generator, request, public):
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemes = components.setdefault("securitySchemes", {})
    schemes.setdefault("cookieAuth", {"type": "apiKey", "in": "cookie", "name": "sessionid"})
    schemes["streamToken"] = {
        "type": "apiKey", "in": "query", "name": "token",
        "description": "A job's stream token (from eventsUrl/logsUrl); accepted on that job's two streams only.",
    }
    schemas.setdefault("LogEvent", {
        "type": "object", "required": ["log"],
        "properties": {"log": {"$ref": "#/components/schemas/LogLine"}},
    })
    uuid = {"type": "string", "format": "uuid"}
    company = {"name": "company_id", "in": "path", "required": True, "schema": uuid}
    job = {"name": "job_id", "in": "path", "required": True, "schema": uuid}
    paths = result.setdefault("paths", {})
    # Path ids are UUIDs (a malformed one is a 404 like an unknown one).
    for item in paths.values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["name"] in ("company_id", "job_id"):
                    parameter["schema"] = dict(uuid)
    paths["/api/companies/{company_id}/content-jobs/{job_id}/events/"] = {"get": _sse_operation(
        "content_job_events", "Job event stream",
        "`content_job.status` first, at once; then running/progress events; one terminal event; then the end.",
        [company, job], "#/components/schemas/Job", JOB_EVENT_NAMES, True, ["streams"],
    )}
    paths["/api/companies/{company_id}/events/"] = {"get": _sse_operation(
        "company_events", "Company event stream",
        "Every job event of the company (no initial status event); never ends by itself.",
        [company], "#/components/schemas/Job", JOB_EVENT_NAMES[1:], False, ["streams"],
    )}
    paths["/jobs/{job_id}/logs/"] = {"get": _sse_operation(
        "job_log_stream", "Log stream",
        "Unnamed events (EventSource.onmessage): the stored lines, then live ones; ends after the job is over.",
        [job], "#/components/schemas/LogEvent", ["message (unnamed)"], True, ["streams"],
    )}
    return result
