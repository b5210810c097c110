"""Server-Sent Events: the stream engine shared by the job, company and log streams.

A stream registers a django-eventstream Listener for its channels and makes the process's hub
join the channel-layer group *before* it checks access and reads storage (one trip to a
thread, shared by the streams that open at the same time: `Opener`), so nothing committed after
that read is missed; what arrives twice is dropped by id.
Ids are gapless per channel, so a live event whose id jumps ahead tells the stream it missed
some (a full listener queue, a layer outage): it reads them from storage. While it waits, a
stream holds no thread and no database connection: only the listener's asyncio event, with a
keep-alive comment after NEXUS_SSE_KEEPALIVE_SECONDS of quiet (within a quarter of that more).
One timer per event loop (`KeepAlive`) serves every stream's keep-alive, so waking a stream for
an event costs no timer of its own.
"""
import asyncio
import logging
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse
from django_eventstream.event import Event
from django_eventstream.utils import sse_encode_event
from django_eventstream.views import Listener, get_listener_manager
from rest_framework.authtoken.models import Token

from .api_errors import problem_response
from .lean_asyncio import LeanEvent
from .stream_hub import hub
from .stream_storage import ProjectStorage

logger = logging.getLogger(__name__)


class Counters:
    """This process's stream counts, for the internal stats. On an instance, not on a class:
    assigning a class attribute voids the interpreter's attribute caches for that class, and a
    count kept on Stream slowed each direct write's every lookup on a stream (0.2 µs a write)."""

    def __init__(self):
        self.direct_streams = 0  # streams served beside Django's request cycle (nexus_site.asgi_streams)
        self.direct_writes = 0  # writes by the fan-out to armed streams (Stream.arm)


COUNTERS = Counters()

storage = ProjectStorage()
PAGE = 1000


class StreamError(Exception):
    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def response(self):
        return problem_response(self.status, self.code, self.detail)


def named_frame(event_type: str, event_id: int, data: str) -> str:
    return sse_encode_event(event_type, data, event_id=event_id)


def unnamed_frame(event_id: int, data: str) -> str:
    # No `event:` line, so EventSource.onmessage receives it.
    return f"id: {event_id}\ndata: {data}\n\n"


def frame_for(event: Event) -> str:
    """The SSE frame of a stored or live event, encoded once however many streams send it."""
    frame = getattr(event, "frame", None)
    if frame is None:
        if event.type is None:
            frame = unnamed_frame(event.id, event.data)
        else:
            frame = named_frame(event.type, event.id, event.data)
        event.frame = frame
    return frame


def frame_bytes(event: Event) -> bytes:
    """frame_for(event), encoded once for every stream that is sent it directly."""
    data = getattr(event, "frame_bytes", None)
    if data is None:
        data = event.frame_bytes = frame_for(event).encode()
    return data


def parse_last_event_id(request) -> int | None:
    # META, not request.headers: that builds a mapping of every header, per connection.
    raw = request.META.get("HTTP_LAST_EVENT_ID") or request.GET.get("lastEventId")
    if raw is None or raw == "":
        return None
    if not EVENT_ID.fullmatch(raw):  # not int()'s reading: "+1", "1_0" and "١" are numbers to it
        raise StreamError(400, "invalid_last_event_id", "Last-Event-ID must be an event id from this stream.")
    return int(raw)


EVENT_ID = re.compile(r"\s*[0-9]+\s*")


def check_not_past(cursor: int | None, latest: int) -> None:
    """A Last-Event-ID past the stream's latest stored event is none this stream sent (events
    are stored before they are sent): its events up to that id would be passed over unsaid,
    and a job's end among them too. (A finished job's stream answers 204 first: there is
    nothing left to miss.)"""
    if cursor is not None and cursor > latest:
        raise StreamError(400, "invalid_last_event_id",
                          f"Last-Event-ID {cursor} is past this stream's latest event ({latest}).")


