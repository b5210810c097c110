"""Tenancy's one lookup: the request user's membership in the company of the path."""
import uuid

import pytest
from django.contrib.auth.models import AnonymousUser
from django.forms.models import model_to_dict
from django.http import Http404

from content_jobs.models import Membership
from content_jobs.tenancy import membership_for


@pytest.mark.parametrize("who", ["member", "viewer"])
def test_the_membership_is_the_one_the_orm_reads_with_its_company(request, company, other_company, who):
    user = request.getfixturevalue(who)
    Membership.objects.create(user=user, company=other_company, role=Membership.Role.MEMBER)  # another one
    for company_id in (company.pk, str(company.pk), str(company.pk).upper()):
        found = membership_for(user, company_id)
        expected = Membership.objects.select_related("company").get(user=user, company=company)
        assert (model_to_dict(found), found.pk, found.created_at) == (model_to_dict(expected), expected.pk,
                                                                    expected.created_at)
        assert found.role == who
        assert model_to_dict(found.company) == model_to_dict(company)
        assert (found.company.pk, found.company.created_at, found.company.event_seq) == (
            company.pk, company.created_at, company.event_seq)


def test_no_membership_is_a_404_that_says_nothing_of_the_company(company, member, outsider):
    for user, company_id in [
        (outsider, company.pk),  # the company exists, the user is not in it
        (member, uuid.uuid4()),  # no such company
        (member, "not-a-uuid"),
        (AnonymousUser(), company.pk),
    ]:
        with pytest.raises(Http404):
            membership_for(user, company_id)


# The membership read with the request's token -------------------------------------------------
def test_a_request_reads_its_token_and_membership_by_one_statement(company, member):
    """Under /api/companies/{id}/ the token, its user and the membership of that company are one
    statement, before the view's own (the job list's count and page)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.conftest import client_for

    client = client_for(member)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/api/companies/{company.pk}/content-jobs")
    assert response.status_code == 200
    first = queries.captured_queries[0]["sql"]
    assert all(table in first for table in ("authtoken_token", "auth_user", "content_jobs_membership",
                                            "content_jobs_company"))
    assert not any("content_jobs_membership" in q["sql"] for q in queries.captured_queries[1:])


@pytest.mark.parametrize("role, answers", [("member", (200, 202)), ("viewer", (200, 403))])
def test_the_membership_read_with_the_token_is_the_one_of_the_paths_company(company, other_company, role, answers):
    """A member of one company who is a viewer (or nothing) in another gets that other
    company's answers: the membership read with the token is the path's company's."""
    from tests.conftest import client_for, make_user

    user = make_user("dana", company, role)
    Membership.objects.create(user=user, company=other_company, role=Membership.Role.MEMBER)
    stranger = make_user("erin")
    client = client_for(user)
    for company_id in (company.pk, str(company.pk).upper()):
        url = f"/api/companies/{company_id}/content-jobs"
        assert client.get(url).status_code == answers[0]
        assert client.post(url, {"jobType": "demo.steps", "params": {"steps": 1, "delayMs": 0}},
                           format="json").status_code == answers[1]
    other = f"/api/companies/{other_company.pk}/content-jobs"
    assert client.post(other, {"jobType": "demo.steps", "params": {"steps": 1, "delayMs": 0}},
                       format="json").status_code == 202
    # no membership, no company, a malformed id: 404 with the same body; a bad token: 401
    for path_id in (company.pk, uuid.uuid4(), "not-a-uuid"):
        response = client_for(stranger).get(f"/api/companies/{path_id}/content-jobs")
        assert response.status_code == 404, path_id
    from rest_framework.test import APIClient

    anonymous = APIClient()
    anonymous.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert anonymous.get(f"/api/companies/{company.pk}/content-jobs").status_code == 401
