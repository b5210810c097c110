"""Provisioning and operations commands, as an operator (or a script) runs them."""
import gc
import uuid
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from content_jobs.models import Company, Membership

pytestmark = pytest.mark.django_db

User = get_user_model()


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# create_company


def test_create_company_prints_the_new_company_id_alone():
    output = run("create_company", "acme")
    company = Company.objects.get()
    assert output == f"{company.id}\n"
    assert uuid.UUID(output.strip()) == company.id
    assert company.slug == "acme" and company.name == "acme"


def test_create_company_again_for_the_same_slug_prints_the_same_id_and_creates_nothing():
    first = run("create_company", "acme", "--name", "Acme Inc.")
    second = run("create_company", "acme", "--name", "Something Else")
    assert second == first
    company = Company.objects.get()
    assert first == f"{company.id}\n" and company.name == "Acme Inc."


def test_create_company_name_option_sets_the_name():
    company_id = run("create_company", "globex", "--name", "Globex Corporation").strip()
    assert Company.objects.get(pk=company_id).name == "Globex Corporation"


@pytest.mark.parametrize("slug", ["Not A Slug", "UPPER", "with/slash", "", "a" * 101])
def test_create_company_refuses_an_invalid_slug(slug):
    with pytest.raises(CommandError):
        run("create_company", slug)
    assert not Company.objects.exists()


# add_member


def test_add_member_with_create_user_creates_the_user_and_a_member_membership():
    run("create_company", "acme")
    run("add_member", "acme", "alice", "--create-user")
    user = User.objects.get(username="alice")
    membership = Membership.objects.get()
    assert (membership.user, membership.company.slug, membership.role) == (user, "acme", "member")


def test_add_member_role_option_sets_the_role_of_an_existing_user():
    run("create_company", "acme")
    User.objects.create_user(username="victor")
    run("add_member", "acme", "victor", "--role", "viewer")
    assert Membership.objects.get(user__username="victor").role == "viewer"
    assert User.objects.count() == 1


def test_add_member_twice_keeps_one_membership_and_updates_its_role():
    run("create_company", "acme")
    run("add_member", "acme", "alice", "--create-user")
    run("add_member", "acme", "alice", "--create-user", "--role", "viewer")
    assert User.objects.filter(username="alice").count() == 1
    assert list(Membership.objects.values_list("user__username", "role")) == [("alice", "viewer")]
    run("add_member", "acme", "alice")
    assert list(Membership.objects.values_list("user__username", "role")) == [("alice", "member")]


def test_add_member_of_an_unknown_company_is_an_error_and_creates_nobody():
    run("create_company", "acme")
    with pytest.raises(CommandError, match="nope"):
        run("add_member", "nope", "alice", "--create-user")
    assert not Membership.objects.exists() and not User.objects.exists()


def test_add_member_of_an_unknown_user_without_create_user_is_an_error():
    run("create_company", "acme")
    with pytest.raises(CommandError, match="ghost"):
        run("add_member", "acme", "ghost")
    assert not Membership.objects.exists() and not User.objects.exists()


def test_add_member_refuses_an_unknown_role():
    run("create_company", "acme")
    with pytest.raises(CommandError):
        run("add_member", "acme", "alice", "--create-user", "--role", "owner")
    assert not Membership.objects.exists()


# issue_token


def test_issue_token_prints_the_token_alone_and_the_same_token_again():
    User.objects.create_user(username="alice")
    output = run("issue_token", "alice")
    token = Token.objects.get(user__username="alice")
    assert output == f"{token.key}\n"
    assert run("issue_token", "alice") == output
    assert Token.objects.count() == 1


def test_issued_token_authenticates_an_api_request():
    company_id = run("create_company", "acme").strip()
    run("add_member", "acme", "alice", "--create-user")
    key = run("issue_token", "alice").strip()
    client = APIClient()
    assert client.get(f"/api/companies/{company_id}/content-jobs").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get(f"/api/companies/{company_id}/content-jobs")
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)  # a token nobody was issued
    assert client.get(f"/api/companies/{company_id}/content-jobs").status_code == 401


def test_issue_token_for_an_unknown_user_is_an_error():
    with pytest.raises(CommandError, match="nobody"):
        run("issue_token", "nobody")
    assert not Token.objects.exists()


# Operations


def test_reap_and_prune_commands_report_what_they_did(company):
    from datetime import timedelta

    from django.utils import timezone

    from content_jobs import services
    from content_jobs.models import ContentJob

    job = services.job_start(job_id=services.job_submit(company=company, job_type="demo.steps", params={})[0].pk)
    ContentJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert run("reap_jobs").splitlines() == [
        f"{job.pk} -> queued", "reaped 1 job(s)", "queued 0 job(s) again whose run was lost before it started"]
    services.job_cancel(job=job)
    ContentJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=31))
    assert run("prune_jobs", "--days", "30").startswith("pruned 1 jobs")
    assert not ContentJob.objects.exists()


