"""Django admin for operators: a job's log lines, read-only."""
from django.contrib import admin

from .models import LogLine


@admin.register(LogLine)
class LogLineAdmin(admin.ModelAdmin):
    list_display = ["event_id", "job_short_id", "severity", "created_at", "short_message"]
    list_filter = ["severity"]
    search_fields = ["message", "job__id"]
    list_select_related = ["job"]
    readonly_fields = ["job", "event_id", "severity", "message", "created_at"]
    ordering = ["-id"]
    show_full_result_count = False

    @admin.display(description="job")
    def job_short_id(self, line: LogLine) -> str:
        return str(line.job_id)[:8]

    @admin.display(description="message")
    def short_message(self, line: LogLine) -> str:
        return line.message if len(line.message) <= 120 else line.message[:117] + "…"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # read-only: operators view; cancel and retry are actions

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # lines go with their job (job deletion, prune_jobs), never one by one
