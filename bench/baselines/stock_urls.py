import time

import django_eventstream
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django_eventstream import send_event


@csrf_exempt
def publish(request):
    """Send n events on channel `bench`, each stamped with the time of its send_event call."""
    n = int(request.GET.get("n", "1"))
    for i in range(n):
        send_event("bench", "message", {"log": {"event_message": f"t={time.time():.6f} i={i}"}})
    return HttpResponse(str(n))


urlpatterns = [
    path("events/", include(django_eventstream.urls), {"channels": ["bench"]}),
    path("publish", publish),
]
