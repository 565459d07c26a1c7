"""Loopback HTTP servers that misbehave on purpose, for the pool's and the engine's tests.

How this works: every server here is a raw TCP listener on 127.0.0.x with one accept thread and
one daemon thread per connection. A connection thread reads a request head (and its body), records
it as an `Arrival`, and hands the socket to the scenario picked by the request path; the scenario
writes whatever bytes it likes, then says whether the connection stays open for another request.
Nothing here uses `http.server`, because most scenarios exist to break HTTP in ways a well-behaved
library would refuse to produce.

Every loop is bounded: a server stops accepting after `lifetime` seconds, idle keep-alive
connections are dropped after `idle_timeout`, and the scenarios that stall or stream forever also
stop at a deadline or when the server stops, whichever comes first. `stop()` (or leaving the
`with` block) shuts down every open socket, which unblocks any thread stuck in `send`. Errors
raised inside server threads never escape as thread exceptions (pytest would turn those into
failing warnings): disconnects caused by the client are expected and ignored, anything else lands
in `server.errors` for a test to assert on.

MisbehavingServer scenarios, one per path (query parameters in brackets, with their defaults):

Well-behaved references
    /ok [delay=0, size=2]       200 with a small body, keep-alive; `size` bytes of "o"s, else "ok".
    /chunked                    200 with a valid chunked body ("hello world"), keep-alive.
    /keepalive-close [after=0]  200 "ok" announcing keep-alive, then closes the idle socket
                                `after` seconds later: the stale pooled connection case.
    /flaky [fail=1, status=503, retry_after=]
                                answers `status` (with Retry-After when given) to the first
                                `fail` arrivals of this exact target, then 200 "ok".
    /unavailable [retry_after=3600]
                                503 with a Retry-After header, always.
    anything else               404.

Broken connections and framing
    /reset-before-status        reads the request, then resets the connection (RST): the request
                                reached the server but no byte of a response came back.
    /reset-mid-body             headers (Content-Length 100000) and 1000 body bytes, then RST.
    /close-after-headers        headers announcing 1000 body bytes, then a clean close (FIN).
    /short-body                 Content-Length 100 but only 50 bytes, then close.
    /bad-chunked                a chunk-size line that is not hex.
    /chunked-truncated          one good chunk, then close with no terminating chunk.
    /garbage-status             a status line that is not HTTP.
    /http09                     an HTTP/0.9-style answer: the body alone, no status line.

Slow and endless peers
    /trickle [interval=1, bytes=30, part=body]
                                slowloris: headers at once, then the body one byte per `interval`
                                seconds (part=head trickles the status line and headers too).
    /endless [framing=chunked, limit=30, max_mb=inf]
                                a body that never ends (chunked, or close-delimited with
                                framing=close), sent until the client goes away, the server stops,
                                `limit` seconds pass or `max_mb` MiB are sent (then a plain close).
    /never-answer [hold=30]     reads the request and never answers (holds the socket `hold` s).
    unresponsive_listener()     (a separate context manager) a port whose accept queue is full,
                                so connecting to it times out: the connect-timeout case.

Oversized heads
    /huge-header                a single 1 MiB header line.
    /many-headers [n=10000]     `n` headers.

Hostile bodies
    /gzip-bomb                  Content-Encoding gzip, about 1 MB that inflates to 1 GiB of zeros.
    /nested-bomb                Content-Encoding "deflate, gzip": a few KB of gzip around a raw
                                deflate stream that inflates to 4 GiB of zeros.
    /nested-encoding            Content-Encoding "deflate, gzip" around NESTED_PLAIN (benign).
    /bad-gzip                   Content-Encoding gzip with a corrupt body.
    /links [n=100000]           an HTML page with `n` links.
    /long-url [length=65536]    an HTML page with one link whose URL is `length` characters.
    /utf16                      an HTML page in UTF-16 (with BOM), charset=utf-16.
    /bad-utf8                   invalid UTF-8 bytes served as "charset=utf-8".
    /cal/YYYY-MM-DD             an endless calendar: each day links to the next one.

Redirects
    /redirect-loop              302 to itself, forever.
    /redirect-chain/N           302 to /redirect-chain/N-1; /redirect-chain/0 answers 200 "ok"
                                (so /redirect-chain/50 is 50 redirects).
    /redirect-file              302 to file:///etc/passwd.
    /redirect-ftp               302 to ftp://127.0.0.1:<port>/ok.
    /redirect-javascript        302 to javascript:alert(1).
    /redirect-crlf              302 whose Location is folded over two lines (obs-fold), so an
                                unfolding parser sees "/ok" CR LF "X-Injected: yes".
    /redirect-cr                302 whose Location holds a bare CR: "/ok<CR>X-Injected: yes".
    /redirect-crlf-encoded      302 to "/ok%0D%0AX-Injected:%20yes" (must stay encoded).

Every server records each request (`arrivals`, `count(path)`) and the most connections open at
once (`max_open`; a connection counts from accept until either side closes it).
ConcurrencyServer answers every path with 200 (a body from `pages`, else "ok"; `?delay=` seconds
before answering) and also records, per Host header, the most connections open at once and the
arrival time of every request. It can listen on
several 127.0.0.x addresses at one port so that tests get several origins from one server.

Either server speaks TLS when given `tls_context=` (a server-side `ssl.SSLContext`): each accepted
socket is wrapped before the first request is read, and a failed handshake just ends that
connection.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import socket
import ssl
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"

# Errors a connection thread expects when the client hangs up or the server stops.
_DISCONNECTS = (ConnectionError, TimeoutError, OSError)

_MAX_REQUEST_HEAD = 1 << 20


class _Stopped(Exception):
    """The server is stopping, or the peer went away: end this connection quietly."""


@dataclass(frozen=True)
class Arrival:
    """One request as the server received it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    head: bytes
    time: float
    conn_id: int

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class Connection:
    """A server-side socket with a read buffer, handed to scenarios."""

    def __init__(self, sock: socket.socket, server: LoopbackServer, conn_id: int) -> None:
        self.sock = sock
        self.server = server
        self.conn_id = conn_id
        self._buf = b""
        sock.settimeout(0.1)

    def _recv_some(self, deadline: float) -> bytes:
        while True:
            if self.server.stopping or time.monotonic() > deadline:
                raise _Stopped
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise _Stopped
            return data

    def read_request(self) -> Arrival | None:
        """The next request on this connection, or None once the peer is gone or idle too long."""
        deadline = time.monotonic() + self.server.idle_timeout
        try:
            while b"\r\n\r\n" not in self._buf:
                if len(self._buf) > _MAX_REQUEST_HEAD:
                    return None
                self._buf += self._recv_some(deadline)
            head, self._buf = self._buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = [*lines[0].split(" ", 2), "", ""][:3]
            headers = tuple(
                (key.strip(), value.strip())
                for key, _, value in (line.partition(":") for line in lines[1:])
            )
            arrival_time = time.monotonic()
            body = self._read_body(headers, deadline)
        except _Stopped:
            return None
        return Arrival(method, target, headers, body, head, arrival_time, self.conn_id)

    def _read_body(self, headers: tuple[tuple[str, str], ...], deadline: float) -> bytes:
        fields = {key.lower(): value for key, value in headers}
        if "chunked" in fields.get("transfer-encoding", "").lower():
            body = b""
            while True:
                while b"\r\n" not in self._buf:
                    self._buf += self._recv_some(deadline)
                size_line, self._buf = self._buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self._buf) < size + 2:
                    self._buf += self._recv_some(deadline)
                body += self._buf[:size]
                self._buf = self._buf[size + 2 :]
                if size == 0:
                    # Trailers are not expected from our clients; the CRLF was consumed above.
                    return body
        length = int(fields.get("content-length", "0") or 0)
        while len(self._buf) < length:
            self._buf += self._recv_some(deadline)
        body, self._buf = self._buf[:length], self._buf[length:]
        return body

    def send(self, data: bytes) -> None:
        self.sock.settimeout(5.0)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.settimeout(0.1)

    def respond(
        self,
        status: int,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        *,
        reason: str = "",
        keep_alive: bool = True,
    ) -> bool:
        """Send a complete, well-formed response; return `keep_alive` for the caller to pass on."""
        lines = [f"HTTP/1.1 {status} {reason or _REASONS.get(status, 'Whatever')}"]
        for key, value in headers or []:
            lines.append(f"{key}: {value}")
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return keep_alive

    def reset(self) -> None:
        """Abort with a TCP RST instead of a FIN (SO_LINGER with a zero timeout)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def wait(self, seconds: float) -> None:
        """Sleep, but give up at once when the server stops."""
        if self.server.stop_event.wait(seconds):
            raise _Stopped


_REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class LoopbackServer:
    """Accept loop, connection threads, arrivals and shutdown; subclasses implement `handle`."""

    def __init__(
        self,
        addresses: tuple[str, ...] = (LOOPBACK,),
        port: int = 0,
        *,
        lifetime: float = 120.0,
        idle_timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        for address in addresses:
            if not address.startswith("127."):
                raise ValueError(f"loopback addresses only, not {address!r}")
        self.addresses = addresses
        self.host = addresses[0]
        self._requested_port = port
        self.port = 0
        self.lifetime = lifetime
        self.idle_timeout = idle_timeout
        self.tls_context = tls_context
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._next_conn_id = 0
        self.connections_accepted = 0
        self.max_open = 0
        self._live: dict[int, socket.socket] = {}

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> LoopbackServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.host}:{self.port} {len(self._sockets)} open "
            f"{len(self.arrivals)} requests>"
        )

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def start(self) -> None:
        for _attempt in range(20):
            try:
                self._bind_all()
                break
            except OSError:
                self._close_listeners()
        else:
            raise OSError(f"could not bind one port on all of {self.addresses}")
        deadline = time.monotonic() + self.lifetime
        for listener in self._listeners:
            thread = threading.Thread(
                target=self._accept_loop, args=(listener, deadline), daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _bind_all(self) -> None:
        port = self._requested_port
        for address in self.addresses:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listeners.append(listener)
            listener.bind((address, port))
            listener.listen(128)
            listener.settimeout(0.1)
            port = listener.getsockname()[1]
        self.port = port

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners = []

    def stop(self) -> None:
        self.stop_event.set()
        self._close_listeners()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=2.0)

    def url(self, path: str = "/", host: str | None = None) -> str:
        scheme = "https" if self.tls_context is not None else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    # -- bookkeeping -----------------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """How many requests arrived (for `path`, matched without the query string)."""
        with self._lock:
            return sum(1 for a in self.arrivals if path is None or a.path == path)

    def requests_to(self, path: str) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if a.path == path]

    def record(self, arrival: Arrival) -> None:
        with self._lock:
            self.arrivals.append(arrival)

    # -- threads ---------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, deadline: float) -> None:
        while not self.stopping and time.monotonic() < deadline:
            try:
                sock, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                self._sockets.add(sock)
                conn_id = self._next_conn_id
                self._next_conn_id += 1
                self.connections_accepted += 1
            self.opened(conn_id, sock)
            thread = threading.Thread(target=self._serve, args=(sock, conn_id), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, conn_id: int) -> None:
        try:
            if self.tls_context is not None:
                sock = self._handshake(sock)
            self.handle(Connection(sock, self, conn_id))
        except (_Stopped, *_DISCONNECTS):
            pass
        except BaseException as exc:  # recorded for the test, never leaked as a thread error
            with self._lock:
                self.errors.append(exc)
        finally:
            with self._lock:
                self._sockets.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()
            self.closed(conn_id)

    def _handshake(self, raw: socket.socket) -> socket.socket:
        """Wrap an accepted socket in TLS; a failed handshake ends the connection quietly."""
        raw.settimeout(5.0)
        assert self.tls_context is not None
        tls = self.tls_context.wrap_socket(raw, server_side=True)
        with self._lock:
            self._sockets.discard(raw)
            self._sockets.add(tls)
        return tls

    # -- hooks -----------------------------------------------------------------------------

    # A connection thread may notice a client's close a little late (it has to be scheduled),
    # so "open" is decided by peeking at each socket when a new one arrives: one the client has
    # closed reads as EOF at once. This keeps max_open exact instead of overcounting.

    def _count_live(self, conn_ids: list[int]) -> int:
        live = self._live
        return sum(1 for c in conn_ids if c in live and not _peer_gone(live[c]))

    @property
    def open_now(self) -> int:
        """Connections open right now (not closed by either side)."""
        with self._lock:
            return self._count_live(list(self._live))

    def opened(self, conn_id: int, sock: socket.socket) -> None:
        """Called when a connection is accepted: updates `max_open`."""
        with self._lock:
            self._live[conn_id] = sock
            self.max_open = max(self.max_open, self._count_live(list(self._live)))

    def closed(self, conn_id: int) -> None:
        """Called when a connection's thread is done with it."""
        with self._lock:
            self._live.pop(conn_id, None)

    def handle(self, conn: Connection) -> None:
        raise NotImplementedError


