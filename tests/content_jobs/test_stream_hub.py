"""The hub's publishing order through a channel layer (content_jobs.stream_hub): events of a
group go out in the order published, and a workers' wake-up goes before the events waiting."""
import threading

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
