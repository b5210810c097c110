"""The bridge between the Channels channel layer and django-eventstream's listeners.

All of a process's channel-layer traffic runs on one event loop thread of the hub's own, so
one layer instance (one Redis connection at scale, and one more for the workers' wake-ups)
serves every stream, publisher and worker of the process, whatever thread or loop they run on.

Publishing (any thread): `publish(group, message)` queues the message; one coroutine sends the
queue into the layer in order (the layer sends one message at a time, a round trip to Redis
each). Every event is stored before it is published, so a message the layer loses (an outage)
is read from storage by the streams that notice the gap. A workers' wake-up goes beside the
events, not behind them (below): a submission's wake-up once came after its two events (the
job's and the company's), a round trip later each, and the job's start waited for it; it
orders nothing, and a stream that hears of the start before the submission reads the missing
event from storage.

Receiving: the first stream of a group makes the hub's channel join that group, the last one
to leave makes it part; one reader takes every message of the hub's channel and hands it to
django-eventstream's ListenerManager, which wakes the listeners of that event channel (it is
thread-safe and wakes each listener on its own loop). So a process hears only about the jobs
its clients watch, and one layer message reaches any number of local subscribers.

Embedded default (the in-memory layer, which only this process hears): `publish` hands the
message to the listener manager at once, from the publishing thread; the layer is not used.

Workers: a submission in any process wakes one idle worker, not all of them. The wake-up is a
message on one channel (`nexus.wake`) of a second layer, channels_redis's list-based
RedisChannelLayer (settings.CHANNEL_LAYERS["wake"]), whose channels hand each message to one of
their readers. A process reads that channel only while one of its workers sleeps:
`worker_idle(wake)` starts the read, `worker_busy(wake)` (a job started) stops it, so a busy
worker never takes a wake-up an idle one should have had; a wake-up taken calls the `wake` of
one sleeping worker. A wake-up that no worker reads (all busy) waits on the channel, up to its
capacity, and costs one claim that finds nothing when a worker is free again. When every worker
heard every submission, each wake-up made every idle worker try a claim and all but one find
nothing, and every busy one run another batch after its job.
"""
import asyncio
import concurrent.futures
import logging
import threading
from collections import defaultdict
from collections.abc import Callable

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django_eventstream.event import Event
from django_eventstream.views import get_listener_manager

from .events import MESSAGE_TYPE
from .metrics import EVENTS_DELIVERED, EVENTS_PUBLISHED

logger = logging.getLogger(__name__)

WAKE_TYPE = "nexus.wake"
WAKE_CHANNEL = "nexus.wake"  # on the layer settings.CHANNEL_LAYERS[WAKE_LAYER]
WAKE_LAYER = "wake"


# The answer of subscribe() when the group is joined already: one shared done future, not one
# (with its lock and condition) per idle subscriber.
JOINED: concurrent.futures.Future = concurrent.futures.Future()
JOINED.set_result(None)


def _succeeded(future: asyncio.Future | concurrent.futures.Future) -> bool:
    """A join that is over and went through (not cancelled, no error)."""
    return future.done() and not future.cancelled() and future.exception() is None