# -- hostile bodies, built once per process on first use -------------------------------------

NESTED_PLAIN = b"nested deflate-in-gzip body\n" * 100


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def _deflate_zeros(total: int, segment: int = 16 << 20, crc: bool = True) -> tuple[bytes, int]:
    """A raw deflate stream of `total` zero bytes, and the CRC-32 of those zeros (or 0).

    The stream is compressed segment by segment with a full flush after each one; a full flush
    resets the compressor, so every segment after the first compresses to the same bytes and
    gigabytes of zeros cost one segment's work plus a byte copy.
    """
    if total % segment:
        raise ValueError("total must be a multiple of segment")
    zeros = bytes(segment)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush()
    count = total // segment
    checksum = 0
    for _ in range(count if crc else 0):
        checksum = zlib.crc32(zeros, checksum)
    return first + repeated * (count - 1) + tail, checksum


@functools.cache
def gzip_bomb() -> bytes:
    """About 1 MB of gzip that inflates to 1 GiB of zeros (with a correct CRC and size)."""
    size = 1 << 30
    stream, crc = _deflate_zeros(size)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + stream + struct.pack("<II", crc, size & 0xFFFFFFFF)


@functools.cache
def nested_bomb() -> bytes:
    """A few KB: gzip around a raw deflate stream of 4 GiB of zeros ("deflate, gzip")."""
    inner, _ = _deflate_zeros(4 << 30, crc=False)  # raw deflate carries no checksum
    return _gzip(inner)


