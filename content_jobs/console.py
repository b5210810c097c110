"""The web console: Django templates and a little plain JavaScript over the public API and streams.

The pages only render what the API cannot (the sign-in form, the company picker, the submit forms
generated from each job type's params serializer); everything else the browser reads from the
same JSON API and SSE streams any client uses, with its session cookie.
"""
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.csrf import ensure_csrf_cookie
from rest_framework import serializers

from . import registry
from .models import ContentJob, Membership
from .tenancy import parse_uuid


def _field_spec(name: str, field: serializers.Field) -> dict:
    """How to draw one params field as a form control."""
    spec = {
        "name": name,
        "label": field.label or name,
        "required": field.required,
        "nullable": getattr(field, "allow_null", False),
        "help": field.help_text or "",
        "default": None if field.default is serializers.empty else field.default,
    }
    if isinstance(field, serializers.ChoiceField):
        spec.update(widget="select", choices=list(field.choices.items()))
    elif isinstance(field, serializers.BooleanField):
        spec.update(widget="checkbox")
    elif isinstance(field, (serializers.IntegerField, serializers.FloatField)):
        spec.update(widget="number", min=field.min_value, max=field.max_value,
                    step=1 if isinstance(field, serializers.IntegerField) else "any")
    elif isinstance(field, serializers.CharField) and name in ("markdown", "body", "text"):
        spec.update(widget="textarea")
    else:
        spec.update(widget="text", maxlength=getattr(field, "max_length", None))
    return spec


def job_type_forms() -> list[dict]:
    return [
        {"name": jt.name, "description": jt.description,
         "fields": [_field_spec(name, field) for name, field in jt.params().fields.items()]}
        for jt in registry.all_types()
    ]


def _membership(request, company_id) -> Membership:
    membership = (
        Membership.objects.select_related("company").filter(user=request.user, company_id=parse_uuid(company_id)).first()
    )
    if membership is None:
        raise Http404
    return membership


@login_required(login_url="console-login")
def home(request):
    memberships = list(Membership.objects.select_related("company").filter(user=request.user).order_by("company__slug"))
    if len(memberships) == 1:
        return redirect("console-jobs", company_id=memberships[0].company_id)
    return render(request, "console/home.html", {"memberships": memberships})


@login_required(login_url="console-login")
@ensure_csrf_cookie
def jobs(request, company_id):
    membership = _membership(request, company_id)
    return render(request, "console/jobs.html", {
        "membership": membership,
        "company": membership.company,
        "can_write": membership.role == Membership.Role.MEMBER,
        "job_types": job_type_forms(),
        "statuses": [s.value for s in ContentJob.Status],
    })


@login_required(login_url="console-login")
@ensure_csrf_cookie
def job_detail(request, company_id, job_id):
    membership = _membership(request, company_id)
    if not ContentJob.objects.filter(pk=parse_uuid(job_id), company=membership.company).exists():
        raise Http404
    return render(request, "console/job.html", {
        "membership": membership,
        "company": membership.company,
        "can_write": membership.role == Membership.Role.MEMBER,
        "job_id": job_id,
    })


urlpatterns = [
    path("", home, name="console-home"),
    path("login/", auth_views.LoginView.as_view(template_name="console/login.html", redirect_authenticated_user=True),
         name="console-login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="console-login"), name="console-logout"),
    path("c/<str:company_id>/", jobs, name="console-jobs"),
    path("c/<str:company_id>/jobs/<str:job_id>/", job_detail, name="console-job"),
]
