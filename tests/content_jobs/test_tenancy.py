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
