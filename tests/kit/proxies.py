"""Loopback proxies for the tests: an HTTP proxy (forwarding and CONNECT) and a SOCKS5 proxy.

Both are small threaded servers of our own on 127.0.0.1, so a test can see exactly what a
proxy is sent: ``proxy.seen`` lists one ``Seen`` per request (or SOCKS connect), with the
request line, the headers and whether the client authenticated. ``auth=("user", "pw")``
makes the proxy demand credentials (407 for HTTP, a refused sub-negotiation for SOCKS5).
``names={"shop.example.test": "127.0.0.1"}`` is the SOCKS proxy's own DNS, used for
``socks5h`` requests that hand it a name.

The HTTP proxy answers one forwarded request per client connection (it asks the origin for
``Connection: close`` and closes afterwards): the pool reopens, which is all the tests need.
``fail=True`` makes either proxy drop every connection at once (a dead proxy).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import select
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit


@dataclasses.dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", b""
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    socks = [a, b]
    while True:
        readable, _, _ = select.select(socks, [], [], 10)
        if not readable:
            return
        for s in readable:
            data = s.recv(65536)
            if not data:
                return
            (b if s is a else a).sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Proxy:
    scheme = "http"

    def __init__(
        self,
        auth: tuple[str, str] | None = None,
        names: dict[str, str] | None = None,
        fail: bool = False,
    ) -> None:
        self.auth = auth
        self.names = names or {}
        self.fail = fail
        self.seen: list[Seen] = []
        self.connections = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with outer._lock:
                    outer.connections += 1
                if outer.fail:
                    return
                with contextlib.suppress(OSError):
                    outer._handle(self.request)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, auth: tuple[str, str] | None = None) -> str:
        userinfo = f"{auth[0]}:{auth[1]}@" if auth else ""
        return f"{self.scheme}://{userinfo}127.0.0.1:{self.port}"

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _handle(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class HTTPProxy(_Proxy):
    """Forwards absolute-form requests and opens CONNECT tunnels."""

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.auth is None:
            return True
        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return headers.get("proxy-authorization") == f"Basic {token}"

    def _handle(self, sock: socket.socket) -> None:
        head, rest = _read_head(sock)
        if not head:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self._record(Seen(method, target, headers))
        if not self._authorized(headers):
            sock.sendall(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                b"Connection: close\r\n\r\n"
            )
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((host.strip("[]"), int(port)), 5)
            except OSError:
                sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _pipe(sock, upstream)
            return
        parts = urlsplit(target)
        if not parts.hostname:
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        kept = [
            line
            for line in lines[1:]
            if line.partition(":")[0].strip().lower()
            not in ("proxy-authorization", "connection", "proxy-connection")
        ]
        out = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""])
        with socket.create_connection((parts.hostname, parts.port or 80), 5) as upstream:
            upstream.sendall(out.encode("latin-1") + rest)
            _pipe(sock, upstream)


class SOCKS5Proxy(_Proxy):
    """RFC 1928 CONNECT, with the no-auth or username/password (RFC 1929) method."""

    scheme = "socks5"

    def _handle(self, sock: socket.socket) -> None:
        greeting = sock.recv(2)
        if len(greeting) < 2 or greeting[0] != 5:
            return
        methods = sock.recv(greeting[1])
        want = 2 if self.auth else 0
        if want not in methods:
            sock.sendall(b"\x05\xff")
            return
        sock.sendall(bytes([5, want]))
        user = None
        if want == 2:
            _ver, ulen = sock.recv(2)
            user = sock.recv(ulen).decode()
            (plen,) = sock.recv(1)
            password = sock.recv(plen).decode()
            ok = (user, password) == self.auth
            sock.sendall(b"\x01\x00" if ok else b"\x01\x01")
            if not ok:
                return
        _ver, _cmd, _, atyp = sock.recv(4)
        if atyp == 1:
            host = socket.inet_ntoa(sock.recv(4))
            kind = "ipv4"
        elif atyp == 3:
            (n,) = sock.recv(1)
            host = sock.recv(n).decode()
            kind = "name"
        else:
            host = socket.inet_ntop(socket.AF_INET6, sock.recv(16))
            kind = "ipv6"
        (port,) = struct.unpack("!H", sock.recv(2))
        self._record(Seen("CONNECT", f"{host}:{port}", {"atyp": kind, "user": user or ""}))
        address = self.names.get(host, host)
        try:
            upstream = socket.create_connection((address, port), 5)
        except OSError:
            sock.sendall(b"\x05\x04\x00\x01" + bytes(6))  # host unreachable
            return
        with upstream:
            sock.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + b"\x00\x00")
            _pipe(sock, upstream)


@contextlib.contextmanager
def http_proxy(**kw: object) -> Iterator[HTTPProxy]:
    with HTTPProxy(**kw) as proxy:  # type: ignore[arg-type]
        yield proxy


@contextlib.contextmanager
def socks5_proxy(**kw: object) -> Iterator[SOCKS5Proxy]:
    with SOCKS5Proxy(**kw) as proxy:  # type: ignore[arg-type]
        yield proxy
