"""A real SSE client for tests: httpx with httpx-sse, reconnecting with Last-Event-ID like EventSource."""
from dataclasses import dataclass, field

import httpx
from httpx_sse import connect_sse


@dataclass
class Received:
    events: list = field(default_factory=list)  # (event name, id, data)
    ended: bool = False  # the server ended the stream (or answered 204 on reconnect)

    @property
    def ids(self) -> list[int]:
        return [int(e[1]) for e in self.events]

    @property
    def last_id(self) -> str | None:
        return self.events[-1][1] if self.events else None


def read_stream(base_url: str, path: str, *, last_event_id: str | None = None, headers: dict | None = None,
                limit: int | None = None, timeout: float = 30, into: Received | None = None) -> Received:
    """Read one connection of a stream: until the server ends it, or `limit` events arrived."""
    received = into or Received()
    request_headers = dict(headers or {})
    if last_event_id is not None:
        request_headers["Last-Event-ID"] = str(last_event_id)
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        with connect_sse(client, "GET", path, headers=request_headers) as source:
            if source.response.status_code == 204:
                received.ended = True
                return received
            source.response.raise_for_status()
            count = 0
            for sse in source.iter_sse():
                if not sse.data:
                    continue  # a block without data (the retry hint) dispatches no event
                received.events.append((sse.event, sse.id, sse.data))
                count += 1
                if limit is not None and count >= limit:
                    return received
    received.ended = True
    return received
