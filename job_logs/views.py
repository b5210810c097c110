"""Log history and append API, under the job's URL and with the job API's tenancy."""
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from content_jobs.schema import LogLinesSchema, LogPageSchema, problems
from content_jobs.tenancy import CompanyScoped
from drf_spectacular.utils import extend_schema

from . import selectors, services
from .serializers import LogHistoryQuery, LogLineInput, log_payloads


class JobLogsView(CompanyScoped, APIView):
    """A job's log lines: the five keys of the log stream's payload."""

    @extend_schema(
        summary="Log history, oldest first",
        parameters=[LogHistoryQuery],
        responses={200: LogPageSchema, **problems(400, 401, 404)},
        tags=["logs"],
    )
    def get(self, request, company_id, job_id):
        job = self.get_job(job_id)
        query = LogHistoryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        lines = selectors.log_lines_after(job_id=job.pk, after=after, limit=limit + 1)
        more = len(lines) > limit
        lines = lines[:limit]
        next_url = None
        if more:
            next_url = request.build_absolute_uri(
                f"{request.path}?after={lines[-1].event_id}&limit={limit}"
            )
        return Response({"results": log_payloads(lines, job.pk), "next": next_url})

    @extend_schema(
        summary="Append log lines from outside the runner (one object or a list)",
        request=LogLineInput,
        responses={201: LogLinesSchema, **problems(400, 401, 403, 404, 413, 415)},
        tags=["logs"],
    )
    def post(self, request, company_id, job_id):
        job = self.get_job(job_id)
        many = isinstance(request.data, list)
        if many and not request.data:
            raise ValidationError({"non_field_errors": ["Send at least one log line."]})
        body = LogLineInput(data=request.data, many=many)
        body.is_valid(raise_exception=True)
        entries = body.validated_data if many else [body.validated_data]
        lines = services.log_append_many(
            job_id=job.pk, entries=[(e["event_message"], e["severity"]) for e in entries]
        )
        return Response({"results": log_payloads(lines, job.pk)}, status=status.HTTP_201_CREATED)
