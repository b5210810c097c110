"""The hub's publishing order through a channel layer (content_jobs.stream_hub): events of a
group go out in the order published, and a workers' wake-up goes before the events waiting."""
import threading
import time

from content_jobs.stream_hub import WAKE_TYPE, WORKERS_GROUP, StreamHub


def test_a_wake_up_goes_out_before_the_events_waiting_and_events_keep_their_order():
    hub = StreamHub()
    hub._local = False  # as with Redis: through the layer and the hub's thread
    loop = hub.start()
    sent: list[tuple[str, dict]] = []
    done = threading.Event()

    async def group_send(group, message):
        sent.append((group, message))
        if len(sent) == 4:
            done.set()

    hub.layer.group_send = group_send
    held, release = threading.Event(), threading.Event()

    def hold():  # the hub's loop is busy while a submission commits
        held.set()
        release.wait(5)

    loop.call_soon_threadsafe(hold)
    assert held.wait(5)
    hub.publish("job.a", {"type": "nexus.event", "id": 1})
    hub.publish_many("company.c", [{"type": "nexus.event", "id": 7}, {"type": "nexus.event", "id": 8}])
    hub.wake_workers()
    release.set()
    assert done.wait(5)
    assert sent == [
        (WORKERS_GROUP, {"type": WAKE_TYPE}),
        ("job.a", {"type": "nexus.event", "id": 1}),
        ("company.c", {"type": "nexus.event", "id": 7}),
        ("company.c", {"type": "nexus.event", "id": 8}),
    ]
    loop.call_soon_threadsafe(loop.stop)


def test_subscribers_of_a_joined_group_leave_without_a_trip_to_the_hubs_thread_and_the_last_one_leaves_the_group():
    hub = StreamHub()
    hub._local = False
    loop = hub.start()
    joins, leaves = [], []

    async def group_add(group, channel):
        joins.append(group)

    async def group_discard(group, channel):
        leaves.append(group)

    hub.layer.group_add, hub.layer.group_discard = group_add, group_discard
    first = hub.subscribe("job.a")
    first.result(5)
    others = [hub.subscribe("job.a") for _ in range(3)]  # joined already: no trip either
    assert hub.stats() == {"groups": 1, "subscribers": 4}
    held, release = threading.Event(), threading.Event()

    def hold():  # the hub's thread is busy: a trip there would wait
        held.set()
        release.wait(5)

    loop.call_soon_threadsafe(hold)
    assert held.wait(5)
    for joining in others:
        hub.release("job.a", joining)
    assert hub.stats() == {"groups": 1, "subscribers": 1}  # counted out at once, in this thread
    hub.release("job.a", first)
    assert hub.stats() == {"groups": 0, "subscribers": 0}
    assert leaves == []  # the layer is left from the hub's thread, once it is free
    release.set()
    deadline = time.monotonic() + 5
    while not leaves and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (joins, leaves) == (["job.a"], ["job.a"])
    loop.call_soon_threadsafe(loop.stop)
