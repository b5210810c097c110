"""Django's ASGI handler, with a fixed set of threads for the synchronous part of requests.

Django runs each request's synchronous code (DRF views, sync middleware, the ORM) in a
thread-sensitive context, and stock Django makes a new thread for every request, which lives
as long as the request: a stream connected for an hour holds an idle OS thread for an hour,
and every request opens (and closes) its own database connection in its new thread.

Here each request borrows one of `NEXUS_REQUEST_THREADS` long-lived threads instead (the one
with the fewest requests in flight). A request's synchronous code still runs on one thread
throughout, as Django expects; each thread keeps its database connection where the engine
allows it (SQLite) and borrows from the pool where it does not (PostgreSQL). A waiting stream
holds no thread at all: it is a coroutine.

A request for a synchronous view (the API, the admin) runs Django's cycle in its thread in one
hand-off, with the middleware in their synchronous mode (NexusASGIHandler.handle_sync).
Stream requests that need nothing of Django's cycle skip it (nexus_site.asgi_streams). A
request's path is resolved once, on the event loop, for both choices.
"""
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import FileResponse
from django.urls import set_script_prefix

from .asgi_streams import DirectStreams, resolve_scope


class RequestThreads:
    def __init__(self, size: int):
        self.executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"nexus-request-{i}")
                          for i in range(size)]
        for executor in self.executors:
            executor.submit(int).result()  # start the threads now: their number never changes
        self.busy = [0] * size
        self._lock = threading.Lock()
        self._turn = itertools.count()

    def borrow(self) -> int:
        with self._lock:
            # Least busy first; among equals, take turns so the threads share the work.
            start = next(self._turn) % len(self.busy)
            order = self.busy[start:] + self.busy[:start]
            index = (order.index(min(order)) + start) % len(self.busy)
            self.busy[index] += 1
            return index

    def give_back(self, index: int) -> None:
        with self._lock:
            self.busy[index] -= 1


class SyncChain(BaseHandler):
    """The middleware chain in Django's synchronous mode, as under a WSGI server."""

    def __init__(self):
        super().__init__()
        self.load_middleware(is_async=False)


class NexusASGIHandler(ASGIHandler):
    def __init__(self, threads: int):
        super().__init__()
        self.threads = RequestThreads(threads)
        self.direct_streams = DirectStreams()
        self.sync_chain = SyncChain()

    async def handle_sync(self, scope, receive, send):
        """A request for a synchronous view (or for a path without one: its 404) runs Django's
        whole cycle in one hand-off to its thread: request_started, the request object, the
        middleware in their synchronous mode, the view, and (for an answer held in memory) the
        close that sends request_finished; the event loop then sends the answer. Django's
        asynchronous cycle hands request_started, the view and the close to the thread one by
        one (four hand-offs for a submission, each a wake-up of the thread and one of the event
        loop), runs nine middleware as coroutines and two tasks per request: POSTs one at a time
        took a median 6.98 ms of the server's CPU each that way, 5.69 ms this way (four
        alternating runs). Async views (the streams that Django serves) still take Django's own
        cycle (handle)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            response = await sync_to_async(self._respond, thread_sensitive=True)(scope, body_file)
            if response.streaming and not response.is_async:  # a file
                response.streaming_content = self._pulled(iter(response.streaming_content))
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:  # closed once sent (or given up), as Django closes it
                    await sync_to_async(response.close, thread_sensitive=True)()
        finally:
            body_file.close()

    @staticmethod
    async def _pulled(chunks):
        """A synchronous body (a file) read in the request's thread a chunk at a time as it is
        sent, where Django reads all of it into memory first."""
        pull = sync_to_async(next, thread_sensitive=True)
        while (chunk := await pull(chunks, None)) is not None:
            yield chunk

    def _respond(self, scope, body_file):
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.sync_chain.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        if not response.streaming:
            response.close()  # request_finished: the bytes are in memory
        return response

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        index = self.threads.borrow()
        try:
            async with ThreadSensitiveContext(executor=self.threads.executors[index]):
                match = resolve_scope(scope)
                route = self.direct_streams.route(scope, match)
                if route is not None and await self.direct_streams.serve(route, scope, receive, send):
                    return
                if match is not None and iscoroutinefunction(match.func):
                    await self.handle(scope, receive, send)
                else:
                    await self.handle_sync(scope, receive, send)
        finally:
            self.threads.give_back(index)
