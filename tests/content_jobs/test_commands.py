"""Provisioning and operations commands, as an operator runs them."""
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from content_jobs.models import Company, Membership

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_company_prints_the_id_alone_and_again_for_the_same_slug():
    first = run("create_company", "acme", "--name", "Acme Inc.")
    company = Company.objects.get()
    assert first == f"{company.id}\n"
    assert company.name == "Acme Inc."
    assert run("create_company", "acme") == first
    assert Company.objects.count() == 1


def test_create_company_refuses_an_invalid_slug():
    with pytest.raises(CommandError):
        run("create_company", "Not A Slug")
    assert Company.objects.count() == 0


def test_add_member_creates_the_user_and_is_safe_to_run_twice():
    run("create_company", "acme")
    run("add_member", "acme", "alice", "--create-user")
    run("add_member", "acme", "alice", "--role", "viewer")
    membership = Membership.objects.get()
    assert membership.user.username == "alice" and membership.role == "viewer"


@pytest.mark.parametrize("args", [("nope", "alice", "--create-user"), ("acme", "ghost")])
def test_add_member_needs_a_known_company_and_user(args):
    run("create_company", "acme")
    with pytest.raises(CommandError):
        run("add_member", *args)
    assert Membership.objects.count() == 0


def test_issue_token_prints_the_same_token_that_authenticates_the_api():
    company_id = run("create_company", "acme").strip()
    run("add_member", "acme", "alice", "--create-user")
    token = run("issue_token", "alice").strip()
    assert len(token) == 40 and run("issue_token", "alice").strip() == token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(f"/api/companies/{company_id}/content-jobs").status_code == 200
    with pytest.raises(CommandError):
        run("issue_token", "nobody")


def test_reap_and_prune_commands_report_what_they_did(company):
    from datetime import timedelta

    from django.utils import timezone

    from content_jobs import services
    from content_jobs.models import ContentJob

    job = services.job_start(job_id=services.job_submit(company=company, job_type="demo.steps", params={})[0].pk)
    ContentJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert run("reap_jobs").splitlines() == [f"{job.pk} -> queued", "reaped 1 job(s)"]
    services.job_cancel(job=job)
    ContentJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=31))
    assert run("prune_jobs", "--days", "30").startswith("pruned 1 jobs")
    assert not ContentJob.objects.exists()
