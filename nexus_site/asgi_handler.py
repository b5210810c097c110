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

Stream requests that need nothing of Django's cycle skip it (nexus_site.asgi_streams).
"""
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

from .asgi_streams import DirectStreams


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


class NexusASGIHandler(ASGIHandler):
    def __init__(self, threads: int):
        super().__init__()
        self.threads = RequestThreads(threads)
        self.direct_streams = DirectStreams()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        index = self.threads.borrow()
        try:
            async with ThreadSensitiveContext(executor=self.threads.executors[index]):
                route = self.direct_streams.route(scope)
                if route is None or not await self.direct_streams.serve(route, scope, receive, send):
                    await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(index)
