"""Load-side SSE clients for the benchmarks: many connections per process on plain asyncio
streams (HTTP/1.0, so the body is the raw event stream), kept lean so the client is not what
is measured. Runs in separate processes from the server."""
import asyncio
import json
import re
import time

STAMP_BYTES = re.compile(rb"t=(\d+\.\d+)")
EVENT_NAME = re.compile(rb"(?:^|\n)event: ([^\n]*)")
STAMPED = (b"message", b"content_job.progress")


async def open_stream(host: str, port: int, path: str, headers: dict | None = None):
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    try:
        lines = [f"GET {path} HTTP/1.0", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise ConnectionError(status.decode().strip() or "no answer")
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
    except BaseException:  # a refusal, an error, or a timeout of the caller's
        writer.close()
        raise
    return reader, writer


async def events(reader):
    """Yield (event name, id, data) per SSE event until the server ends the stream."""
    name, event_id, data = None, None, []
    while True:
        line = await reader.readline()
        if not line:
            return
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                yield name or "message", event_id, "\n".join(data)
            name, data = None, []
            continue
        if line.startswith(b":"):
            continue
        field, _, value = line.decode().partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "id":
            event_id = value
        elif field == "data":
            data.append(value)


async def stamps(reader):
    """Yield, per read from the socket, the handler stamps of the bench.pulse events it
    completed (log lines and progress events only). Parses whole reads with one regex each, not
    line by line, so that with 1,000 streams the clients cost little of the machine's CPU."""
    pending = b""
    while True:
        chunk = await reader.read(1 << 16)
        if not chunk:
            return
        pending += chunk
        end = pending.rfind(b"\n\n")
        if end < 0:
            continue
        complete, pending = pending[:end], pending[end + 2:]
        found = []
        for block in complete.split(b"\n\n"):
            match = STAMP_BYTES.search(block)
            if match is None:
                continue
            name = EVENT_NAME.search(block)
            if (name.group(1) if name else b"message") in STAMPED:
                found.append(float(match.group(1)))
        if found:
            yield found


async def _watch(host, port, path, headers, expect: int, deadline: float, counter: list, latencies: list,
                 span: dict):
    reader, writer = await open_stream(host, port, path, headers)
    counter[0] += 1
    try:
        got = 0
        async for found in _with_deadline(stamps(reader), deadline):
            now = time.time()
            for stamp in found:
                latencies.append(now - stamp)
            span["first_stamp"] = min(span.get("first_stamp", found[0]), found[0])
            span["last_recv"] = max(span.get("last_recv", now), now)
            got += len(found)
            if got >= expect:
                return got
        return got
    finally:
        writer.close()


async def _with_deadline(agen, deadline):
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            item = await asyncio.wait_for(agen.__anext__(), remaining)
        except (StopAsyncIteration, asyncio.TimeoutError):
            return
        yield item


def watch_many(args: dict) -> dict:
    """In a client process: `n` connections on `path` (or on each of `paths`), each until
    `expect` stamped events."""
    async def main():
        counter, latencies, span = [0], [], {}
        deadline = time.monotonic() + args["timeout"]
        tasks = []
        for path in args.get("paths") or [args["path"]]:  # `n` connections on each path
            for _ in range(args["n"]):
                tasks.append(asyncio.create_task(_watch(args["host"], args["port"], path, args.get("headers"),
                                                        args["expect"], deadline, counter, latencies, span)))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        received = [r for r in results if isinstance(r, int)]
        errors = [repr(r) for r in results if not isinstance(r, int)]
        return {"received": sum(received), "connected": counter[0], "errors": errors[:3], "error_count": len(errors),
                "latencies": latencies, **span}

    return asyncio.run(main())


def hold_idle(args: dict) -> dict:
    """In a client process: open `n` idle connections, report how long it took, hold them.
    With `timeout` (s), a connection whose stream has not begun by then failed; with `give_up`,
    once more than that many failed, the rest are not tried (and count as failed)."""
    async def main():
        started = time.monotonic()
        sem = asyncio.Semaphore(200)
        writers, errors = [], 0
        timeout, give_up = args.get("timeout"), args.get("give_up")

        async def one():
            nonlocal errors
            async with sem:
                if give_up is not None and errors > give_up:
                    errors += 1
                    return
                try:
                    writers.append(await asyncio.wait_for(
                        open_stream(args["host"], args["port"], args["path"], args.get("headers")), timeout))
                except Exception:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(args["n"])))
        connected_in = time.monotonic() - started
        args["queue"].put({"connected": len(writers), "errors": errors, "seconds": connected_in})
        while not args["release"].is_set():  # hold until the parent has measured
            await asyncio.sleep(0.1)
        for _, writer in writers:
            writer.close()

    asyncio.run(main())


def parse_json(data: str) -> dict:
    return json.loads(data)


def reconnect_storm(args: dict) -> dict:
    """In a client process: `n` connections on a job's log stream, each keeping the ids it
    read. When the parent sets `cut`, every connection drops and reconnects at once with
    `Last-Event-ID`, as browsers do after a network blip; each then reads to the stream's end.
    Reports how long after the cut each was back (its response had begun) and every client
    whose ids are not exactly 1..`expect` (a gap or a repeat)."""
    async def main():
        sem = asyncio.Semaphore(200)
        cut = asyncio.Event()
        back: list[float] = []
        bad: list[str] = []
        errors: list[str] = []
        cut_at: list[float] = []

        async def watch_cut():
            while not args["cut"].is_set():
                await asyncio.sleep(0.01)
            cut_at.append(time.monotonic())
            cut.set()

        async def read_into(reader, ids: list[int]):
            async for _, event_id, _ in events(reader):
                ids.append(int(event_id))

        async def one():
            ids: list[int] = []
            try:
                async with sem:
                    reader, writer = await open_stream(args["host"], args["port"], args["path"], args.get("headers"))
                args["queue"].put("connected")
                reading = asyncio.ensure_future(read_into(reader, ids))
                waiting = asyncio.ensure_future(cut.wait())
                await asyncio.wait({reading, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():  # the cut: drop the connection mid-stream and come back
                    reading.cancel()
                    writer.close()
                    headers = dict(args.get("headers") or {})
                    if ids:
                        headers["Last-Event-ID"] = str(ids[-1])
                    async with sem:
                        reader, writer = await open_stream(args["host"], args["port"], args["path"], headers)
                    back.append(time.monotonic() - cut_at[0])
                    await read_into(reader, ids)
                waiting.cancel()
                writer.close()
                if ids != list(range(1, args["expect"] + 1)):
                    bad.append(f"{len(ids)} ids, first {ids[:3]}, last {ids[-3:]}")
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                errors.append(repr(exc))

        watcher = asyncio.ensure_future(watch_cut())
        await asyncio.gather(*(one() for _ in range(args["n"])))
        watcher.cancel()
        return {"back": back, "bad": bad[:3], "bad_count": len(bad), "errors": errors[:3], "error_count": len(errors)}

    return asyncio.run(main())
