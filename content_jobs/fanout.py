"""Hands each event the hub hears to the streams of this process that listen to its channel.

A subclass of django-eventstream's ListenerManager (its listeners, its lock, its per-channel
queues) that does the fan-out in two steps instead of one wake-up per listener:
- on the hub's thread, the listeners of the event's channel are grouped by the event loop they
  run on, and the event goes into that loop's hand-off list; only the event that finds the list
  empty costs a `call_soon_threadsafe` (a write to the loop's self-pipe), and the loop takes
  every event listed by then in one callback, in order (stock django-eventstream makes one
  cross-thread wake-up per listener and event; a chunk of 50 lines stored at once made 50 here);
- on that loop, the event is queued for each listener and its asyncio event set: a plain
  in-loop call.
A stream served straight over ASGI under daphne is armed for direct writes (Stream.arm): while
it waits with nothing pending and the event is its next one, the frame (encoded once) goes into
the stream's outbox right here, with no wake-up of its task at all, and one callback on the loop
then writes every outbox filled since: the events that reached the loop together (a burst) go
out in one write per stream, a lone event at once.
A listener may hold NEXUS_SSE_QUEUE_EVENTS events (stock: 10); past that it is marked
`overflow` and its stream reads the missed events from storage.
"""
import asyncio
import threading
from collections import defaultdict

from django.conf import settings
from django_eventstream import views as eventstream_views
from django_eventstream.views import ListenerManager


class FanoutManager(ListenerManager):
    def __init__(self, max_pending: int):
        super().__init__()
        self.max_pending = max_pending
        self.outboxes: dict = {}  # per event loop: the armed streams with something to send
        self.handoffs: dict = {}  # per event loop: (channel, event, listeners) it has yet to take
        self.handoff_lock = threading.Lock()

    def add_to_queues(self, channel, event):
        self.add_many_to_queues(channel, [event])

    def add_many_to_queues(self, channel, events) -> None:
        """`add_to_queues` for several events of one channel, in order: one hand-off per loop."""
        with self.lock:
            listeners = self.listeners_by_channel.get(channel)
            if not listeners:
                return
            by_loop = defaultdict(list)
            for listener in listeners:
                by_loop[listener.loop].append(listener)
        for loop, group in by_loop.items():
            with self.handoff_lock:
                pending = self.handoffs.get(loop)
                first = pending is None
                if first:
                    pending = self.handoffs[loop] = []
                pending.extend((channel, event, group) for event in events)
            if first:
                try:
                    loop.call_soon_threadsafe(self._take, loop)
                except RuntimeError:  # that loop is closed: its streams are gone
                    with self.handoff_lock:
                        self.handoffs.pop(loop, None)

    def _take(self, loop) -> None:
        with self.handoff_lock:
            pending = self.handoffs.pop(loop, ())
        for channel, event, listeners in pending:
            self._enqueue(channel, event, listeners)

    def _enqueue(self, channel, event, listeners) -> None:
        limit = self.max_pending
        outbox = None
        with self.lock:
            for listener in listeners:
                stream = getattr(listener, "direct", None)
                if (stream is not None and not listener.channel_items and not listener.overflow
                        and stream.take_direct(channel, event)):
                    if outbox is None:
                        outbox = self._outbox()
                    outbox.add(stream)
                    continue
                items = listener.channel_items.get(channel)
                if items is None:
                    listener.channel_items[channel] = [event]
                elif len(items) < limit:
                    items.append(event)
                else:
                    listener.overflow = True
                listener.aevent.set()

    def _outbox(self) -> set:
        """This loop's set of streams to write, with a `_send` scheduled for it."""
        loop = asyncio.get_running_loop()
        outbox = self.outboxes.get(loop)
        if outbox is None:
            outbox = self.outboxes[loop] = set()
            loop.call_soon(self._send, loop)
        return outbox

    def _send(self, loop) -> None:
        for stream in self.outboxes.pop(loop):
            stream.send_direct()


def install() -> FanoutManager:
    """Make this the process's listener manager (django-eventstream's get_listener_manager)."""
    manager = eventstream_views.listener_manager
    if not isinstance(manager, FanoutManager):
        manager = eventstream_views.listener_manager = FanoutManager(settings.NEXUS_SSE_QUEUE_EVENTS)
    return manager
