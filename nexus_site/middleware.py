"""Django's stock middleware, run on the event loop instead of through a thread each.

Under ASGI, Django runs every `process_request`/`process_response` of a MiddlewareMixin
middleware in a thread (`sync_to_async`), two hand-offs per middleware and request: about a
dozen for every request and every stream connection here, which cost more than the request
itself. The methods of these middlewares do no I/O (they read headers and cookies and set
headers), so they run inline here. The one exception is a session that must be saved: that
save, a database write, still goes to the request's thread.
"""
from asgiref.sync import sync_to_async
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security


class InlineMiddleware:
    """`__acall__` without thread hops, for middleware whose methods do no I/O."""

    def response_needs_thread(self, request, response) -> bool:
        return False

    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request, response):
                response = await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            else:
                response = self.process_response(request, response)
        return response


class SecurityMiddleware(InlineMiddleware, security.SecurityMiddleware):
    pass


class SessionMiddleware(InlineMiddleware, sessions.SessionMiddleware):
    def response_needs_thread(self, request, response) -> bool:
        session = getattr(request, "session", None)
        if session is None:
            return False
        from django.conf import settings

        return session.modified or settings.SESSION_SAVE_EVERY_REQUEST  # a save: a database write


class CommonMiddleware(InlineMiddleware, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(InlineMiddleware, csrf.CsrfViewMiddleware):
    def __init__(self, get_response):
        super().__init__(get_response)
        if self.async_mode:
            # A coroutine, so that Django calls it on the loop (it reads the cookie, a header
            # and, for a form post, the body that is already in memory).
            sync_view = self.process_view

            async def process_view(request, callback, callback_args, callback_kwargs):
                return sync_view(request, callback, callback_args, callback_kwargs)

            self.process_view = process_view


class AuthenticationMiddleware(InlineMiddleware, auth.AuthenticationMiddleware):
    pass  # request.user stays lazy: it is looked up where it is used, in the view's thread


class MessageMiddleware(InlineMiddleware, messages.MessageMiddleware):
    pass


class XFrameOptionsMiddleware(InlineMiddleware, clickjacking.XFrameOptionsMiddleware):
    pass
