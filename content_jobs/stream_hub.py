"""The bridge between the Channels channel layer and django-eventstream's listeners.

Publishing (any thread, any process): `publish(group, message)` hands the message to one
coroutine that sends it into the channel layer in order. In a web process that coroutine runs
on the server's event loop; in a process without one (a separate worker) it runs on a loop
thread of its own, which is only started when the layer can leave the process (Redis).

Receiving (web processes): the first stream of a group makes this process's hub channel join
that group, the last one to leave makes it part; one reader coroutine takes every message of
the hub channel and hands it to django-eventstream's ListenerManager, which wakes the
listeners of that event channel. So a process hears only about the jobs its clients watch, and
one message from the layer reaches any number of local subscribers.
"""
import asyncio
import logging
import threading
from collections import defaultdict

from channels.layers import get_channel_layer
from django.conf import settings
from django_eventstream.event import Event
from django_eventstream.views import get_listener_manager

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "nexus.event"


class StreamHub:
    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.layer = None
        self.channel_name: str | None = None
        self._subscribers: dict[str, int] = defaultdict(int)
        self._joined: dict[str, asyncio.Future] = {}
        self._outbox: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []
        self._lock = threading.Lock()
        self._own_loop_thread: threading.Thread | None = None
        self.published = 0
        self.delivered = 0

    # Lifecycle --------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the hub on `loop` (the server's); called from a coroutine on that loop."""
        with self._lock:
            if self.loop is not None:
                return
            self.loop = loop
            self.layer = get_channel_layer()
            self._outbox = asyncio.Queue()
            self._tasks.append(loop.create_task(self._send_loop()))

    def _start_own_loop(self) -> None:
        """A loop thread for a process that publishes but serves no streams."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(loop)
            loop.call_soon(lambda: (self.attach(loop), ready.set()))
            loop.run_forever()

        self._own_loop_thread = threading.Thread(target=run, name="nexus-stream-publisher", daemon=True)
        self._own_loop_thread.start()
        ready.wait(10)

    async def _send_loop(self) -> None:
        while True:
            group, message = await self._outbox.get()
            try:
                await self.layer.group_send(group, message)
                self.published += 1
            except Exception:
                # The stored event is not lost: streams find the gap and read it from storage.
                logger.exception("could not publish to %s", group)

    # Publishing -------------------------------------------------------------------------
    def publish(self, group: str, message: dict) -> None:
        """Send `message` to `group` through the channel layer, in order, from any thread."""
        if self.loop is None:
            if not settings.REDIS_URL:
                # In-memory layer and no stream served here yet: nobody could hear it.
                return
            with self._lock:
                needs_loop = self._own_loop_thread is None and self.loop is None
            if needs_loop:
                self._start_own_loop()
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._outbox.put_nowait, (group, message))

    # Subscribing ------------------------------------------------------------------------
    async def subscribe(self, group: str) -> None:
        """Make sure this process hears `group`; returns once the layer has joined it."""
        self.attach(asyncio.get_running_loop())
        await self._ensure_reader()
        self._subscribers[group] += 1
        try:
            joined = self._joined.get(group)
            if joined is None:
                joined = self._joined[group] = asyncio.ensure_future(self.layer.group_add(group, self.channel_name))
            await asyncio.shield(joined)
        except BaseException:
            self.release(group)
            raise

    def release(self, group: str) -> None:
        """One stream of `group` ended; the last one to end makes the process leave the group.

        Synchronous, so that it also runs in a stream cancelled by its client's disconnect.
        """
        self._subscribers[group] -= 1
        if self._subscribers[group] > 0:
            return
        del self._subscribers[group]
        joined = self._joined.pop(group, None)
        if joined is not None and self.loop is not None:
            self.loop.create_task(self._leave(group, joined))

    async def _leave(self, group: str, joined: asyncio.Future) -> None:
        try:
            await joined
            if group not in self._subscribers:
                await self.layer.group_discard(group, self.channel_name)
        except Exception:
            logger.warning("could not leave group %s", group, exc_info=True)

    async def _ensure_reader(self) -> None:
        if self.channel_name is None:
            self.channel_name = await self.layer.new_channel("nexus-hub.")
            self._tasks.append(asyncio.get_running_loop().create_task(self._read_loop()))

    async def _read_loop(self) -> None:
        manager = get_listener_manager()
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
            if message.get("type") != MESSAGE_TYPE:
                continue
            event = Event(message["channel"], message["event"], message["data"], id=message["id"])
            manager.add_to_queues(message["channel"], event)
            self.delivered += 1

    async def _rejoin(self) -> None:
        """After a layer outage, join every group again (a restarted Redis forgot them)."""
        for group in list(self._subscribers):
            try:
                await self.layer.group_add(group, self.channel_name)
            except Exception:
                logger.warning("could not rejoin %s", group, exc_info=True)
                return

    def stats(self) -> dict:
        return {"groups": len(self._subscribers), "subscribers": sum(self._subscribers.values())}


hub = StreamHub()
