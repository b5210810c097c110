"""The event streams served straight over ASGI, beside Django's request/response cycle.

A stream connection is long and its request is tiny: Django's cycle costs more than the stream's
own work. It runs the request_started and request_finished signals in the request's thread (two
hand-offs to a thread), a temporary file for the empty body, nine middleware, two tasks kept
for the connection's lifetime, and a response object around the body. Here a stream request
that needs none of that is served by the same code (content_jobs.sse.Stream, the same checks,
the same frames) straight over ASGI: its checks and first read go to a thread in one hand-off,
shared with the streams that open at the same time (content_jobs.sse.Opener).

Served here: GET on a stream route (a URL whose view is a `stream_view`), authenticated by an
`Authorization` header or a `token` query parameter, with no `Origin` header. Everything else
goes to Django as before: session cookies, cross-origin requests (CORS), and every answer that
is not a stream (401, 404, 204, ...), which Django computes again from scratch, so error bodies
come from one place. The response headers are those Django's middleware would add, computed by
those middleware's own code (security headers, CORS `Vary`, `X-Frame-Options`). This path is on
only while settings.MIDDLEWARE is the project's own list, so a middleware added later is never
skipped silently.

Under daphne, whose `send` hands the bytes to Twisted's transport and returns without ever
suspending, a stream is also armed for direct writes (Stream.arm): the fan-out writes the
stream's next events to its connection itself while the stream waits.
"""
import asyncio
import functools
import io
import logging
import sys

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.urls import Resolver404, ResolverMatch, resolve

from content_jobs.sse import COUNTERS, NoContent, Stream, StreamError, sse_response

logger = logging.getLogger(__name__)

# The middleware these streams were checked against: with any other list, Django serves them.
KNOWN_MIDDLEWARE = [
    "nexus_site.middleware.SecurityMiddleware",
    "nexus_site.static_files.StaticFilesMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "nexus_site.middleware.SessionMiddleware",
    "nexus_site.middleware.CommonMiddleware",
    "nexus_site.middleware.CsrfViewMiddleware",
    "nexus_site.middleware.AuthenticationMiddleware",
    "nexus_site.middleware.MessageMiddleware",
    "nexus_site.middleware.XFrameOptionsMiddleware",
]


class NeedsDjango(Exception):
    """The request needs what only Django's cycle gives (a session): Django serves it."""


class DirectRequest(ASGIRequest):
    """Django's request object, without the session and user the middleware would attach: a
    stream's checks that reach for them hand the request to Django."""

    @property
    def user(self):
        raise NeedsDjango

    @property
    def session(self):
        raise NeedsDjango


@functools.cache
def _to_chunk():
    """Twisted's toChunk, looked up once: `twisted.web.http` is a deprecation proxy whose every
    attribute lookup is Python code (an import of it in each stream's opening was 5% of the
    event loop while 1,000 streams connected)."""
    from twisted.web.http import toChunk

    return toChunk


def immediate_writer(send):
    """`write(bytes)`, sending a body chunk at once, without an await, as daphne's `send` would
    (which never suspends): straight to the connection's transport once the response's headers
    are out, through `send` itself before that; None under any other server."""
    # Not imported here: importing daphne.server installs Twisted's reactor, which only daphne
    # itself should do. Under daphne, it is imported already.
    server = getattr(sys.modules.get("daphne.server"), "Server", None)
    if server is None or not isinstance(send, functools.partial):
        return None
    if not isinstance(getattr(send.func, "__self__", None), server):
        return None
    to_chunk = _to_chunk()
    request = send.args[0]
    # daphne's record of the connection: marked "disconnected" when the client goes, and only
    # dropped after that, so the mark is all there is to check.
    connection = send.func.__self__.connections.get(request, {"disconnected": True})
    # daphne logs each chunk at DEBUG level; with that on, chunks take daphne's own way.
    plain = not logging.getLogger("daphne.http_protocol").isEnabledFor(logging.DEBUG)

    def write(body: bytes) -> None:
        # What daphne's send does with a body chunk of a response whose headers are out: its
        # checks, then Twisted's Request.write (a chunk of chunked encoding), straight to the
        # transport, without the message, the coroutine and four calls between.
        if (request.startedWriting and not request.finished and request.channel is not None
                and not request._disconnected and plain):
            if "disconnected" in connection:
                return
            request.sentLength += len(body)
            request.channel.transport.write(b"".join(to_chunk(body)) if request.chunked else body)
            return
        step = send({"type": "http.response.body", "body": body, "more_body": True})
        try:
            step.send(None)
        except StopIteration:
            return
        step.close()
        raise RuntimeError("daphne's send suspended; direct writes need a send that never does")

    return write