# Bad arguments: a clear error that changes nothing, never a traceback
@pytest.fixture
def finished_long_ago(company):
    from datetime import timedelta

    from django.utils import timezone

    from content_jobs import services
    from content_jobs.models import ContentJob

    job = services.job_cancel(job=services.job_submit(company=company, job_type="demo.steps", params={})[0])
    ContentJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=400))
    return job


@pytest.mark.parametrize("args, message", [
    (("prune_jobs", "--days", "nan"), "argument --days: 'nan' must be a number of days from 0 to 36500"),
    (("prune_jobs", "--days", "inf"), "argument --days: 'inf' must be a number of days from 0 to 36500"),
    (("prune_jobs", "--days", "1e9"), "argument --days: '1e9' must be a number of days from 0 to 36500"),
    (("prune_jobs", "--days", "-1"), "argument --days: '-1' must be a number of days from 0 to 36500"),
    (("prune_jobs", "--days", "soon"), "argument --days: 'soon' is not a number of days"),
    (("prune_jobs", "--batch-size", "0"), "argument --batch-size: '0' must be 1 or more"),
    (("prune_jobs", "--batch-size", "-1"), "argument --batch-size: '-1' must be 1 or more"),
    (("jobs", "list", "acme", "--limit", "-1"), "argument --limit: '-1' must be 1 or more"),
    (("jobs", "list", "acme", "--limit", "x"), "argument --limit: 'x' is not a whole number"),
])
def test_a_bad_number_is_an_error_naming_it_and_changes_nothing(finished_long_ago, args, message):
    from content_jobs.models import ContentJob

    with pytest.raises(CommandError) as raised:
        run(*args)
    assert str(raised.value).endswith(message), str(raised.value)
    assert ContentJob.objects.filter(pk=finished_long_ago.pk).exists()


def test_a_bad_number_on_the_command_line_is_a_usage_error_without_a_traceback(tmp_path):
    import subprocess
    import sys

    from tests.live import ROOT

    result = subprocess.run([sys.executable, "manage.py", "prune_jobs", "--days", "nan"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={**__import__("os").environ, "NEXUS_VAR_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "error: argument --days: 'nan' must be a number of days from 0 to 36500" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("username, message", [
    ("", "'' is not a valid username: This field cannot be blank."),
    ("al ice", "'al ice' is not a valid username: Enter a valid username."),
    ("a" * 151, "is not a valid username: Ensure this value has at most 150 characters (it has 151)."),
])
def test_add_member_refuses_a_username_django_would_refuse(username, message):
    run("create_company", "acme")
    with pytest.raises(CommandError) as raised:
        run("add_member", "acme", username, "--create-user")
    assert message in str(raised.value)
    assert not User.objects.exists() and not Membership.objects.exists()


def test_create_company_refuses_a_name_longer_than_its_column():
    with pytest.raises(CommandError, match="at most 200 characters"):
        run("create_company", "acme", "--name", "n" * 201)
    assert not Company.objects.exists()


@pytest.mark.parametrize("args, field", [
    (("--source-task-id", "t" * 256), "sourceTaskId"),  # the API's limit (the column's: 255)
    ((), "jobType"),
])
def test_jobs_submit_checks_the_body_as_the_api_does(company, args, field):
    from content_jobs.models import ContentJob

    job_type = "x" * 101 if field == "jobType" else "demo.steps"
    with pytest.raises(CommandError) as raised:
        run("jobs", "submit", company.slug, job_type, *args)
    assert f"\n  {field}: Ensure this field has no more than" in str(raised.value)
    assert not ContentJob.objects.exists()


# The web process's garbage collector (serve.tune_gc)
@pytest.fixture
def gc_restored():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_serve_freezes_the_startup_heap_and_collects_at_the_configured_thresholds(settings, gc_restored):
    from content_jobs.management.commands.serve import tune_gc

    settings.NEXUS_GC_THRESHOLDS = [10000, 10, 100]
    gc.unfreeze()
    tune_gc()
    assert gc.get_threshold() == (10000, 10, 100)
    assert gc.get_freeze_count() > 1000  # the modules, classes and settings loaded so far


def test_empty_gc_thresholds_keep_pythons_own(settings, gc_restored):
    from content_jobs.management.commands.serve import tune_gc

    settings.NEXUS_GC_THRESHOLDS = []
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (700, 10, 10)
