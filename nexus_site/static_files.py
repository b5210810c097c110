"""Static files (admin, Swagger UI, console) served by WhiteNoise, without making every request sync.

WhiteNoise's middleware is sync-only, and one sync-only middleware makes Django run every
request, streams included, through a thread hop. This one is async-capable: it hands only
STATIC_URL paths to WhiteNoise and passes every other request straight on.
"""
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpResponseNotFound
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.prefix = "/" + settings.STATIC_URL.lstrip("/")
        self.whitenoise = WhiteNoiseMiddleware(get_response=lambda request: HttpResponseNotFound())
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        if request.path_info.startswith(self.prefix):
            return self.whitenoise(request)
        return self.get_response(request)

    async def _acall(self, request):
        if request.path_info.startswith(self.prefix):
            return await sync_to_async(self.whitenoise, thread_sensitive=False)(request)
        return await self.get_response(request)