def request_user(request):
    """The user of an `Authorization: Token` header or a session; None when there is neither.
    Synchronous: call it in a thread (see Opener)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "token":  # as DRF reads it on the API
            raise StreamError(401, "authentication_failed", "Invalid Authorization header.")
        key = parts[1]
        token = shared(("token", key), lambda: Token.objects.select_related("user").filter(key=key).first())
        if token is None or not token.user.is_active:
            raise StreamError(401, "authentication_failed", "Invalid token.")
        return token.user
    user = request.user
    return user if user.is_authenticated else None


def _closing(fn, *args):
    try:
        return fn(*args)
    finally:
        # PostgreSQL: back to the pool, so a waiting stream holds no connection. SQLite: kept
        # by the request thread (see nexus_site.asgi_handler). Never inside a transaction (a
        # test's): closing would end it.
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


async def in_thread(fn, *args):
    """Run `fn`, database work, in the request's thread in one go, and hand the connection back.

    A stream's later reads are each one such call (its checks and first read go through
    `Opener`): every hand-off between the event loop and a thread costs more than the queries
    themselves."""
    return await sync_to_async(_closing)(fn, *args)


def sse_response(content: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(content, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def read_after(channel: str, last_id: int) -> list[Event]:
    """Every stored event of `channel` after `last_id`, in order (in a thread). In a batch of
    stream opens, a channel is read once, from the lowest cursor asked for (see `shared`)."""
    memo = getattr(_opening, "memo", None)
    if memo is None:
        return _read_after(channel, last_id)
    read = memo.get(("events", channel))
    if read is None or read[0] > last_id:
        read = memo[("events", channel)] = (last_id, _read_after(channel, last_id))
    return [event for event in read[1] if event.id > last_id]


def _read_after(channel: str, last_id: int) -> list[Event]:
    out: list[Event] = []
    while True:
        page = storage.get_events(channel, last_id, limit=PAGE)
        out.extend(page)
        if len(page) < PAGE:
            return out
        last_id = page[-1].id


# The newest stored id of a channel, shared by every stream of the process for a second: a
# keep-alive asks it, and reads events only when the channel has ones newer than the stream's
# cursor. Ten thousand idle streams of one company make one query a second at most, not ten
# thousand every keep-alive interval.
LATEST_TTL = 1.0
_latest: dict[str, tuple[float, asyncio.Future]] = {}


async def latest_stored_id(channel: str) -> int:
    return await _shared_for_a_while(("latest", channel), storage.get_current_id, channel)


async def job_status(job_id) -> str | None:
    """The job's status, None once it is deleted; shared as latest_stored_id is."""
    return await _shared_for_a_while(("status", job_id), _read_job_status, job_id)


def _read_job_status(job_id) -> str | None:
    from .models import ContentJob

    return ContentJob.objects.filter(pk=job_id).values_list("status", flat=True).first()


async def _shared_for_a_while(key, read, *args):
    """`read(*args)` in a thread, or its answer read for `key` less than LATEST_TTL ago."""
    now = time.monotonic()
    entry = _latest.get(key)
    if entry is None or now - entry[0] > LATEST_TTL or entry[1].get_loop() is not asyncio.get_running_loop():
        if len(_latest) > 1000:
            for name, (at, _) in list(_latest.items()):
                if now - at > LATEST_TTL:
                    del _latest[name]
        entry = _latest[key] = (now, asyncio.ensure_future(in_thread(read, *args)))
    return await asyncio.shield(entry[1])


# Opening streams in batches ----------------------------------------------------------------
# A stream's checks and first read (Source.start) go to a thread in batches: the opens that
# arrive while a batch runs go together in the next one, and what they look up (a token, a
# job, a membership, a channel's stored events) is read once for the whole batch. Ten thousand
# clients that come back at once to one job after a network blip cost a few hundred thread
# trips and a few queries a batch, not four queries and a thread trip apiece, and the event
# loop no longer waits behind eight threads that queue for the interpreter lock. Each batch
# starts after its streams listen, so a read shared by the batch misses nothing any of them
# needs (what is stored later reaches them live).
_opening = threading.local()


def shared(key, read):
    """`read()`, or what it returned for the same key earlier in this batch of stream opens."""
    memo = getattr(_opening, "memo", None)
    if memo is None:
        return read()
    if key not in memo:
        memo[key] = read()
    return memo[key]


