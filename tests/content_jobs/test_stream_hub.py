"""The hub's channel-layer traffic (content_jobs.stream_hub): events of a group go out in the
order published, a workers' wake-up goes out beside them, and each wake-up (through Redis, as
at scale) wakes one sleeping worker of whichever process, never a busy one."""
import asyncio
import os
import threading
import time
import uuid

import pytest
import redis

from content_jobs.stream_hub import WAKE_CHANNEL, WAKE_TYPE, StreamHub
from content_jobs.wake_layer import WakeLayer


def test_events_go_out_in_order_and_a_wake_up_goes_out_beside_them_not_behind():
    hub = StreamHub()
    hub._local = False  # as with Redis: through the layer and the hub's thread
    loop = hub.start()
    sent: list[tuple[str, dict]] = []
    woken: list[tuple[str, dict]] = []
    done, first_sent, go_on = threading.Event(), threading.Event(), asyncio.Event()

    async def group_send(group, message):
        sent.append((group, message))
        first_sent.set()
        await go_on.wait()  # Redis is slow: the events wait behind the first
        if len(sent) == 3:
            done.set()

    class WakeLayer:
        capacity = 16

        async def send(self, channel, message):
            woken.append((channel, message))

    hub.layer.group_send = group_send
    hub.wake_layer = WakeLayer()
    hub.publish("job.a", {"type": "nexus.event", "id": 1})
    hub.publish_many("company.c", [{"type": "nexus.event", "id": 7}, {"type": "nexus.event", "id": 8}])
    assert first_sent.wait(5)
    hub.wake_workers()
    deadline = time.monotonic() + 5
    while not woken and time.monotonic() < deadline:
        time.sleep(0.01)
    assert woken == [(WAKE_CHANNEL, {"type": WAKE_TYPE})]
    assert len(sent) == 1  # the events still wait for the first one's send
    loop.call_soon_threadsafe(go_on.set)
    assert done.wait(5)
    assert sent == [
        ("job.a", {"type": "nexus.event", "id": 1}),
        ("company.c", {"type": "nexus.event", "id": 7}),
        ("company.c", {"type": "nexus.event", "id": 8}),
    ]
    loop.call_soon_threadsafe(loop.stop)


# Wake-ups through Redis: each one wakes one sleeping worker, of whichever process ---------------
def _redis_url() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url}")
    return url


