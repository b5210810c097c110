from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination


class JobPagination(CursorPagination):
    """Newest first; a cursor stays stable while new jobs arrive.

    A cursor this API did not hand out is a 400 naming the `cursor` parameter, as any other bad
    query parameter (DRF answers 404 for one it cannot decode, and lets one whose position is
    not a time reach the database, a 500)."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:  # DRF's "Invalid cursor"
            raise _invalid() from exc
        if cursor is not None and cursor.position is not None:
            try:
                valid = parse_datetime(cursor.position) is not None
            except ValueError:  # the shape of a time, and no such time
                valid = False
            if not valid:
                raise _invalid()
        return cursor


def _invalid() -> ValidationError:
    return ValidationError({"cursor": ["Invalid cursor: use the next or previous link of a page."]},
                           code="invalid_cursor")