def _start_all(loop: asyncio.AbstractEventLoop, batch: list) -> None:
    """Source.start of each (source, request, waiter) of a batch, in order, sharing reads; the
    waiters are told on the loop, whatever became of the coroutine that sent the batch."""
    results = []
    _opening.memo = {}
    try:
        for source, request, waiter in batch:
            if waiter.done():
                continue  # the client went while it waited
            try:
                results.append((waiter, source.start(request), None))
            except BaseException as exc:  # raised in the waiting coroutine, whatever it is
                results.append((waiter, None, exc))
    finally:
        _opening.memo = None
        loop.call_soon_threadsafe(_settle, results)


def _settle(results: list) -> None:
    for waiter, frames, error in results:
        if waiter.done():
            continue
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(frames)


class Opener:
    """The stream opens of one event loop. One batch runs at a time, in the thread of the
    request that leads it (a request's thread, as any of its database work): the first open
    while none runs; when a batch is over, the first open still waiting leads the next."""

    LEAD = object()  # what a waiting open is told when it is to lead the next batch
    openers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Opener]" = weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending: list = []
        self.running = False

    @classmethod
    async def start(cls, source: "Source", request) -> list[str]:
        loop = asyncio.get_running_loop()
        opener = cls.openers.get(loop)
        if opener is None:
            opener = cls.openers[loop] = cls(loop)
        while True:
            waiter = loop.create_future()
            opener.pending.append((source, request, waiter))
            if not opener.running:
                await opener.lead()
            try:
                outcome = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is cls.LEAD:
                    opener.hand_over()  # it was to lead the next batch: the next in line does
                raise
            if outcome is not cls.LEAD:
                return outcome

    async def lead(self) -> None:
        self.running = True
        batch, self.pending = self.pending, []
        try:
            await in_thread(_start_all, self.loop, batch)
        finally:
            # Cancelled (the leader's client went), the batch goes on in its thread and its
            # waiters are still told; the next batch may start meanwhile.
            self.running = False
            self.hand_over()

    def hand_over(self) -> None:
        """The first open still waiting leads the next batch (it queues again and finds none
        running); an open that arrives first leads it instead, which is as good."""
        while self.pending:
            _, _, waiter = self.pending.pop(0)
            if not waiter.done():
                waiter.set_result(self.LEAD)
                return


class NoContent(Exception):
    """The client has everything there is and ever will be: 204, and EventSource stops."""


class Source:
    """What one kind of stream reads and when it ends; `Stream` drives it.

    Made from the request and the path's ids alone (no database work), so that the stream
    listens before anything is read. `cursor` is the id of the last event of `channel` the
    client has; `finished` ends the stream.
    """

    kind: str
    channel: str
    group: str
    listen: set[str]

    def __init__(self, cursor: int):
        self.cursor = cursor
        self.finished = False

    def check(self, request) -> None:
        """May the caller watch, and is there anything to send? Raises StreamError or
        NoContent (in a thread, see Opener)."""

    def start(self, request) -> list[str]:
        """The checks, then the first frames, in one go (see Opener)."""
        self.check(request)
        return self.open()

    def open(self) -> list[str]:
        """The first frames, read once the stream listens (in a thread)."""
        return self.read_new()

    def read_new(self) -> list[str]:
        """The frames of the stored events after the cursor (in a thread)."""
        return [self.accept(event) for event in read_after(self.channel, self.cursor) if not self.finished]

    async def catch_up(self) -> list[str]:
        return await in_thread(self.read_new)

    async def quiet(self) -> list[str]:
        """After a quiet keep-alive interval: whatever storage has that the stream has not (a
        live message lost on the way, say in an outage of the channel layer)."""
        if await latest_stored_id(self.channel) > self.cursor:
            return await self.catch_up()
        return []

    def accept(self, event: Event) -> str:
        self.cursor = event.id
        return frame_for(event)

    def passes(self, event: Event) -> bool:
        """May the next event of `channel` be written straight to the client by the fan-out
        (`Stream.take_direct`)? Not if it ends the stream or changes the source."""
        return True

    async def other(self, channel: str, events: list[Event]) -> list[str]:
        """Events of a listened channel other than `channel`."""
        return []

    async def live(self, items: dict[str, list[Event]]) -> list[str]:
        frames: list[str] = []
        for event in items.get(self.channel, []):
            if self.finished or event.id <= self.cursor:
                continue  # seen already (it was read from storage too)
            if event.id > self.cursor + 1:
                frames.extend(await self.catch_up())  # a gap: the missing ones are stored
                continue
            frames.append(self.accept(event))
        for channel, events in items.items():
            if channel != self.channel and not self.finished:
                frames.extend(await self.other(channel, events))
        return frames


