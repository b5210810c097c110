"""daphne's connections send a write at once when nothing is waiting to go out.

Twisted's TCP transport queues every `write()` and registers the socket for writing; on the
event loop's next turn it sends the queue and unregisters the socket again. Under asyncio's
reactor that is two `epoll_ctl` calls, two selector-key copies and a loop turn per write, and a
live stream writes once per event: with 1,000 subscribers on a job, a quarter of the event
loop went there. `ImmediateServer` tries `send()` first when the queue is empty, as asyncio's
own transports do, and hands whatever the socket did not take (or an error) to Twisted's queue,
which then works as before: order, flow control and closing are unchanged.

Twisted leaves Nagle's algorithm on for the connections it accepts; asyncio's transports, uvicorn
and Node's HTTP server turn it off. With it on, a write waits in the kernel while an earlier one
is not yet acknowledged, and a response's headers and body are two writes (Twisted's
`Request.write`): the body waited for the client's acknowledgement of the headers.
`ImmediateServer` sets `TCP_NODELAY` on each connection. POSTs one at a time to a DRF view
with the API's token authentication and no writes, three alternating runs of 4 s in one hour:
349 to 367 a second with it, 327 to 333 without.

daphne writes each response chunk through `twisted.web.http.Request.write`, looked up on the
module `twisted.web.http`, which Twisted wraps in a deprecation proxy whose attribute lookup
is Python code: another twelfth of the event loop under the same load. `install()` points
daphne's module at the wrapped module itself.

Twisted parses the body of every POST as a form unless told not to, and finds out whether it is
one by parsing its Content-Type through `email.message`: 8% of the process's interpreter time
under a load of JSON POSTs. daphne never reads what that parse gives (it hands the raw body to
the application, and Django parses forms itself), so `install()` has daphne make requests that
skip it (`FormlessRequest`).

daphne gives every connection an `asyncio.Queue` for its incoming messages, four empty deques of
760 bytes each for as long as the connection lasts; `install()` has daphne's server make a
`LeanQueue` instead (content_jobs.lean_asyncio: the same class on lists), by giving the module
`daphne.server` an `asyncio` namespace of its own whose `Queue` is that one.
"""
import asyncio
import types

import daphne.http_protocol
import daphne.server
from twisted.internet import tcp
from twisted.python import deprecate

from content_jobs.lean_asyncio import LeanQueue


class ImmediateServer(tcp.Server):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setTcpNoDelay(True)

    def write(self, data: bytes) -> None:
        if (data and self.connected and not self.disconnecting and not self._writeDisconnected
                and not self._tempDataLen and self.offset == len(self.dataBuffer)):
            try:
                sent = self.socket.send(data)  # what writeSomeData does, EINTR retried by Python
            except OSError:
                sent = 0  # full, or the connection is lost: Twisted's queue finds out which
            if sent == len(data):
                return
            data = data[sent:]
        super().write(data)

    def writeSequence(self, iovec) -> None:
        self.write(b"".join(iovec))


class FormlessRequest(daphne.http_protocol.WebRequest):
    """daphne's request; Twisted leaves its body unparsed (daphne passes it on as it is)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)


def install() -> None:
    """Make every TCP port this process listens on hand out `ImmediateServer` connections, and
    daphne's HTTP channels `FormlessRequest`s."""
    tcp.Port.transport = ImmediateServer
    daphne.http_protocol.WebRequest = FormlessRequest  # what daphne's HTTPFactory builds
    proxy = daphne.http_protocol.http
    if isinstance(proxy, deprecate._ModuleProxy):
        daphne.http_protocol.http = deprecate._InternalState(proxy)._module
    if daphne.server.asyncio is asyncio:
        namespace = types.ModuleType("asyncio", "asyncio, with LeanQueue as Queue (for daphne.server)")
        namespace.__dict__.update({k: v for k, v in vars(asyncio).items() if not k.startswith("__")})
        namespace.Queue = LeanQueue
        daphne.server.asyncio = namespace
