"""The submission's path, cut off at each layer: each endpoint answers what a submission answers
(202, a small JSON body) after the layers below it and nothing more.

- /bench/layers/django: Django's cycle with the project's middleware (the same hand-off to a
  request thread, the same nine middleware), a plain view that reads the body.
- /api/companies/{company_id}/bench-layers/drf: that, then DRF under the API's own settings:
  the token and the membership read in one statement (content_jobs.authentication), the
  company's role checked, the body parsed as JSON and the answer rendered.

The bare server below both is bench/baselines/bare_asgi.py.
"""
from django.http import JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from content_jobs.tenancy import CompanyScoped
from nexus_site.urls import urlpatterns as project_urlpatterns

ANSWER = {"id": "00000000-0000-0000-0000-000000000000", "status": "queued"}


@csrf_exempt
def django_layer(request):
    request.body  # noqa: B018 (read, as a view that parses it would)
    return JsonResponse(ANSWER, status=202)


class DrfLayer(CompanyScoped, APIView):
    def post(self, request, company_id):
        request.data  # noqa: B018 (parsed by the API's parser)
        return Response(ANSWER, status=status.HTTP_202_ACCEPTED)


urlpatterns = [
    path("bench/layers/django", django_layer),
    re_path(r"^api/companies/(?P<company_id>[^/]+)/bench-layers/drf$", DrfLayer.as_view()),
    *project_urlpatterns,
]