class KeepAlive:
    """One timer per event loop, for the keep-alives of all its streams: every quarter of
    NEXUS_SSE_KEEPALIVE_SECONDS it wakes the streams that have sent nothing for that long.
    A timer per stream (`asyncio.timeout` around each wait) was set and cancelled on every
    event each stream sent: a sixth of the event loop with 1,000 streams on a busy job."""

    loops: "dict[asyncio.AbstractEventLoop, KeepAlive]" = {}

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.streams: set[Stream] = set()
        self.interval = settings.NEXUS_SSE_KEEPALIVE_SECONDS
        self.timer = None

    @classmethod
    def join(cls, stream: "Stream") -> "KeepAlive":
        loop = asyncio.get_running_loop()
        keepalive = cls.loops.get(loop)
        if keepalive is None:
            keepalive = cls.loops[loop] = cls(loop)
        keepalive.streams.add(stream)
        if keepalive.timer is None:
            keepalive.timer = loop.call_later(keepalive.interval / 4, keepalive.tick)
        return keepalive

    def leave(self, stream: "Stream") -> None:
        self.streams.discard(stream)

    def tick(self) -> None:
        now = time.monotonic()  # the clock of streams' `last_sent`
        for stream in self.streams:
            if now - stream.last_sent >= self.interval and not stream.quiet_due:
                stream.quiet_due = True
                stream.listener.aevent.set()
        if self.streams:
            self.timer = self.loop.call_later(self.interval / 4, self.tick)
        else:
            self.timer = None
            if self.loops.get(self.loop) is self:
                del self.loops[self.loop]


