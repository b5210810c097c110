from rest_framework.pagination import CursorPagination


class JobPagination(CursorPagination):
    """Newest first; a cursor stays stable while new jobs arrive."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500
