"""Django admin for operators: what a superuser (and a non-staff user) sees and can do."""
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from content_jobs import services
from content_jobs.models import ContentJob, JobEvent
from job_logs.models import LogLine
from job_logs.services import log_append_many
from tests.conftest import make_user

JOBS = "/admin/content_jobs/contentjob/"
LINES = "/admin/job_logs/logline/"


@pytest.fixture
def superuser_client(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    client.force_login(user)
    return client


@pytest.fixture
def jobs(company, other_company):
    """A queued job of `company`, a done one of `other_company`, a failed and a running one of `company`."""
    queued, _ = services.job_submit(company=company, job_type="demo.steps", params={}, source_task_id="task-777")
    done, _ = services.job_submit(company=other_company, job_type="render.card", params={"title": "x"})
    services.job_start(job_id=done.pk)
    services.job_complete(job=done, result={})
    failed, _ = services.job_submit(company=company, job_type="demo.steps", params={})
    services.job_start(job_id=failed.pk)
    services.job_fail(job=failed, code="boom", message="it broke")
    running, _ = services.job_submit(company=company, job_type="demo.steps", params={"steps": 10})
    running = services.job_start(job_id=running.pk)
    services.job_report_progress(job=running, progress=42, stage="step 4/10")
    return {name: ContentJob.objects.get(pk=job.pk) for name, job in
            {"queued": queued, "done": done, "failed": failed, "running": running}.items()}


def short(job) -> str:
    return str(job.pk)[:8]


def shown(html: str) -> set[str]:
    """The short ids of the changelist's rows (each row links to its job's change page)."""
    return {m[:8] for m in re.findall(r'href="/admin/content_jobs/contentjob/([0-9a-f-]{36})/change/', html)}


def act(client, action: str, *jobs):
    return client.post(JOBS, {"action": action, "_selected_action": [str(j.pk) for j in jobs]}, follow=True)


# Changelist


def test_changelist_shows_every_job_with_short_id_company_type_progress_and_duration(superuser_client, jobs):
    response = superuser_client.get(JOBS)
    assert response.status_code == 200
    html = response.content.decode()
    assert shown(html) == {short(job) for job in jobs.values()}
    for job in jobs.values():
        assert f">{short(job)}<" in html
    assert "acme" in html and "globex" in html and "render.card" in html
    assert "42%" in html and "100%" in html  # running, done
    done = jobs["done"]
    assert f"{done.duration_seconds:.1f} s" in html


def test_duration_is_blank_before_a_job_starts_and_counts_to_now_while_it_runs(jobs):
    from content_jobs.admin import ContentJobAdmin
    from django.contrib.admin.sites import site

    admin = ContentJobAdmin(ContentJob, site)
    assert admin.duration(jobs["queued"]) == ""
    running = jobs["running"]
    ContentJob.objects.filter(pk=running.pk).update(started_at=timezone.now() - timedelta(seconds=90))
    running.refresh_from_db()
    assert 90.0 <= float(admin.duration(running).removesuffix(" s")) < 120
    assert admin.progress_pct(running) == "42%"


@pytest.mark.parametrize(
    "query, expected",
    [
        ("status__exact=done", {"done"}),
        ("status__exact=queued", {"queued"}),
        ("job_type=render.card", {"done"}),
        ("job_type=demo.steps", {"queued", "failed", "running"}),
    ],
)
def test_changelist_filters_by_status_and_job_type(superuser_client, jobs, query, expected):
    response = superuser_client.get(f"{JOBS}?{query}")
    assert response.status_code == 200
    assert shown(response.content.decode()) == {short(jobs[name]) for name in expected}


def test_changelist_filters_by_company_and_created_date(superuser_client, jobs, company, other_company):
    acme = superuser_client.get(f"{JOBS}?company__id__exact={company.pk}").content.decode()
    assert shown(acme) == {short(jobs[n]) for n in ("queued", "failed", "running")}
    globex = superuser_client.get(f"{JOBS}?company__id__exact={other_company.pk}").content.decode()
    assert shown(globex) == {short(jobs["done"])}

    ContentJob.objects.filter(pk=jobs["failed"].pk).update(created_at=timezone.now() - timedelta(days=30))
    # The admin's own "Today" link of the date filter.
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    page = superuser_client.get(JOBS, {"created_at__gte": str(today), "created_at__lt": str(today + timedelta(days=1))})
    assert page.status_code == 200
    assert shown(page.content.decode()) == {short(jobs[n]) for n in ("queued", "done", "running")}


@pytest.mark.parametrize("how", ["prefix", "full id", "full id upper case", "source task id"])
def test_search_finds_a_job_by_its_id_or_source_task_id(superuser_client, jobs, how):
    job = jobs["queued"]
    term = {
        "prefix": short(job),
        "full id": str(job.pk),
        "full id upper case": str(job.pk).upper(),
        "source task id": "task-777",
    }[how]
    response = superuser_client.get(JOBS, {"q": term})
    assert response.status_code == 200
    assert shown(response.content.decode()) == {short(job)}


def test_search_for_an_unknown_id_finds_nothing(superuser_client, jobs):
    absent = "ffffffff" if not any(str(j.pk).startswith("ffffffff") for j in jobs.values()) else "00000000"
    assert shown(superuser_client.get(JOBS, {"q": absent}).content.decode()) == set()


def test_search_by_id_keeps_the_list_filters(superuser_client, jobs):
    # The queued job matches the id but not the status filter: an operator who filtered on
    # "done" must not see it.
    page = superuser_client.get(JOBS, {"q": short(jobs["queued"]), "status__exact": "done"}).content.decode()
    assert shown(page) == set()
    page = superuser_client.get(JOBS, {"q": short(jobs["queued"]), "status__exact": "queued"}).content.decode()
    assert shown(page) == {short(jobs["queued"])}


# Change page


def test_change_page_is_read_only_and_shows_only_the_latest_50_lines(superuser_client, jobs):
    job = jobs["queued"]
    log_append_many(job_id=job.pk, entries=[(f"line number {i:03d}", "info") for i in range(1, 61)])
    response = superuser_client.get(f"{JOBS}{job.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "line number 060" in html and "line number 011" in html
    assert "line number 010" not in html and "line number 001" not in html
    assert html.index("line number 011") < html.index("line number 059") < html.index("line number 060")
    assert str(job.pk) in html and "task-777" in html
    assert 'name="_save"' not in html and 'name="job_type"' not in html and "<textarea" not in html
    assert f'{LINES}?job__id__exact={job.pk}' in html
    assert "/logs?token" in html and "new EventSource" in html  # the live tail (run in Chromium: e2e)


def test_change_page_without_lines_says_so(superuser_client, jobs):
    html = superuser_client.get(f"{JOBS}{jobs['done'].pk}/change/").content.decode()
    assert "no lines" in html


def test_the_full_log_link_lists_every_line_of_that_job_only(superuser_client, jobs):
    job, other = jobs["queued"], jobs["failed"]
    log_append_many(job_id=job.pk, entries=[(f"line number {i:03d}", "info") for i in range(1, 61)])
    log_append_many(job_id=other.pk, entries=[("a line of another job", "info")])
    response = superuser_client.get(LINES, {"job__id__exact": str(job.pk), "all": ""})
    assert response.status_code == 200
    html = response.content.decode()
    assert "line number 001" in html and "line number 060" in html
    assert "a line of another job" not in html


def test_jobs_cannot_be_added_or_changed_through_the_admin(superuser_client, jobs):
    job = jobs["queued"]
    assert superuser_client.get(f"{JOBS}add/").status_code == 403
    response = superuser_client.post(f"{JOBS}{job.pk}/change/", {"job_type": "render.card", "status": "done"})
    assert response.status_code == 403
    job.refresh_from_db()
    assert (job.job_type, job.status) == ("demo.steps", "queued")


def test_only_superusers_may_delete_jobs(client, jobs):
    staff = make_user("stella")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="content_jobs"))
    client.force_login(staff)
    job = jobs["done"]
    assert client.get(f"{JOBS}{job.pk}/change/").status_code == 200
    assert client.get(f"{JOBS}{job.pk}/delete/").status_code == 403
    assert ContentJob.objects.filter(pk=job.pk).exists()


