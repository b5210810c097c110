"""asyncio's Event and Queue, holding their futures and items in lists instead of deques.

An empty `collections.deque` takes 760 bytes: it allocates a block of 64 slots up front. Each
idle subscriber had five: its listener's asyncio.Event, and the input queue daphne makes for
every connection (a deque of messages, one of waiting getters, one of waiting putters, and an
Event of its own for `join`), 3.7 KiB of about 18. They never hold more than a few items, so a
list serves as well. The classes are asyncio's own, methods and all; only the containers differ.
"""
import asyncio


class _Line(list):
    """A list with the one deque method asyncio's Event and Queue use besides list's own."""

    __slots__ = ()

    def popleft(self):
        return self.pop(0)


class LeanEvent(asyncio.Event):
    def __init__(self):
        super().__init__()
        self._waiters = _Line()


class LeanQueue(asyncio.Queue):
    def __init__(self, maxsize: int = 0):
        super().__init__(maxsize)
        self._getters = _Line()
        self._putters = _Line()
        self._finished = LeanEvent()
        self._finished.set()

    def _init(self, maxsize: int) -> None:
        self._queue = _Line()