class Process:
    """A process's hub with the wake-up layer of settings.CHANNEL_LAYERS["wake"], and its
    worker's wake(): it records the wake-ups it got."""

    def __init__(self, url: str, prefix: str):
        self.hub = StreamHub()
        self.hub._local = False
        self.loop = self.hub.start()
        self.hub.wake_layer = WakeLayer(hosts=[url], prefix=prefix, capacity=16, expiry=10)
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1

    def sleep(self) -> None:
        self.hub.worker_idle(self.wake)

    def work(self) -> None:
        self.hub.worker_busy(self.wake)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def processes():
    url, prefix = _redis_url(), f"test-wake-{uuid.uuid4().hex[:12]}:"
    made = [Process(url, prefix) for _ in range(3)]
    yield made
    for p in made:
        p.close()
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def settle(predicate, timeout=5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    time.sleep(0.3)  # and nothing more comes


def test_each_wake_up_wakes_one_sleeping_worker_and_a_busy_one_none(processes):
    a, b, c = processes
    for p in processes:
        p.sleep()
    time.sleep(0.3)  # their reads are under way
    a.hub.wake_workers()
    settle(lambda: a.woken + b.woken + c.woken >= 1)
    assert a.woken + b.woken + c.woken == 1  # one claim, where every worker used to try one
    first = next(p for p in processes if p.woken)

    # The woken worker runs the job; the other two take the next two wake-ups, one each.
    first.work()
    a.hub.wake_workers()
    a.hub.wake_workers()
    settle(lambda: sum(p.woken for p in processes) >= 3)
    assert sorted(p.woken for p in processes) == [1, 1, 1]

    # Everyone busy: a wake-up waits on the channel for the first worker that sleeps again.
    for p in processes:
        p.work()
    time.sleep(0.1)  # their reads are cancelled
    c.hub.wake_workers()
    time.sleep(0.3)
    assert [p.woken for p in processes] == [1, 1, 1]
    b.sleep()
    settle(lambda: b.woken == 2)
    assert [p.woken for p in processes] == [1, 2, 1]


def test_a_worker_that_starts_a_job_while_it_reads_leaves_the_next_wake_up_to_a_sleeping_one(processes):
    a, b, _ = processes
    a.sleep()
    time.sleep(0.3)  # a's read is under way
    a.work()  # a job found by its own poll: the read is cancelled
    time.sleep(0.1)
    b.sleep()
    time.sleep(0.3)
    for n in (1, 2, 3):
        a.hub.wake_workers()
        settle(lambda: b.woken >= n)
        b.sleep()  # its claim found the job taken or done: asleep again
    assert (a.woken, b.woken) == (0, 3)


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


def test_a_worker_asleep_longer_than_the_redis_clients_timeout_still_takes_its_wake_up_at_once(processes, caplog):
    a, _, _ = processes
    a.sleep()
    time.sleep(6.5)  # past redis-py's socket timeout (5 s), with no reply from Redis meanwhile
    sent = time.monotonic()
    a.hub.wake_workers()
    settle(lambda: a.woken == 1, timeout=2)
    assert time.monotonic() - sent < 0.6  # its read was under way, not starting over after a failure
    assert "could not read wake-ups" not in caplog.text


def test_a_burst_of_submissions_wakes_every_sleeping_worker_and_no_wake_up_fails(processes, caplog):
    a, b, c = processes
    for p in processes:
        p.sleep()
    time.sleep(0.3)
    for _ in range(200):  # 200 submissions at once in one web process
        a.hub.wake_workers()
    settle(lambda: all(p.woken for p in processes))
    assert [p.woken for p in processes] == [1, 1, 1]
    assert "could not wake a worker" not in caplog.text


# The wake-up layer's send: the library's send to a general channel, in one round trip ----------
@pytest.fixture
def wake_layer():
    url, prefix = _redis_url(), f"test-send-{uuid.uuid4().hex[:12]}:"
    layer = WakeLayer(hosts=[url], prefix=prefix, capacity=3, expiry=10)
    client = redis.Redis.from_url(url)
    yield layer, client, prefix + WAKE_CHANNEL
    asyncio.run(layer.flush())
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def test_a_wake_up_send_is_read_by_the_librarys_receive_in_order_and_full_at_capacity(wake_layer):
    from channels.exceptions import ChannelFull

    layer, client, key = wake_layer

    async def scenario():
        for n in range(3):
            await layer.send(WAKE_CHANNEL, {"type": WAKE_TYPE, "n": n})
        with pytest.raises(ChannelFull):
            await layer.send(WAKE_CHANNEL, {"type": WAKE_TYPE, "n": 3})
        assert client.zcard(key) == 3  # the refused one was not added
        assert 0 < client.ttl(key) <= 10
        got = [await layer.receive(WAKE_CHANNEL) for _ in range(3)]
        await layer.send(WAKE_CHANNEL, {"type": WAKE_TYPE, "n": 4})  # room again
        got.append(await layer.receive(WAKE_CHANNEL))
        return got

    assert asyncio.run(scenario()) == [{"type": WAKE_TYPE, "n": n} for n in (0, 1, 2, 4)]


def test_a_wake_up_send_drops_messages_past_the_expiry_first(wake_layer):
    layer, client, key = wake_layer
    client.zadd(key, {b"stale-1": time.time() - 60, b"stale-2": time.time() - 30})  # older than 10 s

    async def scenario():
        await layer.send(WAKE_CHANNEL, {"type": WAKE_TYPE, "n": 0})  # would be full with them
        await layer.send(WAKE_CHANNEL, {"type": WAKE_TYPE, "n": 1})
        return client.zcard(key), await layer.receive(WAKE_CHANNEL)

    assert asyncio.run(scenario()) == (2, {"type": WAKE_TYPE, "n": 0})


def test_a_wake_up_read_is_one_round_trip_and_keeps_no_backup(wake_layer, monkeypatch):
    """The library's read pops the message, then adds it to a backup set before returning it
    (and takes it out after); the wake-up channel's read returns what it popped."""
    import redis.asyncio

    layer, client, key = wake_layer
    sent = []
    execute = redis.asyncio.Redis.execute_command

    async def recording(self, *args, **options):
        sent.append(args[0].upper() if isinstance(args[0], str) else args[0])
        return await execute(self, *args, **options)

    async def scenario():
        await layer.send(WAKE_CHANNEL, {"type": WAKE_TYPE, "n": 0})
        monkeypatch.setattr(redis.asyncio.Redis, "execute_command", recording)
        got = await layer.receive(WAKE_CHANNEL)
        await asyncio.sleep(0.1)  # any cleaning the read left behind it
        monkeypatch.undo()
        return got

    assert asyncio.run(scenario()) == {"type": WAKE_TYPE, "n": 0}
    assert sent == ["BZPOPMIN"]
    assert client.keys(key + "*") == []  # the message is gone, and no backup of it is left


def test_a_wake_up_read_cancelled_while_it_waits_loses_nothing_sent_after(wake_layer):
    layer, client, key = wake_layer

    async def scenario():
        reading = asyncio.ensure_future(layer.receive(WAKE_CHANNEL))
        await asyncio.sleep(0.2)  # blocked in Redis
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await layer.send(WAKE_CHANNEL, {"type": WAKE_TYPE, "n": 1})
        return await asyncio.wait_for(layer.receive(WAKE_CHANNEL), 5)

    assert asyncio.run(scenario()) == {"type": WAKE_TYPE, "n": 1}