class Stream:
    """One client's stream: `await Stream.open(source, request)` listens, joins the source's
    group, checks and reads the first frames; `body()` yields the text to send until the
    source is finished or the client goes. Served by a Django view (`stream_view`) or
    straight over ASGI (nexus_site.asgi_streams); the bytes are the same."""

    def __init__(self, source: Source):
        self.source = source
        self.manager = get_listener_manager()
        self.listener = Listener()
        self.listener.aevent = LeanEvent()  # 760 bytes less per stream (see lean_asyncio)
        self.listener.channels = set(source.listen)
        self.listener.assign_loop()
        self.manager.add_listener(self.listener)
        joining = hub.subscribe(source.group)
        self.joining = joining
        # Once, whichever comes first: the body's end, a failed open, or the stream being
        # dropped unread (a client gone before the server began the body).
        self.close = weakref.finalize(self, _leave, self.manager, self.listener, source.group, joining)
        self.first = ""
        self.last_sent = 0.0
        self.quiet_due = False  # set by KeepAlive: nothing sent for a keep-alive interval
        self.write = None  # set by `arm`: writes bytes to the client at once
        self.outbox: list[bytes] = []  # frames the fan-out took for `write` (take_direct)
        self.waiting = False  # the body waits for its listener, with nothing pending
        self.listener.direct = None

    @classmethod
    async def open(cls, source: Source, request) -> "Stream":
        stream = cls(source)
        try:
            if not stream.joining.done():  # joined already: no trip through the loop's self-pipe
                await asyncio.wrap_future(stream.joining)
            stream.joining.result()  # a failed join raises here
            frames = await Opener.start(source, request)
        except BaseException:
            stream.close()
            raise
        stream.first = f"retry: {settings.NEXUS_SSE_RETRY_MS}\n\n" + "".join(frames)
        return stream

    def arm(self, write) -> None:
        """Let the fan-out send this stream's next events itself, through `write(bytes)`,
        which must send at once (never suspend), while the body waits with nothing pending:
        no task wake-up, no generator step and no ASGI message per event and stream."""
        self.write = write
        self.listener.direct = self

    def take_direct(self, channel: str, event: Event) -> bool:
        """Called by the fan-out, on the stream's event loop: take `event` into the outbox if
        it is the very next one of the stream and the body waits with nothing pending; False
        leaves it to the body. The fan-out sends the outbox (`send_direct`) once the events
        that reached the loop together are all in it: one write for a burst."""
        source = self.source
        if (not self.waiting or self.write is None or channel != source.channel
                or event.id != source.cursor + 1 or source.finished or not source.passes(event)):
            return False
        source.cursor = event.id
        self.outbox.append(frame_bytes(event))
        return True

    def send_direct(self) -> None:
        """Write what the fan-out took for this stream, if anything. Should the write fail,
        the stream is disarmed and its body reads those events from storage instead."""
        if self.outbox and self.write is not None:
            outbox, self.outbox = self.outbox, []
            try:
                self.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
            except Exception:
                logger.exception("a direct write failed; the stream reads those events from storage")
                # Each frame taken moved the cursor on by one, and nothing else moves it while
                # the outbox holds frames (the body sends the outbox first).
                self.source.cursor -= len(outbox)
                self.write = self.listener.direct = None
                with self.manager.lock:
                    self.listener.overflow = True  # woken(): read from storage after the cursor
                    self.listener.aevent.set()
                return
            self.last_sent = time.monotonic()
            COUNTERS.direct_writes += 1

    def take_first(self) -> str:
        """The opening text, once: a stream that waits for hours keeps no copy of it."""
        first, self.first = self.first, ""
        return first

    async def quiet(self) -> str:
        """After a quiet keep-alive interval: what the source has to say (Source.quiet)."""
        return "".join(await self.source.quiet())

    async def woken(self) -> str:
        """The text of what the listener was woken for."""
        source, listener = self.source, self.listener
        with self.manager.lock:
            items, listener.channel_items = listener.channel_items, {}
            overflow, listener.overflow = listener.overflow, False
            listener.aevent.clear()
        frames = await source.live(items)
        if overflow:
            # The listener's queue was full and dropped events: storage has them.
            frames.extend(await source.catch_up())
        return "".join(frames)

    async def body(self) -> AsyncIterator[str]:
        from .metrics import OPEN_STREAMS

        source, listener = self.source, self.listener
        open_streams = OPEN_STREAMS.labels(source.kind)
        open_streams.inc()
        keepalive = KeepAlive.join(self)
        try:
            yield self.take_first()
            self.last_sent = time.monotonic()
            while not source.finished:
                # While it waits, the fan-out may write the stream's next events itself (`arm`).
                self.waiting = True
                try:
                    await listener.aevent.wait()
                finally:
                    self.waiting = False
                self.send_direct()  # what the fan-out took goes before anything the body sends
                if self.quiet_due:
                    self.quiet_due = False
                    with self.manager.lock:
                        quiet = not listener.channel_items and not listener.overflow
                        if quiet:
                            listener.aevent.clear()
                    if quiet:
                        # Quiet for a while: say so, and make sure nothing was missed meanwhile.
                        yield await self.quiet() + ": keep-alive\n\n"
                        self.last_sent = time.monotonic()
                        continue
                text = await self.woken()
                if text:
                    yield text
                    self.last_sent = time.monotonic()
                del text  # a waiting stream keeps no copy of what it sent last
        finally:
            listener.direct = self.write = None
            self.outbox = []
            keepalive.leave(self)
            self.close()
            open_streams.dec()


def _leave(manager, listener: Listener, group: str, joining) -> None:
    hub.release(group, joining)
    manager.remove_listener(listener)


def stream_view(make_source):
    """An async Django view serving the stream of `make_source(request, **path_kwargs)`; the
    direct ASGI path (nexus_site.asgi_streams) finds `make_source` on it."""

    async def view(request, **kwargs):
        try:
            stream = await Stream.open(make_source(request, **kwargs), request)
        except StreamError as exc:
            return exc.response()
        except NoContent:
            return HttpResponse(status=204)
        return sse_response(stream.body())

    view.make_source = make_source
    return view
