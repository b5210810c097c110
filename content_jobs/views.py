"""The job API: thin views that validate input, call one service or selector, and answer."""
from django.db import connections
from django.http import FileResponse, Http404, JsonResponse
from django.core.files.storage import default_storage
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view

from . import services
from .schema import IDEMPOTENCY_KEY, JobPageSchema, JobSchema, problems
from .models import ContentJob
from .representation import job_representation
from .runner import artifact_storage_name
from .serializers import IdempotencyKeyInput, JobListFilters, JobSubmitInput
from .tenancy import CompanyScoped


JOB_TAGS = ["content jobs"]


@extend_schema_view(
    list=extend_schema(
        summary="List the company's jobs, newest first",
        parameters=[JobListFilters, OpenApiParameter("cursor", str), OpenApiParameter("pageSize", int)],
        responses={200: JobPageSchema, **problems(400, 401, 404)}, tags=JOB_TAGS,
    ),
    create=extend_schema(
        summary="Submit a job (202: stored and queued)",
        request=JobSubmitInput, parameters=[IDEMPOTENCY_KEY],
        responses={202: JobSchema, **problems(400, 401, 403, 404, 413, 415, 422)}, tags=JOB_TAGS,
    ),
    retrieve=extend_schema(summary="A job", responses={200: JobSchema, **problems(401, 404)}, tags=JOB_TAGS),
    cancel=extend_schema(
        summary="Cancel: a queued job at once, a running one at its next checkpoint",
        request=None, responses={202: JobSchema, **problems(401, 403, 404, 409)}, tags=JOB_TAGS,
    ),
    retry=extend_schema(
        summary="Run a failed or cancelled job again (attempt + 1)",
        request=None, responses={202: JobSchema, **problems(401, 403, 404, 409)}, tags=JOB_TAGS,
    ),
    artifact=extend_schema(
        summary="Download an artifact of the job",
        responses={(200, "application/octet-stream"): OpenApiResponse(description="The artifact's bytes, with its content type"),
                   **problems(401, 404)},
        tags=JOB_TAGS,
    ),
)
class ContentJobViewSet(CompanyScoped, GenericViewSet):
    """Content jobs of one company. Members read and write; viewers read; others get 404."""

    lookup_url_kwarg = "job_id"

    def get_queryset(self):
        return ContentJob.objects.for_company(self.company)

    def get_object(self) -> ContentJob:
        return self.get_job(self.kwargs["job_id"])

    def get_serializer_class(self):
        """What a POST to this route takes, for DRF's answer to OPTIONS, which describes it to a
        member (the views validate with their own inputs): a submission's body; nothing for a
        cancel or a retry."""
        request = getattr(self, "request", None)
        method = request.method.lower() if request is not None else ""
        return JobSubmitInput if getattr(self, "action_map", {}).get(method) == "create" else serializers.Serializer

    def list(self, request, company_id):
        filters = JobListFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = self.get_queryset()
        if "status" in filters.validated_data:
            queryset = queryset.filter(status=filters.validated_data["status"])
        if "jobType" in filters.validated_data:
            queryset = queryset.filter(job_type=filters.validated_data["jobType"])
        if "sourceTaskId" in filters.validated_data:
            queryset = queryset.filter(source_task_id=filters.validated_data["sourceTaskId"])
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response([job_representation(job) for job in page])

    def create(self, request, company_id):
        body = JobSubmitInput(data=request.data)
        body.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            header = IdempotencyKeyInput(data={"key": key})
            if not header.is_valid():
                raise ValidationError({"Idempotency-Key": header.errors["key"]})
        job, created = services.job_submit(
            company=self.company,
            job_type=body.validated_data["jobType"],
            params=body.validated_data.get("params"),
            source_task_id=body.validated_data.get("sourceTaskId"),
            idempotency_key=key,
            by=request.user,
        )
        response = Response(job_representation(job), status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/companies/{job.company_id}/content-jobs/{job.pk}"
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response

    def retrieve(self, request, company_id, job_id):
        return Response(job_representation(self.get_object()))

    @action(detail=True, methods=["post"])
    def cancel(self, request, company_id, job_id):
        job = services.job_cancel(job=self.get_object(), by=request.user)
        return Response(job_representation(job), status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"])
    def retry(self, request, company_id, job_id):
        job = services.job_retry(job=self.get_object(), by=request.user)
        return Response(job_representation(job), status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["get"], url_path=r"artifacts/(?P<name>[^/]+)")
    def artifact(self, request, company_id, job_id, name):
        job = self.get_object()
        entries = (job.result or {}).get("artifacts", []) if isinstance(job.result, dict) else []
        entry = next((a for a in entries if a.get("name") == name), None)
        storage_name = artifact_storage_name(job.pk, name)
        if entry is None or not default_storage.exists(storage_name):
            raise Http404
        response = FileResponse(default_storage.open(storage_name, "rb"), content_type=entry["contentType"])
        response["Content-Length"] = str(entry["size"])
        response["Content-Disposition"] = f'inline; filename="{name}"'
        response["X-Content-Type-Options"] = "nosniff"
        if entry["contentType"].startswith("text/html"):
            # A rendered document is shown, never run: no script may execute in our origin.
            response["Content-Security-Policy"] = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src * data:"
        return response


@extend_schema(exclude=True)
def healthz(request):
    """Unauthenticated liveness: 200 when the database (and channel layer, if any) answer."""
    failing = []
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any failure of the database is the answer here
        failing.append({"part": "database", "message": str(exc)[:200]})
    from . import health

    failing.extend(health.channel_layer_problems())
    if failing:
        return JsonResponse({"status": "unavailable", "failing": failing}, status=503)
    return JsonResponse({"status": "ok"})
