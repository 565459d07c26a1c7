"""One TCP (or TLS) connection and its receive buffer: the only module touching sockets.

Reads go through ``recv_into`` a preallocated 64 KiB scratch buffer and are appended to
one receive ``bytearray``; the framers in :mod:`._protocol` take bytes off its front.
Socket and ``ssl`` errors are translated here, so the rest of the package only sees
our own exception tree. The socket timeout is only changed when it actually changes,
since ``settimeout`` is a system call on the hot path.

``ssl`` is imported by the first TLS connection or context, not with the package: this
package alone then never loads it for plain-HTTP work (about 2 MB resident in each process
and 6 ms of imports), and only a TLS socket can raise its errors (``_is_tls_error``).

A request may also carry a *deadline* (``Timeout.total``, as a ``time.monotonic()`` value)
that covers sending, the head and the body. Without one nothing below reads the clock.
With one, every socket wait is given ``min(read timeout, what is left)``, so a peer that
trickles a byte just inside each read timeout is still cut off when the deadline passes
(``ReadTimeoutError``). The deadline stays with the connection until the next request
sets its own.

Where the socket goes: to ``host:port``, or to ``dial_host`` when the pool pinned the name
(``resolve``), or to a proxy (``proxy``, a :class:`.proxy.ProxyConfig`): an HTTP proxy is
dialed directly and, for a TLS target, asked for a ``CONNECT`` tunnel first; a SOCKS proxy
is dialed by python-socks, which returns the tunnelled socket. TLS is then spoken to the
target through whatever was opened, with the target's name for SNI and the certificate.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._protocol import MAX_HEAD_BYTES, Framer, ResponseHead, find_head_end, parse_head
from .exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

if TYPE_CHECKING:
    import ssl

    from .proxy import ProxyConfig

__all__ = ["HTTPConnection", "HTTPSConnection", "StaleConnectionError", "make_ssl_context"]

RECV_SIZE = 64 * 1024
_UNSET: Any = object()


class StaleConnectionError(ProtocolError):
    """The peer closed the connection before answering (or as we sent).

    On a reused keep-alive connection this usually means the server timed it out just as
    we picked it up; the pool then reopens and resends an idempotent request for free.
    """


class HTTPConnection:
    """A plain-TCP connection to ``host:port`` with a buffered HTTP/1.1 reader."""

    default_port = 80
    scheme = "http"

    __slots__ = (
        "_buf",
        "_deadline",
        "_mv",
        "_read",
        "_scratch",
        "_timeout",
        "dial_host",
        "host",
        "port",
        "proxy",
        "sock",
        "socket_options",
        "source_address",
    )

    def __init__(
        self,
        host: str,
        port: int | None = None,
        source_address: tuple[str, int] | None = None,
        socket_options: Iterable[tuple[int, int, int]] | None = None,
        dial_host: str | None = None,
        proxy: ProxyConfig | None = None,
    ) -> None:
        self.host = host
        self.port = port or self.default_port
        self.dial_host = dial_host
        self.proxy = proxy
        self.source_address = source_address
        self.socket_options = socket_options
        self.sock: socket.socket | None = None
        self._buf = bytearray()
        self._scratch = bytearray(RECV_SIZE)
        self._mv = memoryview(self._scratch)
        self._timeout: float | None = _UNSET  # what the socket is set to now
        self._read: float | None = None  # the read limit while a deadline is set
        self._deadline: float | None = None

    def __repr__(self) -> str:
        state = "open" if self.sock is not None else "closed"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"

    # --- lifecycle -------------------------------------------------------------------------

    def connect(self, timeout: float | None, deadline: float | None = None) -> None:
        """Open the TCP connection within ``timeout`` seconds (and before ``deadline``)."""
        if deadline is not None:
            timeout = self._connect_budget(timeout, deadline)
        proxy = self.proxy
        if proxy is not None and proxy.is_socks:
            sock = self._socks_connect(proxy, timeout)
        else:
            if proxy is not None:
                where = (proxy.host, proxy.port)
            else:
                where = ((self.dial_host or self.host).strip("[]"), self.port)
            sock = self._dial(where, timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for opt in self.socket_options or ():
                sock.setsockopt(*opt)
        except OSError as exc:
            sock.close()
            raise NewConnectionError(f"failed to set socket options: {exc}") from exc
        self.sock = sock
        self._timeout = timeout
        if proxy is not None and not proxy.is_socks and self.scheme == "https":
            try:
                self._tunnel(proxy)
            except BaseException:
                self.close()
                raise

    def _dial(self, where: tuple[str, int], timeout: float | None) -> socket.socket:
        proxy = self.proxy
        what = f"proxy {proxy.url}" if proxy is not None else f"{self.host}:{self.port}"
        try:
            return socket.create_connection(where, timeout, self.source_address)
        except TimeoutError as exc:
            if proxy is not None:
                raise ProxyError(f"connect to {what} timed out after {timeout}s") from exc
            raise ConnectTimeoutError(f"connect to {what} timed out after {timeout}s") from exc
        except OSError as exc:
            if proxy is not None:
                raise ProxyError(f"failed to connect to {what}: {exc}") from exc
            raise NewConnectionError(f"failed to connect to {what}: {exc}") from exc

    def _socks_connect(self, proxy: ProxyConfig, timeout: float | None) -> socket.socket:
        """The SOCKS handshake, by python-socks; the returned socket reaches the target."""
        from python_socks import ProxyError as SocksError
        from python_socks import ProxyTimeoutError, ProxyType
        from python_socks.sync import Proxy

        kind = ProxyType.SOCKS4 if proxy.scheme.startswith("socks4") else ProxyType.SOCKS5
        target = self.host.strip("[]") if proxy.remote_dns else self._local_address()
        client = Proxy(
            kind, proxy.host, proxy.port, proxy.username, proxy.password, rdns=proxy.remote_dns
        )
        try:
            sock = client.connect(target, self.port, timeout=timeout)
        except ProxyTimeoutError as exc:
            raise ProxyError(f"SOCKS proxy {proxy.url} timed out after {timeout}s") from exc
        except (SocksError, OSError) as exc:
            raise ProxyError(
                f"SOCKS proxy {proxy.url} could not reach {self.host}:{self.port}: {exc}"
            ) from exc
        sock.settimeout(timeout)
        return sock

    def _local_address(self) -> str:
        """The target's address, looked up here (``socks5``/``socks4``: local DNS)."""
        name = (self.dial_host or self.host).strip("[]")
        try:
            infos = socket.getaddrinfo(name, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise NewConnectionError(f"failed to resolve {self.host}: {exc}") from exc
        return str(infos[0][4][0])

    def _tunnel(self, proxy: ProxyConfig) -> None:
        """Ask the HTTP proxy for a tunnel to the target (RFC 9110 section 9.3.6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = f"{host}:{self.port}"
        self.send(
            (
                f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{proxy.header_lines}\r\n"
            ).encode("latin-1")
        )
        try:
            head = self.read_head("HEAD")  # a 2xx answer to CONNECT has no body
        except ProtocolError as exc:
            raise ProxyError(f"proxy {proxy.url} broke the CONNECT exchange: {exc}") from exc
        if not 200 <= head.status < 300:
            raise ProxyError(f"proxy {proxy.url} refused the tunnel to {authority}: {head.status}")
        if self._buf:
            raise ProxyError(f"proxy {proxy.url} sent bytes after its CONNECT answer")

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._buf.clear()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def is_dropped(self) -> bool:
        """True when this idle connection cannot carry another request.

        An idle keep-alive socket is readable only if the server closed it (EOF) or sent
        something unasked; either way it must not be reused.
        """
        sock = self.sock
        if sock is None or self._buf:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def set_timeout(self, timeout: float | None, deadline: float | None = None) -> None:
        """Wait at most ``timeout`` for each socket operation of the next request and, with
        ``deadline`` (a ``time.monotonic()`` value), never past it."""
        self._deadline = deadline
        if deadline is not None:
            self._read = timeout  # applied before each wait, by _budget
        elif timeout != self._timeout:
            self._settimeout(timeout)

    def _settimeout(self, timeout: float | None) -> None:
        if timeout != self._timeout:
            assert self.sock is not None
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def _connect_budget(self, timeout: float | None, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConnectTimeoutError(
                f"connect to {self.host}:{self.port} timed out: total timeout reached"
            )
        return left if timeout is None or left < timeout else timeout

    def _budget(self) -> None:
        """Before a socket wait under a deadline: wait no longer than what is left of it."""
        assert self._deadline is not None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ReadTimeoutError(
                f"response from {self.host}:{self.port} not complete: total timeout reached"
            )
        read = self._read
        self._settimeout(left if read is None or left < read else read)

    def _timed_out(self, what: str) -> ReadTimeoutError:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return ReadTimeoutError(
                f"{what} {self.host}:{self.port} timed out: total timeout reached"
            )
        return ReadTimeoutError(f"{what} {self.host}:{self.port} timed out after {self._timeout}s")

    # --- I/O -------------------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.sock
        if sock is None:
            raise ProtocolError("send on a closed connection")
        if self._deadline is not None:
            self._budget()
        try:
            sock.sendall(data)  # one timeout for the whole call, not for each piece
        except TimeoutError as exc:
            raise self._timed_out("write to") from exc
        except OSError as exc:
            if _is_tls_error(exc):
                raise SSLError(f"TLS error while sending: {exc}") from exc
            raise StaleConnectionError(f"connection lost while sending the request: {exc}") from exc

    def _fill(self) -> int:
        """Append what the socket has to the receive buffer; 0 means the peer closed."""
        sock = self.sock
        if sock is None:
            raise ProtocolError("read on a closed connection")
        if self._deadline is not None:
            self._budget()
        try:
            n = sock.recv_into(self._scratch)
        except TimeoutError as exc:
            raise self._timed_out("read from") from exc
        except OSError as exc:
            if _is_tls_error(exc):
                raise SSLError(f"TLS error while reading: {exc}") from exc
            raise ProtocolError(f"connection lost while reading the response: {exc}") from exc
        if n:
            self._buf += self._mv[:n]
        return n

    def read_head(self, method: str, enforce_content_length: bool = True) -> ResponseHead:
        """Read the next final (non-1xx) response head."""
        buf = self._buf
        while True:
            scanned = 0
            while True:
                end, body_start = find_head_end(buf, scanned)
                if end >= 0:
                    break
                if len(buf) > MAX_HEAD_BYTES:
                    raise ProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
                scanned = max(len(buf) - 3, 0)
                if not self._fill():
                    if buf:
                        raise ProtocolError("connection closed in the middle of the response head")
                    raise StaleConnectionError(
                        "remote end closed the connection without a response"
                    )
            if end > MAX_HEAD_BYTES:
                raise ProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
            head = parse_head(buf[:end], method, enforce_content_length)
            del buf[:body_start]
            if 100 <= head.status < 200 and head.status != 101:
                continue  # interim response: the final one follows on the same connection
            return head

    def read_body(self, framer: Framer, amt: int) -> bytes:
        """Up to ``amt`` body bytes (``b""`` only once the body is complete)."""
        buf = self._buf
        while not framer.done:
            data = framer.take(buf, amt)
            if data:
                return data
            if framer.done:
                break
            if not self._fill():
                framer.at_eof()
        return b""

    def read_body_all(self, framer: Framer) -> bytes:
        """The whole remaining body; Content-Length bodies are received in place."""
        left = framer.remaining
        if left is None:
            parts = []
            while data := self.read_body(framer, 1 << 30):
                parts.append(data)
            return b"".join(parts)
        buf = self._buf
        if len(buf) >= left:
            return framer.take(buf, left)
        out = bytearray(left)
        have = len(buf)
        out[:have] = buf
        buf.clear()
        view = memoryview(out)
        sock = self.sock
        if sock is None:
            raise ProtocolError("read on a closed connection")
        try:
            while have < left:
                if self._deadline is not None:
                    self._budget()
                n = sock.recv_into(view[have:], left - have)
                if not n:
                    framer.take(bytearray(out[:have]), have)
                    framer.at_eof()
                    return bytes(out[:have])
                have += n
        except TimeoutError as exc:
            raise self._timed_out("read from") from exc
        except OSError as exc:
            if _is_tls_error(exc):
                raise SSLError(f"TLS error while reading: {exc}") from exc
            raise ProtocolError(f"connection lost while reading the response: {exc}") from exc
        finally:
            view.release()
        framer.take(bytearray(out), left)  # marks the framer done
        return bytes(out)


class HTTPSConnection(HTTPConnection):
    """A TLS connection: SNI and hostname checking come from the pool's context."""

    default_port = 443
    scheme = "https"

    __slots__ = ("server_hostname", "ssl_context")

    def __init__(
        self,
        host: str,
        port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(host, port, **kw)
        self.ssl_context = ssl_context or make_ssl_context()
        self.server_hostname = server_hostname or host.strip("[]")

    def connect(self, timeout: float | None, deadline: float | None = None) -> None:
        import ssl  # loaded already: the context was made in __init__

        super().connect(timeout, deadline)
        assert self.sock is not None
        if deadline is not None:
            # The handshake is one socket call with one timeout: give it what is left.
            try:
                self._settimeout(self._connect_budget(timeout, deadline))
            except ConnectTimeoutError:
                self.close()
                raise
        try:
            self.sock = self.ssl_context.wrap_socket(
                self.sock, server_hostname=self.server_hostname
            )
        except TimeoutError as exc:
            self.close()
            raise ConnectTimeoutError(
                f"TLS handshake with {self.host}:{self.port} timed out after {timeout}s"
            ) from exc
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            self.close()
            raise SSLError(f"TLS handshake with {self.host}:{self.port} failed: {exc}") from exc

    def is_dropped(self) -> bool:
        # Bytes already decrypted into the TLS layer are invisible to a poll of the socket.
        sock: Any = self.sock
        if sock is not None and hasattr(sock, "pending") and sock.pending():
            return True
        return super().is_dropped()


def _is_tls_error(exc: OSError) -> bool:
    """``exc`` is an ``ssl.SSLError``; without ``ssl`` loaded no socket could have raised one."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLError)


_CERT_REQS = {
    "CERT_NONE": "CERT_NONE",
    "NONE": "CERT_NONE",
    "CERT_OPTIONAL": "CERT_OPTIONAL",
    "OPTIONAL": "CERT_OPTIONAL",
    "CERT_REQUIRED": "CERT_REQUIRED",
    "REQUIRED": "CERT_REQUIRED",
}


def resolve_cert_reqs(cert_reqs: str | int | None) -> ssl.VerifyMode:
    import ssl

    if cert_reqs is None:
        return ssl.CERT_REQUIRED
    if isinstance(cert_reqs, str):
        try:
            return ssl.VerifyMode[_CERT_REQS[cert_reqs.upper()]]
        except KeyError:
            raise ValueError(f"unknown cert_reqs {cert_reqs!r}") from None
    return ssl.VerifyMode(cert_reqs)


def make_ssl_context(
    cert_reqs: str | int | None = None,
    ca_certs: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    ca_cert_dir: str | None = None,
    key_password: str | None = None,
) -> ssl.SSLContext:
    """A client context: verified against the system store unless told otherwise."""
    import ssl

    mode = resolve_cert_reqs(cert_reqs)
    try:
        if ca_certs or ca_cert_dir:
            ctx = ssl.create_default_context(cafile=ca_certs, capath=ca_cert_dir)
        else:
            ctx = ssl.create_default_context()
        if mode == ssl.CERT_NONE:
            ctx.check_hostname = False
        ctx.verify_mode = mode
        if cert_file:
            ctx.load_cert_chain(cert_file, key_file, password=key_password)
    except (ssl.SSLError, OSError) as exc:
        raise SSLError(f"could not build the TLS context: {exc}") from exc
    return ctx
