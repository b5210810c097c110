"""daphne's TCP connections (nexus_site.transport): a write goes to the socket at once when
nothing waits before it; what the socket does not take waits in Twisted's queue, in order."""
import socket

import httpx

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor

from nexus_site.transport import ImmediateServer


def connected_pair(buffer: int = 65536):
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    accepted, address = listener.accept()
    listener.close()
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    accepted.setblocking(False)
    reactor = MemoryReactor()
    server = ImmediateServer(accepted, Protocol(), address, None, 1, reactor)
    return server, client, reactor


def read_available(sock: socket.socket) -> bytes:
    sock.settimeout(1)
    return sock.recv(1 << 20)


def test_a_write_is_sent_at_once_without_registering_for_writing():
    server, client, reactor = connected_pair()
    server.write(b"event one\n\n")
    server.writeSequence([b"event ", b"two\n\n"])
    assert server not in reactor.writers  # no trip through the event loop
    received = b""
    while len(received) < 22:
        received += read_available(client)
    assert received == b"event one\n\nevent two\n\n"
    client.close()
    server.connectionLost(Failure(ConnectionDone()))


def test_a_connection_sends_without_waiting_for_acknowledgements():
    server, client, reactor = connected_pair()
    # Nagle's algorithm off, as asyncio's transports and Node's HTTP server have it: a response's
    # body does not wait in the kernel for the client's acknowledgement of its headers.
    assert server.getTcpNoDelay()
    assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    client.close()
    server.connectionLost(Failure(ConnectionDone()))


def test_what_the_socket_does_not_take_is_queued_and_sent_in_order():
    server, client, reactor = connected_pair()
    big = bytes(range(256)) * 8192  # 2 MiB, far more than the socket buffers hold
    server.write(b"head|")
    server.write(big)
    assert server in reactor.writers  # the rest waits for the socket to be writable
    server.write(b"|tail")  # behind the queue, not before it
    received = bytearray()
    while server in reactor.writers:
        received += read_available(client)
        server.doWrite()  # what the event loop calls once the socket is writable
    client.settimeout(1)
    while len(received) < len(big) + 10:
        received += client.recv(1 << 20)
    assert bytes(received) == b"head|" + big + b"|tail"
    client.close()
    server.connectionLost(Failure(ConnectionDone()))


def test_a_write_after_the_peer_is_gone_does_not_raise():
    server, client, reactor = connected_pair()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # a reset, as a vanished browser leaves
    for _ in range(3):
        server.write(b"event\n\n")
    # The error is left to Twisted's queue, which reports the lost connection on its next turn.
    assert server in reactor.writers
    assert server.doWrite() is not None


def test_daphne_builds_requests_that_leave_a_post_body_to_the_application(live_server_proc):
    import daphne.http_protocol

    from nexus_site import transport

    transport.install()
    channel = daphne.http_protocol.HTTPFactory(server=None).buildProtocol(("127.0.0.1", 0))
    assert channel.requestFactory is transport.FormlessRequest
    assert issubclass(transport.FormlessRequest, daphne.http_protocol.http.Request)

    # Through a real server, a form's body still reaches Django whole (Django parses it).
    with httpx.Client(base_url=live_server_proc.url) as client:
        page = client.get("/console/login/")
        token = client.cookies["csrftoken"]
        answer = client.post("/console/login/", data={"username": "alice", "password": "pw-alice",
                                                      "csrfmiddlewaretoken": token})
    assert answer.status_code == 302 and "/console/" in answer.headers["location"]
    assert page.status_code == 200
