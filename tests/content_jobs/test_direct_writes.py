"""The fan-out's direct writes to a waiting stream (content_jobs.sse.Stream.take_direct and
send_direct, content_jobs.fanout), in-process: which events it takes, one write per burst, and
what a failed write leaves to the stream's own path. Over real HTTP, against Django's bytes:
tests/content_jobs/test_job_stream.py."""
import pytest
from django_eventstream.event import Event
from django_eventstream.views import Listener

from content_jobs.fanout import FanoutManager
from content_jobs.sse import COUNTERS, Source, Stream


class Channel(Source):
    kind = "test"

    def __init__(self, cursor: int):
        super().__init__(cursor)
        self.channel = "job-x"
        self.listen = {self.channel}

    def passes(self, event) -> bool:
        return event.type != "end"


def waiting_stream(write, cursor: int = 4) -> Stream:
    """A Stream as the body leaves it while it waits, armed with `write`, without a server."""
    stream = Stream.__new__(Stream)
    stream.source = Channel(cursor)
    stream.manager = FanoutManager(10)
    stream.listener = Listener()
    stream.last_sent = 0.0
    stream.outbox = []
    stream.arm(write)
    stream.waiting = True
    return stream


def event(event_id: int, kind: str = "step") -> Event:
    return Event("job-x", kind, f'{{"n": {event_id}}}', id=event_id)


def test_a_burst_of_next_events_leaves_in_one_write_and_the_rest_is_left_to_the_body():
    written = []
    stream = waiting_stream(written.append)
    assert stream.take_direct("job-x", event(5)) and stream.take_direct("job-x", event(6))
    assert not stream.take_direct("job-x", event(8))  # a gap: the body reads storage
    assert not stream.take_direct("job-y", event(7))  # another channel
    assert not stream.take_direct("job-x", event(7, "end"))  # ends the stream: the body's
    before = COUNTERS.direct_writes
    stream.send_direct()
    assert written == [b'event: step\nid: 5\ndata: {"n": 5}\n\nevent: step\nid: 6\ndata: {"n": 6}\n\n']
    assert stream.source.cursor == 6 and COUNTERS.direct_writes == before + 1
    stream.send_direct()  # nothing left: no write
    assert len(written) == 1
    stream.waiting = False  # the body is busy: it keeps the order
    assert not stream.take_direct("job-x", event(7))


def test_a_failed_write_leaves_those_events_to_the_stream_which_reads_them_from_storage():
    def broken(data: bytes) -> None:
        raise OSError("gone")

    stream = waiting_stream(broken)
    assert stream.take_direct("job-x", event(5)) and stream.take_direct("job-x", event(6))
    stream.send_direct()
    assert stream.source.cursor == 4  # as if 5 and 6 had never been taken
    assert stream.listener.overflow and stream.listener.aevent.is_set()  # woken() reads storage
    assert stream.write is None and stream.listener.direct is None
    assert not stream.take_direct("job-x", event(5))


def test_the_fan_out_writes_each_armed_stream_once_per_loop_turn():
    import asyncio

    async def scenario():
        written: dict[str, list[bytes]] = {"a": [], "b": []}
        manager = FanoutManager(10)
        streams = {}
        for name in written:
            stream = waiting_stream(written[name].append)
            stream.manager = manager
            stream.listener.channels = {"job-x"}
            stream.listener.assign_loop()
            streams[name] = stream
        queued = Listener()  # a stream that is not armed: queued and woken as before
        queued.channels = {"job-x"}
        queued.assign_loop()
        listeners = [s.listener for s in streams.values()] + [queued]
        manager._enqueue("job-x", event(5), listeners)
        manager._enqueue("job-x", event(6), listeners)
        assert written == {"a": [], "b": []}  # not yet: the events that came together go together
        await asyncio.sleep(0)
        assert [len(w) for w in written.values()] == [1, 1]
        assert written["a"][0].count(b"\n\n") == 2
        assert [e.id for e in queued.channel_items["job-x"]] == [5, 6] and queued.aevent.is_set()

    asyncio.run(scenario())


@pytest.mark.parametrize("together", [False, True], ids=["one-call-each", "one-call-for-the-chunk"])
def test_events_published_from_another_thread_in_a_burst_reach_the_loop_in_one_hand_off_in_order(together):
    import asyncio
    import threading

    async def scenario():
        loop = asyncio.get_running_loop()
        handoffs = []
        real = loop.call_soon_threadsafe

        def counting(callback, *args, **kwargs):
            if getattr(callback, "__func__", None) is FanoutManager._take:
                handoffs.append(args)
            return real(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting
        written: list[bytes] = []
        manager = FanoutManager(100)
        stream = waiting_stream(written.append)
        stream.manager = manager
        stream.listener.channels = {"job-x"}
        stream.listener.assign_loop()
        queued = Listener()
        queued.channels = {"job-x"}
        queued.assign_loop()
        for listener in (stream.listener, queued):
            manager.add_listener(listener)

        def publish(first: int, last: int) -> None:  # the hub's thread, a chunk of lines stored at once
            if together:  # as the hub's publish_many hands a chunk over
                manager.add_many_to_queues("job-x", [event(event_id) for event_id in range(first, last + 1)])
                return
            for event_id in range(first, last + 1):
                manager.add_to_queues("job-x", event(event_id))

        # While the loop is busy (this coroutine does not yield), a chunk of 50 events arrives.
        thread = threading.Thread(target=publish, args=(5, 54))
        thread.start()
        thread.join()
        assert len(handoffs) == 1  # the first event scheduled the hand-off; the other 49 joined it
        await asyncio.sleep(0.01)
        assert len(written) == 1 and written[0].count(b"\n\n") == 50  # one write for the chunk
        assert [e.id for e in queued.channel_items["job-x"]] == list(range(5, 55))
        # The next event, once the loop has taken the list, schedules a hand-off of its own.
        await asyncio.to_thread(publish, 55, 55)
        await asyncio.sleep(0.01)
        assert len(handoffs) == 2 and written[1] == b'event: step\nid: 55\ndata: {"n": 55}\n\n'
        assert [e.id for e in queued.channel_items["job-x"]][-1] == 55

    asyncio.run(scenario())