def _nested_encoding() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15)
    return _gzip(compressor.compress(NESTED_PLAIN) + compressor.flush())


# -- the misbehaving server ------------------------------------------------------------------

Scenario = Callable[["MisbehavingServer", Connection, Arrival, dict[str, str]], bool]
_SCENARIOS: dict[str, Scenario] = {}
_PREFIX_SCENARIOS: dict[str, Scenario] = {}


def _scenario(path: str) -> Callable[[Scenario], Scenario]:
    def register(func: Scenario) -> Scenario:
        if path.endswith("/"):
            _PREFIX_SCENARIOS[path] = func
        else:
            _SCENARIOS[path] = func
        return func

    return register


class MisbehavingServer(LoopbackServer):
    """One scenario per path; see the module docstring for the list."""

    def __init__(
        self,
        addresses: tuple[str, ...] = (LOOPBACK,),
        *,
        lifetime: float = 120.0,
        idle_timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(
            addresses, lifetime=lifetime, idle_timeout=idle_timeout, tls_context=tls_context
        )
        self._target_counts: Counter[str] = Counter()

    def handle(self, conn: Connection) -> None:
        while (arrival := conn.read_request()) is not None:
            self.record(arrival)
            with self._lock:
                self._target_counts[arrival.target] += 1
            parts = urlsplit(arrival.target)
            query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
            scenario = _SCENARIOS.get(parts.path)
            if scenario is None:
                for prefix, func in _PREFIX_SCENARIOS.items():
                    if parts.path.startswith(prefix):
                        scenario = func
                        break
            if scenario is None:
                scenario = _not_found
            if not scenario(self, conn, arrival, query):
                return

    def target_count(self, target: str) -> int:
        with self._lock:
            return self._target_counts[target]


def _not_found(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return conn.respond(404, b"not found")


@_scenario("/ok")
def _ok(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    conn.wait(float(q.get("delay", 0)))
    size = int(q.get("size", 2))
    return conn.respond(200, b"ok" if size == 2 else b"o" * size)


@_scenario("/chunked")
def _chunked(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    conn.send(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    return True


@_scenario("/keepalive-close")
def _keepalive_close(
    server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict
) -> bool:
    conn.respond(200, b"ok", keep_alive=True)
    conn.wait(float(q.get("after", 0)))
    return False


@_scenario("/flaky")
def _flaky(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    if server.target_count(arrival.target) <= int(q.get("fail", 1)):
        headers = [("Retry-After", q["retry_after"])] if "retry_after" in q else []
        return conn.respond(int(q.get("status", 503)), b"try later", headers)
    return conn.respond(200, b"ok")


@_scenario("/unavailable")
def _unavailable(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return conn.respond(503, b"busy", [("Retry-After", q.get("retry_after", "3600"))])


@_scenario("/reset-before-status")
def _reset_before_status(
    server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict
) -> bool:
    conn.reset()
    return False


@_scenario("/reset-mid-body")
def _reset_mid_body(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    conn.wait(0.05)
    conn.reset()
    return False


@_scenario("/close-after-headers")
def _close_after_headers(
    server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict
) -> bool:
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    return False


@_scenario("/short-body")
def _short_body(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"s" * 50)
    return False


@_scenario("/bad-chunked")
def _bad_chunked(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    conn.send(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nzz-not-hex\r\nworld\r\n0\r\n\r\n"
    )
    conn.wait(0.2)
    return False


@_scenario("/chunked-truncated")
def _chunked_truncated(
    server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict
) -> bool:
    conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nabc")
    return False


@_scenario("/garbage-status")
def _garbage_status(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    conn.send(b"SPDY/99 banana split\r\nContent-Length: 2\r\n\r\nok")
    return False


@_scenario("/http09")
def _http09(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    conn.send(b"<html><body>an HTTP/0.9 answer has no status line</body></html>\n")
    return False


@_scenario("/trickle")
def _trickle(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    interval = float(q.get("interval", 1))
    count = int(q.get("bytes", 30))
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {count}\r\n\r\n".encode()
    body = b"t" * count
    if q.get("part", "body") == "head":
        drip = head + body
    else:
        conn.send(head)
        drip = body
    for i in range(len(drip)):
        conn.wait(interval)
        conn.send(drip[i : i + 1])
    return False


@_scenario("/endless")
def _endless(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    chunked = q.get("framing", "chunked") != "close"
    deadline = time.monotonic() + float(q.get("limit", 30))
    block = b"e" * 16384
    if chunked:
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        block = b"4000\r\n" + block + b"\r\n"
    else:
        conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    budget = float(q.get("max_mb", "inf")) * 2**20  # a cap, so a client without one stays bounded
    while time.monotonic() < deadline and not server.stopping and budget > 0:
        conn.send(block)
        budget -= 16384
    return False


@_scenario("/never-answer")
def _never_answer(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    conn.wait(float(q.get("hold", 30)))
    return False


@_scenario("/huge-header")
def _huge_header(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    conn.send(
        b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * (1 << 20) + b"\r\nContent-Length: 2\r\n\r\nok"
    )
    return False


@_scenario("/many-headers")
def _many_headers(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    count = int(q.get("n", 10000))
    lines = b"".join(b"X-Header-%d: %d\r\n" % (i, i) for i in range(count))
    conn.send(b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\nok")
    return False


@_scenario("/gzip-bomb")
def _gzip_bomb(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return conn.respond(200, gzip_bomb(), [("Content-Encoding", "gzip")], keep_alive=False)


@_scenario("/nested-bomb")
def _nested_bomb(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    headers = [("Content-Encoding", "deflate, gzip")]
    return conn.respond(200, nested_bomb(), headers, keep_alive=False)


@_scenario("/nested-encoding")
def _nested(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return conn.respond(200, _nested_encoding(), [("Content-Encoding", "deflate, gzip")])


@_scenario("/bad-gzip")
def _bad_gzip(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    body = bytearray(_gzip(b"a perfectly fine body " * 50))
    body[12:20] = b"\xff" * 8  # clobber the start of the deflate stream
    return conn.respond(200, bytes(body), [("Content-Encoding", "gzip")])


def _html(body: str) -> str:
    return f"<!DOCTYPE html><html><head><title>t</title></head><body>{body}</body></html>"


@_scenario("/links")
def _links(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    count = int(q.get("n", 100000))
    links = "".join(f'<a href="/links/{i}">{i}</a>\n' for i in range(count))
    return conn.respond(200, _html(links).encode(), [("Content-Type", "text/html")])


@_scenario("/long-url")
def _long_url(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    length = int(q.get("length", 65536))
    url = "/long/" + "a" * (length - len("/long/"))
    page = _html(f'<a href="{url}">a very long link</a>')
    return conn.respond(200, page.encode(), [("Content-Type", "text/html")])


UTF16_TEXT = "Grüße, 世界: a UTF-16 page"


@_scenario("/utf16")
def _utf16(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    page = _html(f'<p>{UTF16_TEXT}</p><a href="/ok">ok</a>').encode("utf-16")
    return conn.respond(200, page, [("Content-Type", "text/html; charset=utf-16")])


BAD_UTF8 = (
    b"<html><body><p>caf\xe9 \xff\xfe \xc3\x28 \xed\xa0\x80</p><a href='/ok'>ok</a></body></html>"
)


@_scenario("/bad-utf8")
def _bad_utf8(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return conn.respond(200, BAD_UTF8, [("Content-Type", "text/html; charset=utf-8")])


@_scenario("/cal/")
def _calendar(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    try:
        day = datetime.date.fromisoformat(arrival.path.removeprefix("/cal/"))
    except ValueError:
        return conn.respond(404, b"no such day")
    following = day + datetime.timedelta(days=1)
    page = _html(f'<h1>{day.isoformat()}</h1><a href="/cal/{following.isoformat()}">next</a>')
    return conn.respond(200, page.encode(), [("Content-Type", "text/html")])


def _redirect(conn: Connection, location: bytes, status: int = 302) -> bool:
    conn.send(
        b"HTTP/1.1 %d Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % (status, location)
    )
    return True


@_scenario("/redirect-loop")
def _redirect_loop(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return _redirect(conn, b"/redirect-loop")


@_scenario("/redirect-chain/")
def _redirect_chain(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    remaining = int(arrival.path.removeprefix("/redirect-chain/") or 0)
    if remaining <= 0:
        return conn.respond(200, b"ok")
    return _redirect(conn, b"/redirect-chain/%d" % (remaining - 1))


@_scenario("/redirect-file")
def _redirect_file(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return _redirect(conn, b"file:///etc/passwd")


@_scenario("/redirect-ftp")
def _redirect_ftp(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return _redirect(conn, b"ftp://127.0.0.1:%d/ok" % server.port)


@_scenario("/redirect-javascript")
def _redirect_js(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return _redirect(conn, b"javascript:alert(1)")


@_scenario("/redirect-crlf")
def _redirect_crlf(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return _redirect(conn, b"/ok\r\n X-Injected: yes")


@_scenario("/redirect-cr")
def _redirect_cr(server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict) -> bool:
    return _redirect(conn, b"/ok\rX-Injected: yes")


@_scenario("/redirect-crlf-encoded")
def _redirect_crlf_encoded(
    server: MisbehavingServer, conn: Connection, arrival: Arrival, q: dict
) -> bool:
    return _redirect(conn, b"/ok%0D%0AX-Injected:%20yes")


# -- a server that counts concurrency --------------------------------------------------------


class ConcurrencyServer(LoopbackServer):
    """200 for every path, recording concurrency and arrival times per Host header."""

    def __init__(
        self,
        addresses: tuple[str, ...] = (LOOPBACK,),
        *,
        pages: dict[str, bytes] | None = None,
        delay: float = 0.0,
        lifetime: float = 120.0,
        idle_timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(
            addresses, lifetime=lifetime, idle_timeout=idle_timeout, tls_context=tls_context
        )
        self.pages = pages or {}
        self.delay = delay
        self.max_open_per_host: Counter[str] = Counter()
        self.arrival_times: defaultdict[str, list[float]] = defaultdict(list)
        self._conn_host: dict[int, str] = {}

    def closed(self, conn_id: int) -> None:
        with self._lock:
            self._live.pop(conn_id, None)
            self._conn_host.pop(conn_id, None)

    def handle(self, conn: Connection) -> None:
        while (arrival := conn.read_request()) is not None:
            host = arrival.header("host") or ""
            with self._lock:
                self.arrivals.append(arrival)
                self.arrival_times[host].append(arrival.time)
                if conn.conn_id not in self._conn_host:
                    self._conn_host[conn.conn_id] = host
                    same_host = [c for c, h in self._conn_host.items() if h == host]
                    self.max_open_per_host[host] = max(
                        self.max_open_per_host[host], self._count_live(same_host)
                    )
            query = parse_qs(urlsplit(arrival.target).query)
            delay = float(query.get("delay", [self.delay])[-1])
            if delay:
                conn.wait(delay)
            body = self.pages.get(arrival.path, b"ok")
            if not conn.respond(200, body, [("Content-Type", "text/html")]):
                return


def _peer_gone(sock: socket.socket) -> bool:
    """Has the client closed (or reset) this socket? Never blocks, never consumes data."""
    if sock.fileno() < 0:
        return True
    if isinstance(sock, ssl.SSLSocket):
        return False  # TLS cannot peek at the raw stream; trust the connection thread
    # Never peek through `sock` itself: it belongs to its connection thread, and a socket in
    # timeout mode polls for up to its timeout (as it stood when the call began: the 5 s of
    # `Connection.send`) whenever the bytes seen as readable are taken by that thread first.
    # We hold the server lock here, so that stalled every connection thread for 5 s. A socket
    # object on a duplicate descriptor has the default timeout (None), so its recv goes straight
    # to the kernel, and MSG_DONTWAIT makes that return at once, without touching `sock`.
    try:
        with socket.fromfd(sock.fileno(), sock.family, sock.type) as probe:
            return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # nothing to read: still open
    except OSError:
        return True


# -- other helpers ---------------------------------------------------------------------------


@contextlib.contextmanager
def unresponsive_listener() -> Iterator[int]:
    """Yield a loopback port whose accept queue is full, so that a new connect() times out.

    A listener with a backlog of 0 that never accepts holds one queued connection; with that slot
    taken by a filler socket, Linux drops further SYNs and the client's connect hangs.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.settimeout(0.2)
            try:
                filler.connect((LOOPBACK, port))
            except TimeoutError:
                break  # the queue is full now
        yield port
    finally:
        for sock in fillers:
            sock.close()
        listener.close()
