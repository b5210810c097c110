"""Django admin for operators: jobs (read-only, with the latest log lines and a live tail),
companies and memberships. Cancel and retry go through the services, like every write."""
import uuid

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from . import registry, services
from .errors import InvalidTransition
from .models import Company, ContentJob, Membership
from .representation import job_representation

LATEST_LINES = 50


class LinesGoWithTheirJob:
    """A deletion that takes jobs takes their log lines too. The lines' admin lets nobody
    delete a line on its own (LogLineAdmin), and Django's deletion page would read that as a
    permission the operator lacks, refusing even a superuser: here it asks no permission for
    the lines beyond the one to delete their jobs."""

    def get_deleted_objects(self, objs, request):
        from job_logs.models import LogLine

        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, perms_needed - {LogLine._meta.verbose_name}, protected


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Company)
class CompanyAdmin(LinesGoWithTheirJob, admin.ModelAdmin):
    list_display = ["slug", "name", "id", "created_at"]
    search_fields = ["slug", "name", "id"]
    readonly_fields = ["id", "created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "company", "role", "created_at"]
    list_filter = ["role", "company"]
    search_fields = ["user__username", "company__slug"]
    autocomplete_fields = ["user", "company"]


class JobTypeFilter(admin.SimpleListFilter):
    """The job types the registry knows. Django's filter of a plain field reads every distinct
    value of the jobs table for each page (85 ms with a million jobs on PostgreSQL here)."""

    title = "job type"
    parameter_name = "job_type"

    def lookups(self, request, model_admin):
        return [(job_type.name, job_type.name) for job_type in registry.all_types()]

    def queryset(self, request, queryset):
        return queryset.filter(job_type=self.value()) if self.value() else queryset


@admin.register(ContentJob)
class ContentJobAdmin(LinesGoWithTheirJob, admin.ModelAdmin):
    change_form_template = "admin/content_jobs/contentjob/change_form.html"
    list_display = ["short_id", "company", "job_type", "status", "progress_pct", "created_at", "duration"]
    # No filter or header reads the whole jobs table for a page: the job types come from the
    # registry, dates are filtered by the date filter's fixed ranges (a date hierarchy reads
    # every job's month: 0.1 to 0.37 s a page with a million jobs here), and a filtered page
    # counts only its own rows (not the table's total beside them).
    list_filter = ["status", JobTypeFilter, "company", ("created_at", admin.DateFieldListFilter)]
    show_full_result_count = False
    search_fields = ["source_task_id"]
    list_select_related = ["company"]
    ordering = ["-created_at"]
    actions = ["cancel_jobs", "retry_jobs"]
    fields = [
        "id", "company", "job_type", "status", "progress", "stage", "attempt", "cancel_requested",
        "params", "result", "error", "source_task_id", "idempotency_key", "created_by", "worker_id",
        "lease_expires_at", "created_at", "updated_at", "started_at", "finished_at", "latest_log_lines",
    ]
    readonly_fields = fields

    @admin.display(description="job", ordering="id")
    def short_id(self, job: ContentJob) -> str:
        return str(job.pk)[:8]

    @admin.display(description="progress", ordering="progress")
    def progress_pct(self, job: ContentJob) -> str:
        return f"{job.progress:.0f}%"

    @admin.display(description="duration")
    def duration(self, job: ContentJob) -> str:
        seconds = job.duration_seconds
        return "" if seconds is None else f"{seconds:.1f} s"

    @admin.display(description=f"latest log lines (last {LATEST_LINES})")
    def latest_log_lines(self, job: ContentJob) -> str:
        from job_logs.selectors import latest_log_lines

        lines = latest_log_lines(job_id=job.pk, limit=LATEST_LINES)
        if not lines:
            return "no lines"
        rows = format_html_join(
            "", '<tr class="sev-{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            ((l.severity, l.event_id, l.created_at.strftime("%H:%M:%S"), l.severity, l.message) for l in lines),
        )
        everything = reverse("admin:job_logs_logline_changelist") + f"?job__id__exact={job.pk}"
        return format_html(
            '<table class="nexus-log"><thead><tr><th>#</th><th>time</th><th>severity</th><th>message</th></tr>'
            '</thead><tbody>{}</tbody></table><p><a href="{}">All log lines of this job</a></p>',
            rows, everything,
        )

    def get_search_results(self, request, queryset, search_term):
        # `queryset` already carries the list filters: the id match is OR-ed within them.
        filtered = queryset
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lower()
        try:
            # A whole job id, with or without hyphens.
            queryset = queryset | filtered.filter(pk=uuid.UUID(term))
        except ValueError:
            if len(term) >= 4 and all(c in "0123456789abcdef-" for c in term):
                # The start of a job id, as the list shows it.
                queryset = queryset | filtered.filter(id__startswith=term)
        return queryset, may_have_duplicates

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # read-only: operators view; cancel and retry are actions

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def delete_model(self, request, obj) -> None:
        # Through the service: the metrics keep counting the job's run (content_jobs.job_totals).
        services.jobs_delete(ContentJob.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        services.jobs_delete(queryset)

    def has_operate_permission(self, request) -> bool:
        """Cancel and retry: for staff who may change jobs (the form itself stays read-only)."""
        return request.user.has_perm("content_jobs.change_contentjob")

    def render_change_form(self, request, context, *args, **kwargs):
        job = kwargs.get("obj")
        if job is not None:
            representation = job_representation(job)
            context.update(events_url=representation["eventsUrl"], logs_url=representation["logsUrl"])
        return super().render_change_form(request, context, *args, **kwargs)

    def _apply(self, request, queryset, service, verb: str) -> None:
        done, skipped = 0, []
        for job in queryset:
            try:
                service(job=job, by=request.user)
                done += 1
            except InvalidTransition as exc:
                skipped.append(f"{str(job.pk)[:8]} ({exc.message})")
        if done:
            self.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {len(skipped)}: " + "; ".join(skipped), messages.WARNING)

    @admin.action(description="Cancel selected jobs", permissions=["operate"])
    def cancel_jobs(self, request, queryset):
        self._apply(request, queryset, services.job_cancel, "Cancelled (or asked to stop)")

    @admin.action(description="Retry selected jobs", permissions=["operate"])
    def retry_jobs(self, request, queryset):
        self._apply(request, queryset, services.job_retry, "Queued again")