def resolve_scope(scope) -> ResolverMatch | None:
    """The view of a request's path (the app's root path taken off); None where none is."""
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    try:
        return resolve(path)
    except Resolver404:
        return None


class DirectStreams:
    def __init__(self):
        self.enabled = settings.NEXUS_DIRECT_STREAMS and list(settings.MIDDLEWARE) == KNOWN_MIDDLEWARE
        if settings.NEXUS_DIRECT_STREAMS and not self.enabled:
            logger.info("streams go through Django's middleware: settings.MIDDLEWARE is not the project's list")
        self._header_middleware = None

    def header_middleware(self):
        if self._header_middleware is None:
            from corsheaders.middleware import CorsMiddleware

            from .middleware import SecurityMiddleware, XFrameOptionsMiddleware

            async def unused(request):  # these middleware are asked for headers only
                raise AssertionError

            self._header_middleware = (SecurityMiddleware(unused), CorsMiddleware(unused),
                                       XFrameOptionsMiddleware(unused))
        return self._header_middleware

    def route(self, scope, match: ResolverMatch | None) -> tuple | None:
        """The stream view and path arguments of a request this path serves; None otherwise.
        `match` is the request's path resolved (resolve_scope)."""
        if match is None or not self.enabled or scope["type"] != "http" or scope["method"] != "GET":
            return None
        has_credentials = b"token=" in scope.get("query_string", b"")
        for name, _ in scope["headers"]:
            name = name.lower()
            if name == b"origin":
                return None
            if name == b"authorization":
                has_credentials = True
        if not has_credentials:
            return None
        make_source = getattr(match.func, "make_source", None)
        return (make_source, match.kwargs) if make_source is not None else None

    def headers(self, request) -> list[tuple[bytes, bytes]]:
        security, cors, frame_options = self.header_middleware()
        response = sse_response(iter(()))
        # In Django's order: the response passes the middleware from the last to the first.
        frame_options.process_response(request, response)
        cors.add_response_headers(request, response)
        security.process_response(request, response)
        return [(name.encode("latin1"), value.encode("latin1")) for name, value in response.items()]

    async def serve(self, route, scope, receive, send) -> bool:
        """Serve the stream; False when Django must answer the request instead."""
        make_source, kwargs = route
        request = DirectRequest(scope, io.BytesIO())
        security = self.header_middleware()[0]
        try:
            request.get_host()
            if security.process_request(request) is not None:
                return False  # a redirect to HTTPS
            stream = await Stream.open(make_source(request, **kwargs), request)
        except (DisallowedHost, StreamError, NoContent, NeedsDjango):
            return False
        headers = self.headers(request)
        del request
        COUNTERS.direct_streams += 1
        body = stream.body()
        task = asyncio.current_task()

        def client_gone(_):
            task.cancel()

        gone = asyncio.ensure_future(self._until_disconnect(receive))
        gone.add_done_callback(client_gone)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            del headers
            write = immediate_writer(send)
            if write is not None:
                stream.arm(write)
            async for text in body:
                await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
                del text  # a waiting stream keeps no copy of what it sent last
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone.done():
                raise  # not the client's disconnect: the server is stopping
            task.uncancel()
        finally:
            gone.remove_done_callback(client_gone)
            gone.cancel()
            await body.aclose()
        return True

    @staticmethod
    async def _until_disconnect(receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
