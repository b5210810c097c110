"""Django admin for operators, as a superuser sees it."""
import pytest
from django.contrib.auth import get_user_model

from content_jobs import services
from content_jobs.models import ContentJob, JobEvent
from job_logs.services import log_append_many


@pytest.fixture
def admin_client(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    client.force_login(user)
    return client


@pytest.fixture
def jobs(company, other_company):
    queued, _ = services.job_submit(company=company, job_type="demo.steps", params={}, source_task_id="task-777")
    done, _ = services.job_submit(company=other_company, job_type="render.card", params={"title": "x"})
    services.job_start(job_id=done.pk)
    services.job_complete(job=done, result={})
    failed, _ = services.job_submit(company=company, job_type="demo.steps", params={})
    services.job_start(job_id=failed.pk)
    services.job_fail(job=failed, code="boom", message="it broke")
    return {"queued": queued, "done": done, "failed": failed}


def test_changelist_shows_short_ids_and_filters_by_status_and_company(admin_client, jobs, company):
    page = admin_client.get("/admin/content_jobs/contentjob/")
    assert page.status_code == 200
    for job in jobs.values():
        assert str(job.pk)[:8] in page.content.decode()
    done_only = admin_client.get("/admin/content_jobs/contentjob/?status__exact=done").content.decode()
    assert str(jobs["done"].pk)[:8] in done_only and str(jobs["queued"].pk)[:8] not in done_only
    acme = admin_client.get(f"/admin/content_jobs/contentjob/?company__id__exact={company.pk}").content.decode()
    assert str(jobs["queued"].pk)[:8] in acme and str(jobs["done"].pk)[:8] not in acme


@pytest.mark.parametrize("term", ["prefix", "source"])
def test_search_finds_a_job_by_id_prefix_and_by_source_task_id(admin_client, jobs, term):
    query = str(jobs["queued"].pk)[:8] if term == "prefix" else "task-777"
    page = admin_client.get("/admin/content_jobs/contentjob/", {"q": query}).content.decode()
    assert str(jobs["queued"].pk)[:8] in page
    assert str(jobs["done"].pk)[:8] not in page


def test_change_page_is_read_only_with_the_latest_lines_only_and_a_live_tail(admin_client, jobs):
    job = jobs["queued"]
    log_append_many(job_id=job.pk, entries=[(f"line number {i:03d}", "info") for i in range(1, 61)])
    page = admin_client.get(f"/admin/content_jobs/contentjob/{job.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "line number 060" in html and "line number 011" in html
    assert "line number 010" not in html and "line number 001" not in html
    assert 'name="_save"' not in html  # nothing to save: read-only
    assert "/logs?token" in html and "new EventSource" in html  # the live tail (checked live in Chromium)
    assert admin_client.post(f"/admin/content_jobs/contentjob/{job.pk}/change/", {}).status_code == 403
    assert admin_client.get("/admin/content_jobs/contentjob/add/").status_code == 403


def test_cancel_action_cancels_a_queued_job_and_skips_a_finished_one(admin_client, jobs):
    response = admin_client.post(
        "/admin/content_jobs/contentjob/",
        {"action": "cancel_jobs", "_selected_action": [jobs["queued"].pk, jobs["done"].pk]},
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Cancelled (or asked to stop) 1 job(s)." in text
    assert "Skipped 1" in text
    assert ContentJob.objects.get(pk=jobs["queued"].pk).status == "cancelled"
    assert ContentJob.objects.get(pk=jobs["done"].pk).status == "done"
    assert JobEvent.objects.filter(job=jobs["queued"], type="content_job.cancelled").count() == 1


def test_retry_action_queues_a_failed_job_again(admin_client, jobs):
    admin_client.post("/admin/content_jobs/contentjob/",
                      {"action": "retry_jobs", "_selected_action": [jobs["failed"].pk]}, follow=True)
    job = ContentJob.objects.get(pk=jobs["failed"].pk)
    assert job.status == "queued" and job.error is None


def test_log_lines_company_and_membership_admin_pages(admin_client, jobs):
    log_append_many(job_id=jobs["queued"].pk, entries=[("all good", "info"), ("oh no", "error")])
    errors = admin_client.get("/admin/job_logs/logline/?severity__exact=error").content.decode()
    assert "oh no" in errors and "all good" not in errors
    assert admin_client.get("/admin/content_jobs/company/").status_code == 200
    assert admin_client.get("/admin/content_jobs/membership/").status_code == 200


def test_non_staff_users_are_sent_to_the_login_page(client, member):
    client.force_login(member)
    response = client.get("/admin/content_jobs/contentjob/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