def saved_artifact(job) -> str:
    """A file the job's run saved, as JobContext.save_artifact saves it."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from content_jobs.runner import artifact_storage_name

    return default_storage.save(artifact_storage_name(job.pk, "card.png"), ContentFile(b"png"))


def test_a_superuser_deletes_a_job_or_a_company_with_their_log_lines_and_files(
        superuser_client, jobs, other_company, django_capture_on_commit_callbacks):
    from django.core.files.storage import default_storage

    job = jobs["failed"]
    log_append_many(job_id=job.pk, entries=[("line", "info")] * 3)
    files = {name: saved_artifact(jobs[name]) for name in ("failed", "done", "queued")}
    assert all(default_storage.exists(path) for path in files.values())
    page = superuser_client.get(f"{JOBS}{job.pk}/delete/")
    assert page.status_code == 200 and "Yes, I’m sure" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):  # the files go once the deletion commits
        assert superuser_client.post(f"{JOBS}{job.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not ContentJob.objects.filter(pk=job.pk).exists()
    assert not LogLine.objects.filter(job_id=job.pk).exists() and not JobEvent.objects.filter(job_id=job.pk).exists()
    assert not default_storage.exists(files["failed"])  # a failed run's file too (no result lists it)
    assert default_storage.exists(files["done"])

    done = jobs["done"]  # of other_company
    log_append_many(job_id=done.pk, entries=[("line", "info")])
    company_url = f"/admin/content_jobs/company/{other_company.pk}/delete/"
    with django_capture_on_commit_callbacks(execute=True):
        assert superuser_client.post(company_url, {"post": "yes"}).status_code == 302
    assert not ContentJob.objects.filter(pk=done.pk).exists() and not LogLine.objects.filter(job_id=done.pk).exists()
    assert ContentJob.objects.filter(pk=jobs["queued"].pk).exists()  # another company's job stays
    assert not default_storage.exists(files["done"])
    assert default_storage.exists(files["queued"])


# Actions


def test_cancel_action_cancels_a_queued_job_and_skips_a_done_one(superuser_client, jobs):
    queued, done = jobs["queued"], jobs["done"]
    response = act(superuser_client, "cancel_jobs", queued, done)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Cancelled (or asked to stop) 1 job(s)." in html
    assert f"Skipped 1: {short(done)} (A done job cannot become cancelled.)" in html
    queued.refresh_from_db()
    done.refresh_from_db()
    assert queued.status == "cancelled" and queued.finished_at is not None
    assert done.status == "done"
    assert JobEvent.objects.filter(job=queued, type="content_job.cancelled").count() == 1
    assert not JobEvent.objects.filter(job=done, type="content_job.cancelled").exists()


def test_cancel_action_of_only_a_done_job_changes_nothing(superuser_client, jobs):
    done = jobs["done"]
    events_before = JobEvent.objects.filter(job=done).count()
    html = act(superuser_client, "cancel_jobs", done).content.decode()
    assert "Skipped 1" in html and "Cancelled (or asked to stop)" not in html
    done.refresh_from_db()
    assert done.status == "done" and JobEvent.objects.filter(job=done).count() == events_before


def test_cancel_action_asks_a_running_job_to_stop(superuser_client, jobs):
    running = jobs["running"]
    html = act(superuser_client, "cancel_jobs", running).content.decode()
    assert "Cancelled (or asked to stop) 1 job(s)." in html
    running.refresh_from_db()
    assert running.status == "running" and running.cancel_requested is True


def test_retry_action_queues_a_failed_job_again_and_skips_a_queued_one(
    superuser_client, jobs, django_capture_on_commit_callbacks
):
    failed, queued = jobs["failed"], jobs["queued"]
    from django_tasks_db.models import DBTaskResult

    tasks_before = DBTaskResult.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        html = act(superuser_client, "retry_jobs", failed, queued).content.decode()
    assert "Queued again 1 job(s)." in html
    assert f"Skipped 1: {short(queued)} (A queued job cannot become queued.)" in html
    failed.refresh_from_db()
    assert failed.status == "queued" and failed.error is None and failed.finished_at is None
    assert JobEvent.objects.filter(job=failed).order_by("-seq").first().type == "content_job.status"
    assert DBTaskResult.objects.count() == tasks_before + 1  # its run is enqueued again, once


# Log lines, companies, memberships


def test_log_line_changelist_filters_by_severity_and_searches_messages(superuser_client, jobs):
    log_append_many(job_id=jobs["queued"].pk, entries=[("all good", "info"), ("oh no", "error")])
    response = superuser_client.get(f"{LINES}?severity__exact=error")
    assert response.status_code == 200
    html = response.content.decode()
    assert "oh no" in html and "all good" not in html
    assert short(jobs["queued"]) in html
    found = superuser_client.get(LINES, {"q": "good"}).content.decode()
    assert "all good" in found and "oh no" not in found


def test_log_line_search_by_job_id(superuser_client, jobs):
    log_append_many(job_id=jobs["queued"].pk, entries=[("mine", "info")])
    log_append_many(job_id=jobs["failed"].pk, entries=[("theirs", "info")])
    html = superuser_client.get(LINES, {"q": str(jobs["queued"].pk)}).content.decode()
    assert "mine" in html and "theirs" not in html


def test_log_line_admin_truncates_long_messages_and_is_read_only(superuser_client, jobs):
    [line] = log_append_many(job_id=jobs["queued"].pk, entries=[("x" * 500, "warning")])
    html = superuser_client.get(LINES).content.decode()
    assert "x" * 117 + "…" in html and "x" * 118 not in html
    assert superuser_client.get(f"{LINES}add/").status_code == 403
    line_id = LogLine.objects.get(job=jobs["queued"]).pk
    page = superuser_client.get(f"{LINES}{line_id}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert superuser_client.post(f"{LINES}{line_id}/change/", {"message": "edited"}).status_code == 403
    assert superuser_client.get(f"{LINES}{line_id}/delete/").status_code == 403
    assert LogLine.objects.get(pk=line_id).message == line.message


def test_company_changelist_search_and_membership_inline(superuser_client, company, other_company, member):
    response = superuser_client.get("/admin/content_jobs/company/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "acme" in html and "globex" in html and str(company.pk) in html
    found = superuser_client.get("/admin/content_jobs/company/", {"q": "glob"}).content.decode()
    assert str(other_company.pk) in found and str(company.pk) not in found
    page = superuser_client.get(f"/admin/content_jobs/company/{company.pk}/change/")
    assert page.status_code == 200
    assert "memberships-TOTAL_FORMS" in page.content.decode() and "alice" in page.content.decode()


def test_membership_changelist_filters_by_role_and_company(superuser_client, company, other_company, member, viewer):
    make_user("gina", other_company)

    def users(query: str) -> set[str]:
        response = superuser_client.get(f"/admin/content_jobs/membership/?{query}")
        assert response.status_code == 200
        return set(re.findall(r'class="field-user[^"]*"><a [^>]*>([^<]+)</a>', response.content.decode()))

    assert users("") == {"alice", "victor", "gina"}
    assert users("role__exact=viewer") == {"victor"}
    assert users(f"company__id__exact={other_company.pk}") == {"gina"}


# Access


@pytest.mark.parametrize("path", [JOBS, LINES, "/admin/content_jobs/company/"])
def test_non_staff_users_are_redirected_to_the_login_page(client, member, path):
    client.force_login(member)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_non_staff_users_cannot_run_actions(client, member, jobs):
    client.force_login(member)
    response = client.post(JOBS, {"action": "cancel_jobs", "_selected_action": [str(jobs["queued"].pk)]})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    jobs["queued"].refresh_from_db()
    assert jobs["queued"].status == "queued"


def test_a_changelist_page_reads_no_distinct_values_and_counts_only_its_own_rows(superuser_client, jobs):
    """With many jobs, a page must not read the whole table: no distinct job types or months,
    and a filtered page counts its filter's rows only."""
    with CaptureQueriesContext(connection) as queries:
        page = superuser_client.get(f"{JOBS}?status__exact=done")
    assert page.status_code == 200
    statements = [q["sql"] for q in queries.captured_queries]
    assert not [sql for sql in statements if "DISTINCT" in sql.upper()]
    counts = [sql for sql in statements if "COUNT(" in sql.upper()]
    assert len(counts) == 1 and "WHERE" in counts[0].upper()
    html = page.content.decode()
    for name in ("demo.steps", "render.card", "render.markdown"):  # the filter's choices, from the registry
        assert f"?job_type={name}" in html or f"job_type={name}&" in html