class StreamHub:
    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.layer = None
        self.channel_name: str | None = None
        self._subscribers: dict[str, int] = defaultdict(int)
        self._joined: dict[str, asyncio.Future] = {}
        self._outbox: asyncio.Queue | None = None  # (group, message)
        self.wake_layer = None
        self._sleepers: list[Callable[[], object]] = []  # wake() of this process's sleeping workers
        self._idle: asyncio.Event | None = None  # set while there are sleepers: read wake-ups
        self._reading: asyncio.Future | None = None  # the wake-up read under way
        self._wake_reader: asyncio.Task | None = None
        self._wakes_due = 0  # wake-ups to send
        self._waker: asyncio.Task | None = None  # the one task sending them
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready: asyncio.Future | None = None
        self.published = 0
        self.delivered = 0
        self._local: bool | None = None

    # The hub's loop ---------------------------------------------------------------------
    def start(self) -> asyncio.AbstractEventLoop:
        """Start the hub's loop thread once; returns the loop."""
        with self._lock:
            if self.loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def run():
                    asyncio.set_event_loop(loop)
                    self._outbox = asyncio.Queue()
                    self._idle = asyncio.Event()
                    self.layer = get_channel_layer()
                    if WAKE_LAYER in settings.CHANNEL_LAYERS:
                        self.wake_layer = get_channel_layer(WAKE_LAYER)
                    self._ready = loop.create_task(self._prepare())
                    loop.create_task(self._send_loop())
                    started.set()
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="nexus-stream-hub", daemon=True)
                self._thread.start()
                started.wait(10)
                self.loop = loop
        return self.loop

    async def _prepare(self) -> None:

        self.channel_name = await self.layer.new_channel("nexus-hub.")
        asyncio.get_running_loop().create_task(self._read_loop())

    async def _send_loop(self) -> None:
        while True:
            group, message = await self._outbox.get()
            try:
                await self.layer.group_send(group, message)
                self.published += 1
                EVENTS_PUBLISHED.inc()
            except Exception:
                # The event is stored: streams find the gap and read it from storage.
                logger.warning("could not publish to %s", group, exc_info=True)

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("channel layer receive failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                await self._rejoin()
                continue
            self._hear(message)

    def _hear(self, message: dict) -> None:
        """A message for this process's streams."""
        if message.get("type") == MESSAGE_TYPE:
            self._deliver(message["channel"], [message])

    def _deliver(self, channel: str, messages: list[dict]) -> None:
        """Stream events of one channel, in order, to this process's listeners of it."""
        events = [Event(channel, m["event"], m["data"], id=m["id"]) for m in messages]
        get_listener_manager().add_many_to_queues(channel, events)
        self.delivered += len(events)
        EVENTS_DELIVERED.inc(len(events))

    async def _rejoin(self) -> None:
        """After a layer outage, join every group again (a restarted Redis forgot them)."""
        with self._lock:
            groups = list(self._subscribers)
        for group in groups:
            try:
                await self.layer.group_add(group, self.channel_name)
            except Exception:
                logger.warning("could not rejoin %s", group, exc_info=True)
                return

    # Publishing -------------------------------------------------------------------------
    @property
    def local(self) -> bool:
        """The layer is this process's own (the embedded default's in-memory layer): a message
        is handed to the listeners at once, from the publishing thread, rather than through the
        layer and the hub's thread (the same listeners hear it, two thread hand-offs sooner)."""
        if self._local is None:
            self._local = settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
        return self._local

    def publish(self, group: str, message: dict) -> None:
        """Send `message` to `group` through the channel layer, in order, from any thread."""
        if self.local:
            self.published += 1
            EVENTS_PUBLISHED.inc()
            self._hear(message)
            return
        loop = self.start()
        loop.call_soon_threadsafe(self._outbox.put_nowait, (group, message))

    def publish_many(self, group: str, messages: list[dict]) -> None:
        """`publish` for stream events of one channel, in order (a chunk of a job's log lines):
        here, its listeners take them in one hand-off; through the layer, one message each."""
        if not messages:
            return
        if not self.local:
            loop = self.start()
            loop.call_soon_threadsafe(self._put_many, group, messages)
            return
        self.published += len(messages)
        EVENTS_PUBLISHED.inc(len(messages))
        self._deliver(messages[0]["channel"], messages)

    def _put_many(self, group: str, messages: list[dict]) -> None:
        for message in messages:
            self._outbox.put_nowait((group, message))

    # Waking workers -----------------------------------------------------------------------
    def wake_workers(self) -> None:
        """Wake one idle worker of any process. Sent beside the events, not behind them: a
        submission's wake-up went out while its events waited, and the job's start waits for
        it."""
        self.start().call_soon_threadsafe(self._send_wake)

    def _send_wake(self) -> None:
        # One sender, one wake-up at a time: a burst of submissions sent as many at once took
        # as many Redis connections, past the client's pool, and those wake-ups failed. More
        # than the channel holds is pointless: they would be refused.
        self._wakes_due = min(self._wakes_due + 1, self.wake_layer.capacity)
        if self._waker is None or self._waker.done():
            self._waker = asyncio.ensure_future(self._send_wakes())

    async def _send_wakes(self) -> None:
        await self._ready
        while self._wakes_due:
            self._wakes_due -= 1
            await self._wake_one()

    async def _wake_one(self) -> None:
        try:
            await self.wake_layer.send(WAKE_CHANNEL, {"type": WAKE_TYPE})
        except ChannelFull:
            pass  # wake-ups enough wait already: every worker is busy, and each claims again when free
        except Exception:
            # A worker looks for tasks every NEXUS_WORKER_POLL_SECONDS anyway.
            logger.warning("could not wake a worker", exc_info=True)

    def worker_idle(self, wake: Callable[[], object]) -> None:
        """A worker of this process sleeps: take a wake-up for it, and call `wake` (on the
        hub's thread) when one comes. From any thread."""
        with self._lock:
            if wake in self._sleepers:
                return
            self._sleepers.append(wake)
        self.start().call_soon_threadsafe(self._sleepers_changed)

    def worker_busy(self, wake: Callable[[], object]) -> None:
        """That worker runs a job (or stops): leave the wake-ups to the idle ones. From any
        thread; a job started by a wake-up it took costs no trip to the hub's thread."""
        with self._lock:
            if wake not in self._sleepers:
                return
            self._sleepers.remove(wake)
        self.start().call_soon_threadsafe(self._sleepers_changed)

    def _sleepers_changed(self) -> None:
        if self._sleepers:
            self._idle.set()
            if self._wake_reader is None:
                self._wake_reader = self.loop.create_task(self._read_wakes())
            return
        self._idle.clear()
        if self._reading is not None:
            # A read that has taken a wake-up is done already (WakeLayer's read awaits nothing
            # after its pop), and _read_wakes passes that wake-up on; one still waiting in Redis
            # has taken none.
            self._reading.cancel()

    async def _read_wakes(self) -> None:
        await self._ready
        while True:
            await self._idle.wait()
            reading = self._reading = asyncio.ensure_future(self.wake_layer.receive(WAKE_CHANNEL))
            await asyncio.wait([reading])
            self._reading = None
            if reading.cancelled():
                continue
            if reading.exception() is not None:
                logger.warning("could not read wake-ups; retrying", exc_info=reading.exception())
                await asyncio.sleep(0.5)
                continue
            with self._lock:
                wake = self._sleepers.pop(0) if self._sleepers else None
                if not self._sleepers:
                    self._idle.clear()
            if wake is None:
                self._send_wake()  # every worker here got busy meanwhile: pass it on
            else:
                wake()

    # Subscribing ------------------------------------------------------------------------
    def subscribe(self, group: str) -> concurrent.futures.Future:
        """Make this process hear `group`. The returned future is done once the layer joined
        it; pass it to release() when the subscriber is gone, whatever became of it."""
        loop = self.start()
        with self._lock:
            joined = self._joined.get(group)
            if joined is not None and _succeeded(joined):
                # Joined already (another subscriber of the process): no trip to the hub's thread.
                self._subscribers[group] += 1
                return JOINED
        return asyncio.run_coroutine_threadsafe(self._join(group), loop)

    def release(self, group: str, joining: concurrent.futures.Future) -> None:
        """One subscriber of `group` is gone; the last one makes the process leave the group.

        Synchronous, so that it runs even in a stream cancelled by its client's disconnect. A
        subscriber whose join is done (most: they found the group joined) is counted out here,
        with no trip to the hub's thread (10,000 clients leaving at once made 10,000 trips).
        """
        if _succeeded(joining):
            self._release(group)
            return
        asyncio.run_coroutine_threadsafe(self._release_after(group, joining), self.start())

    async def _release_after(self, group: str, joining: concurrent.futures.Future) -> None:
        try:
            await asyncio.wrap_future(joining)
        except BaseException:
            return  # the join failed or was cancelled, and undid itself
        self._release(group)

    async def _join(self, group: str) -> None:
        await self._ready
        with self._lock:  # the counts are also changed by subscribe(), on other threads
            self._subscribers[group] += 1
            joined = self._joined.get(group)
            if joined is None:
                joined = self._joined[group] = asyncio.ensure_future(self.layer.group_add(group, self.channel_name))
        try:
            await asyncio.shield(joined)
        except BaseException:
            self._release(group)
            raise

    def _release(self, group: str) -> None:
        with self._lock:
            self._subscribers[group] -= 1
            if self._subscribers[group] > 0:
                return
            del self._subscribers[group]
            joined = self._joined.pop(group, None)
        if joined is not None:  # from any thread
            asyncio.run_coroutine_threadsafe(self._leave(group, joined), self.loop)

    async def _leave(self, group: str, joined: asyncio.Future) -> None:
        try:
            await joined
            if group not in self._subscribers:
                await self.layer.group_discard(group, self.channel_name)
        except Exception:
            logger.warning("could not leave group %s", group, exc_info=True)

    def stats(self) -> dict:
        """Groups joined for streams, and their subscribers."""
        with self._lock:
            return {"groups": len(self._subscribers), "subscribers": sum(self._subscribers.values())}


hub = StreamHub()
