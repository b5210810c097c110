"""One error shape for every 4xx/5xx answer: RFC 9457 problem details.

    {"type": "urn:nexus:problem:<code>", "title": "...", "status": 400, "code": "<code>",
     "detail": "...", "errors": [{"field": "params.steps", "code": "max_value", "message": "..."}]}

`code` is stable and machine-readable; `errors` names each offending field (dotted path; absent
when no field is to blame).
"""
import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions

from .errors import DomainError
from .parsers import PayloadTooLarge

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: "Invalid request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(status_code: int, code: str, detail: str, errors: list[dict] | None = None, **extra) -> dict:
    body = {
        "type": f"urn:nexus:problem:{code}",
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "code": code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def problem_response(status_code: int, code: str, detail: str, errors: list[dict] | None = None, **extra):
    response = JsonResponse(problem(status_code, code, detail, errors, **extra), status=status_code)
    response["Content-Type"] = PROBLEM_CONTENT_TYPE
    return response


def flatten_errors(detail, prefix: str = "") -> list[dict]:
    """DRF's nested error details as a flat list of {field, code, message}."""
    out: list[dict] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                field = prefix
            elif isinstance(key, int):  # an item of a list body
                field = f"{prefix}[{key}]"
            else:
                field = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_errors(value, field))
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)):
                out.extend(flatten_errors(value, f"{prefix}[{index}]" if prefix else f"[{index}]"))
            else:
                out.extend(flatten_errors(value, prefix))
    else:
        entry = {"code": getattr(detail, "code", "invalid"), "message": str(detail)}
        if prefix:
            entry = {"field": prefix, **entry}
        out.append(entry)
    return out


def _code_for(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    if isinstance(exc, exceptions.ValidationError):
        return "validation_error"
    return exc.default_code


def exception_handler(exc, context):
    """DRF's exception handler, answering in the problem-details shape."""
    from rest_framework.views import set_rollback  # not at import time: DRF's views import our parser

    if isinstance(exc, DomainError):
        set_rollback()
        errors = None
        if exc.errors:
            errors = flatten_errors(exc.errors, exc.field or "")
        elif exc.field:
            errors = [{"field": exc.field, "code": exc.code, "message": exc.message}]
        return problem_response(exc.status_code, exc.code, exc.message, errors)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    if not isinstance(exc, exceptions.APIException):
        return None
    set_rollback()
    if isinstance(exc, exceptions.ValidationError):
        detail = "The request has invalid fields."
        errors = flatten_errors(exc.detail)
    else:
        detail = str(exc.detail) if not isinstance(exc.detail, (dict, list)) else exc.default_detail
        errors = None
    response = problem_response(exc.status_code, _code_for(exc), str(detail), errors)
    if getattr(exc, "auth_header", None):
        response["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        response["Retry-After"] = str(int(exc.wait))
    return response


def json_404(request, exception=None):
    return problem_response(404, "not_found", "Not found.")


def json_500(request):
    return problem_response(500, "server_error", "The server failed to answer this request.")


def json_400(request, exception=None):
    return problem_response(400, "bad_request", "Bad request.")


def json_403(request, exception=None):
    return problem_response(403, "permission_denied", "You do not have permission to do this.")
