from django.contrib import admin
from django.urls import include, path, re_path
from rest_framework.permissions import AllowAny
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from content_jobs import streams as job_streams
from content_jobs.metrics import metrics_view
from content_jobs import views as job_views
from job_logs import streams as log_streams
from job_logs import views as log_views

S = "/?"  # every path works with and without a trailing slash
JOB = r"^api/companies/(?P<company_id>[^/]+)/content-jobs/(?P<job_id>[^/]+)"

jobs = job_views.ContentJobViewSet

urlpatterns = [
    path("admin/", admin.site.urls),
    path("console/", include("content_jobs.console")),
    re_path(rf"^healthz{S}$", job_views.healthz, name="healthz"),
    path("internal/stats", job_streams.stream_stats, name="stream-stats"),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny], authentication_classes=[]), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[AllowAny], authentication_classes=[]), name="swagger-ui"),
    re_path(
        rf"^api/companies/(?P<company_id>[^/]+)/content-jobs{S}$",
        jobs.as_view({"get": "list", "post": "create"}),
        name="job-list",
    ),
    re_path(rf"{JOB}{S}$", jobs.as_view({"get": "retrieve"}), name="job-detail"),
    re_path(rf"{JOB}/cancel{S}$", jobs.as_view({"post": "cancel"}), name="job-cancel"),
    re_path(rf"{JOB}/retry{S}$", jobs.as_view({"post": "retry"}), name="job-retry"),
    re_path(rf"{JOB}/artifacts/(?P<name>[^/]+){S}$", jobs.as_view({"get": "artifact"}), name="job-artifact"),
    re_path(rf"{JOB}/logs{S}$", log_views.JobLogsView.as_view(), name="job-logs"),
    re_path(rf"{JOB}/events{S}$", job_streams.job_events, name="job-events"),
    re_path(rf"^api/companies/(?P<company_id>[^/]+)/events{S}$", job_streams.company_events, name="company-events"),
    re_path(rf"^jobs/(?P<job_id>[^/]+)/logs{S}$", log_streams.log_stream, name="job-log-stream"),
]

handler400 = "content_jobs.api_errors.json_400"
handler403 = "content_jobs.api_errors.json_403"
handler404 = "content_jobs.api_errors.json_404"
handler500 = "content_jobs.api_errors.json_500"
