"""Stream opens share batches (content_jobs.sse.Opener): a client that goes while its batch
runs, even the one whose request leads it, leaves no other open waiting for ever."""
import asyncio
import threading

from content_jobs.sse import Opener, shared


class Source:
    """Stands in for a stream's source: its start() is the checks and first read."""

    def __init__(self, name: str, gate: threading.Event | None = None, reads: list | None = None):
        self.name, self.gate, self.reads = name, gate, reads

    def start(self, request) -> list[str]:
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.reads is not None:
            return [shared("lookup", lambda: self.reads.append(self.name) or f"read by {self.name}")]
        return [f"frames of {self.name}"]


def test_the_leader_going_mid_batch_strands_no_one_and_later_opens_still_run():
    async def main():
        gate = threading.Event()
        leader = asyncio.create_task(Opener.start(Source("leader", gate), None))
        await asyncio.sleep(0.05)  # the leader's batch is in its thread, held at the gate
        waiting = [asyncio.create_task(Opener.start(Source(f"w{i}"), None)) for i in range(5)]
        await asyncio.sleep(0.05)
        leader.cancel()
        await asyncio.sleep(0.05)
        gate.set()
        opened = await asyncio.wait_for(asyncio.gather(*waiting), 10)
        later = await asyncio.wait_for(Opener.start(Source("later"), None), 10)
        return leader, opened, later

    leader, opened, later = asyncio.run(main())
    assert leader.cancelled()
    assert opened == [[f"frames of w{i}"] for i in range(5)]
    assert later == ["frames of later"]


def test_opens_that_wait_together_share_their_lookups_and_errors_stay_their_own():
    class Refused(Exception):
        pass

    class RefusedSource(Source):
        def start(self, request):
            raise Refused(self.name)

    async def main():
        gate, reads = threading.Event(), []
        first = asyncio.create_task(Opener.start(Source("first", gate), None))
        await asyncio.sleep(0.05)
        batch = [asyncio.create_task(Opener.start(Source(f"s{i}", reads=reads), None)) for i in range(4)]
        refused = asyncio.create_task(Opener.start(RefusedSource("r"), None))
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, *batch, refused, return_exceptions=True), 10)
        alone = await asyncio.wait_for(Opener.start(Source("alone", reads=reads), None), 10)
        return results, reads, alone

    results, reads, alone = asyncio.run(main())
    assert results[0] == ["frames of first"]
    # One lookup for the four that waited together, by whichever of them ran first.
    assert len(reads) == 2 and reads[0] in {"s0", "s1", "s2", "s3"}
    assert results[1:5] == [[f"read by {reads[0]}"]] * 4
    assert isinstance(results[5], Refused) and str(results[5]) == "r"
    assert alone == ["read by alone"] and reads[1] == "alone"
