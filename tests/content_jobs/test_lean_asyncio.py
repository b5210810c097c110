"""LeanEvent and LeanQueue (content_jobs.lean_asyncio) behave as asyncio's Event and Queue,
on lists; daphne's server makes a LeanQueue for each connection once transport is installed."""
import asyncio

import pytest

from content_jobs.lean_asyncio import LeanEvent, LeanQueue


def run(coro):
    return asyncio.run(coro)


def test_an_event_wakes_every_waiter_and_forgets_cancelled_ones():
    async def main():
        event = LeanEvent()
        woken = []

        async def waiter(name):
            await event.wait()
            woken.append(name)

        tasks = [asyncio.create_task(waiter(n)) for n in ("a", "b", "c")]
        await asyncio.sleep(0)
        tasks[1].cancel()
        await asyncio.sleep(0)
        assert len(event._waiters) == 2  # the cancelled waiter is gone
        event.set()
        await asyncio.gather(tasks[0], tasks[2])
        assert woken == ["a", "c"] and not event._waiters
        assert await event.wait() is True  # set: no wait
        event.clear()
        assert not event.is_set()

    run(main())


def test_a_queue_hands_items_in_order_to_getters_in_order():
    async def main():
        queue = LeanQueue()
        got = []

        async def getter(name):
            got.append((name, await queue.get()))

        tasks = [asyncio.create_task(getter(n)) for n in ("first", "second")]
        await asyncio.sleep(0)
        queue.put_nowait({"type": "http.request"})
        queue.put_nowait({"type": "http.disconnect"})
        await asyncio.gather(*tasks)
        assert got == [("first", {"type": "http.request"}), ("second", {"type": "http.disconnect"})]
        queue.put_nowait(1)
        queue.put_nowait(2)
        assert queue.qsize() == 2 and [queue.get_nowait(), queue.get_nowait()] == [1, 2]
        with pytest.raises(asyncio.QueueEmpty):
            queue.get_nowait()

    run(main())


def test_a_cancelled_getter_takes_nothing_and_the_next_one_gets_the_item():
    async def main():
        queue = LeanQueue()
        first = asyncio.create_task(queue.get())
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        queue.put_nowait("message")
        assert await second == "message"
        assert first.cancelled() and queue.empty() and not queue._getters

    run(main())


def test_a_bounded_queue_makes_a_putter_wait_until_a_get_and_join_waits_for_task_done():
    async def main():
        queue = LeanQueue(maxsize=1)
        await queue.put("a")
        putter = asyncio.create_task(queue.put("b"))
        await asyncio.sleep(0)
        assert not putter.done() and queue.full()
        assert await queue.get() == "a"
        await putter
        assert await queue.get() == "b"
        joined = asyncio.create_task(queue.join())
        await asyncio.sleep(0)
        assert not joined.done()
        queue.task_done()
        queue.task_done()
        await asyncio.wait_for(joined, 1)

    run(main())


def test_daphne_makes_a_lean_queue_for_each_connection_once_transport_is_installed():
    import daphne.server

    from nexus_site import transport

    transport.install()
    assert daphne.server.asyncio.Queue is LeanQueue
    # Everything else daphne's server uses is asyncio's own.
    for name in ("CancelledError", "ensure_future", "gather", "get_event_loop", "new_event_loop", "set_event_loop"):
        assert getattr(daphne.server.asyncio, name) is getattr(asyncio, name)
