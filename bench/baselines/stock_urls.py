import time

import django_eventstream
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django_eventstream import send_event
from rest_framework import routers, serializers, viewsets

from bench.baselines.models import Note


@csrf_exempt
def publish(request):
    """Send n events on channel `bench`, each stamped with the time of its send_event call."""
    n = int(request.GET.get("n", "1"))
    for i in range(n):
        send_event("bench", "message", {"log": {"event_message": f"t={time.time():.6f} i={i}"}})
    return HttpResponse(str(n))


class NoteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Note
        fields = ["id", "title", "body", "created"]


class NoteViewSet(viewsets.ModelViewSet):
    """DRF as its tutorial shows: POST /notes/ creates a row and answers 201 with it."""
    queryset = Note.objects.all()
    serializer_class = NoteSerializer


router = routers.DefaultRouter()
router.register("notes", NoteViewSet)

urlpatterns = [
    path("", include(router.urls)),
    path("events/", include(django_eventstream.urls), {"channels": ["bench"]}),
    path("publish", publish),
]
