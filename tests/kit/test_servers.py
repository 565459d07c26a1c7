"""The loopback servers' own bookkeeping: `_peer_gone`, which `max_open` relies on.

`_peer_gone` runs under the server lock against sockets that other threads read. It once
peeked through the socket itself: when the connection thread took the bytes between the
readiness check and the peek, the peek waited out the socket's timeout (5 s inside
`Connection.send`) with the lock held, every connection thread stalled behind it and the
pool's thread tests saw 5 s read timeouts under load.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from tests.kit.servers import LOOPBACK, _peer_gone


class _OwnerWinsTheRace(socket.socket):
    """A server-side socket whose connection thread reads the pending bytes just before any
    peek at them, which is the interleaving that made the old `_peer_gone` wait."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if flags & socket.MSG_PEEK:
            super().recv(65536)
        return super().recv(bufsize, flags)


@contextlib.contextmanager
def _pair(
    cls: type[socket.socket] = socket.socket,
) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, served) ends of one loopback TCP connection; `served` is in timeout mode."""
    with socket.create_server((LOOPBACK, 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
    served = cls(accepted.family, accepted.type, accepted.proto, fileno=accepted.detach())
    served.settimeout(2.0)  # a connection thread's socket is always in timeout mode
    try:
        yield client, served
    finally:
        client.close()
        served.close()


def _timed(sock: socket.socket) -> tuple[bool, float]:
    started = time.monotonic()
    gone = _peer_gone(sock)
    return gone, time.monotonic() - started


@pytest.mark.timeout(10)
def test_peer_gone_never_waits_when_the_connection_thread_takes_the_bytes() -> None:
    with _pair(_OwnerWinsTheRace) as (client, served):
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        time.sleep(0.05)  # the request is in the server's receive queue
        gone, elapsed = _timed(served)
        assert not gone
        assert elapsed < 0.5, f"_peer_gone waited {elapsed:.2f}s on an open socket"


@pytest.mark.timeout(10)
def test_peer_gone_is_false_for_an_open_socket_and_consumes_nothing() -> None:
    with _pair() as (client, served):
        assert _timed(served)[0] is False  # idle keep-alive connection
        client.sendall(b"next request")
        time.sleep(0.05)
        gone, elapsed = _timed(served)
        assert (gone, elapsed < 0.5) == (False, True)
        assert served.recv(100) == b"next request"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("how", ["close", "reset", "close-after-data"])
def test_peer_gone_is_true_once_the_client_hung_up(how: str) -> None:
    with _pair() as (client, served):
        if how == "close-after-data":
            client.sendall(b"x")
            served.recv(1)
        if how == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        time.sleep(0.05)
        gone, elapsed = _timed(served)
        assert (gone, elapsed < 0.5) == (True, True)


def test_peer_gone_is_true_for_a_closed_server_socket() -> None:
    with _pair() as (_client, served):
        served.close()
        assert _peer_gone(served) is True
