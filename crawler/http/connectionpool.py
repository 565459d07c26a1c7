"""Per-host connection pools: a LIFO of ``maxsize`` lazily filled slots.

How this works: the pool's state is ``_idle`` (a list used as a stack, so the most
recently returned connection is reused first), ``_free`` (slots not yet holding a
connection) and ``_in_use`` (connections checked out to callers), all changed under one
lock. With ``block=True``, ``_in_use + len(_idle) + _free == maxsize`` always holds, so
no more than ``maxsize`` sockets can exist. With ``block=False`` a caller finding every
slot busy gets an extra connection, which is closed when it comes back to a full pool.
Connecting and closing happen outside the lock. Every path that takes a connection gives
it back exactly once: to ``_idle`` when it can carry another request, else as an empty
slot after closing it (``_put_conn(None)``).
"""

from __future__ import annotations

import enum
import io
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._collections import HTTPHeaderDict
from ._protocol import build_request_head, header_block
from ._request_methods import RequestMethods
from .connection import HTTPConnection, HTTPSConnection, StaleConnectionError, make_ssl_context
from .exceptions import (
    ClosedPoolError,
    DecodeError,
    EmptyPoolError,
    HostChangedError,
    HTTPError,
    LocationParseError,
    MaxRetryError,
    NewConnectionError,
)
from .response import DEFAULT_MAX_DECODED_SIZE, REDIRECT_STATUSES, HTTPResponse
from .util.redirect import is_body_header, redirect_method
from .util.resolve import pinned_address
from .util.retry import IDEMPOTENT_METHODS, RETRY_AFTER_STATUS_CODES, Retry
from .util.timeout import Timeout
from .util.url import DEFAULT_PORTS, join_url, parse_url

if TYPE_CHECKING:
    from .proxy import ProxyConfig

__all__ = ["ConnectionPool", "HTTPConnectionPool", "HTTPSConnectionPool", "connection_from_url"]

log = logging.getLogger("crawler.http")

_DEFAULT: Any = object()
DEFAULT_USER_AGENT = "crawler-http/0.1"
DEFAULT_ACCEPT_ENCODING = "gzip, deflate"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SINGLE_SEND_LIMIT = 64 * 1024
# Retries of a reused connection the server closed just as we sent on it are free.
_MAX_STALE_RETRIES = 4

_ABANDON_SCAN = 0.1


class _Busy(enum.Enum):
    ALL = enum.auto()  # _take's answer when every slot is busy


_ERRORS_NOT_RETRIED = (EmptyPoolError, ClosedPoolError, LocationParseError, DecodeError)


def _normalize_host(host: str) -> str:
    return host.strip("[]").lower()


class ConnectionPool:
    """Base class of the pools: a host, a port, ``close()`` and the context manager."""

    scheme: str | None = None

    def __init__(self, host: str, port: int | None = None) -> None:
        if not host:
            raise LocationParseError(repr(host), "no host given")
        self.host = _normalize_host(host)
        self.port = port

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pool's connections."""


class HTTPConnectionPool(ConnectionPool, RequestMethods):
    """Thread-safe pool of HTTP/1.1 connections to one host (urllib3's classic API)."""

    scheme = "http"
    ConnectionCls: type[HTTPConnection] = HTTPConnection

    def __init__(
        self,
        host: str,
        port: int | None = None,
        strict: bool = False,
        timeout: Timeout | float | None = None,
        maxsize: int = 1,
        block: bool = False,
        headers: Mapping[str, str] | None = None,
        retries: Retry | int | None = None,
        max_decoded_size: int | None = DEFAULT_MAX_DECODED_SIZE,
        **conn_kw: Any,
    ) -> None:
        super().__init__(host, port)
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.strict = strict  # accepted for compatibility: parsing is always strict
        self.maxsize = maxsize
        self.block = block
        self.max_decoded_size = max_decoded_size
        self.timeout = Timeout.coerce(timeout)
        self.retries = Retry.from_int(retries)
        default_port = DEFAULT_PORTS[self.scheme or "http"]
        self._port = port or default_port
        # resolve={name[:port]: address}: dial the pinned address; Host, SNI and the
        # certificate check keep the name (see util/resolve.py).
        resolve = conn_kw.pop("resolve", None)
        if resolve:
            address = pinned_address(resolve, self.host, self._port)
            if address is not None:
                conn_kw["dial_host"] = address
        # proxy=ProxyConfig: the connection dials the proxy; plain-http targets behind an
        # HTTP proxy are sent in absolute form with the proxy-only headers (see proxy.py).
        self.proxy: ProxyConfig | None = conn_kw.get("proxy")
        self._forward = self.proxy is not None and not self.proxy.is_socks and self.scheme == "http"
        self._proxy_lines = self.proxy.header_lines if self._forward and self.proxy else ""
        self.conn_kw = conn_kw
        self.num_connections = 0
        self.num_requests = 0
        host_h = f"[{self.host}]" if ":" in self.host else self.host
        self._host_line = (
            f"Host: {host_h}\r\n"
            if self._port == default_port
            else f"Host: {host_h}:{self._port}\r\n"
        )
        # Absolute URLs of this pool's own origin are the crawler's common case; recognising
        # them by prefix spares a full URL parse per request (measurable in the worker).
        origin = f"{self.scheme}://{host_h}"
        self._forward_prefix = f"{origin}:{self._port}" if self._port != default_port else origin
        self._origin_prefixes: tuple[str, ...] = (f"{origin}:{self._port}/",)
        if self._port == default_port:
            self._origin_prefixes += (f"{origin}/",)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._idle: list[HTTPConnection] = []
        self._free = maxsize
        self._in_use = 0
        self._closed = False
        self._retired = False
        self._leases: dict[int, tuple[weakref.ref[HTTPResponse], HTTPConnection]] = {}
        self.headers = HTTPHeaderDict(headers) if headers else {}

    # --- configuration -----------------------------------------------------------------------

    @property
    def headers(self) -> Mapping[str, str]:
        """Default request headers (replaced as a whole by a request's own ``headers``)."""
        return self._headers

    @headers.setter
    def headers(self, value: Mapping[str, str]) -> None:
        self._headers = value
        self._default_head = self._header_parts(value)

    @staticmethod
    def _header_parts(headers: Mapping[str, str]) -> tuple[str, frozenset[str], str]:
        block, names = header_block(headers)
        extra = ""
        if "accept-encoding" not in names:
            extra += f"Accept-Encoding: {DEFAULT_ACCEPT_ENCODING}\r\n"
        if "user-agent" not in names:
            extra += f"User-Agent: {DEFAULT_USER_AGENT}\r\n"
        return block, names, extra

    # --- slot accounting ----------------------------------------------------------------------

    @property
    def num_in_use(self) -> int:
        """Connections currently checked out to callers (including unread responses)."""
        return self._in_use

    @property
    def num_idle(self) -> int:
        """Open connections waiting in the pool for reuse."""
        return len(self._idle)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.host}:{self._port} "
            f"{len(self._idle)} idle {self._in_use} busy>"
        )

    def _get_conn(self, timeout: float | None = None) -> HTTPConnection | None:
        """Check out a connection; ``None`` means "open a new one in this slot"."""
        to_close: list[HTTPConnection] = []
        try:
            with self._lock:
                return self._checkout(timeout, to_close)
        finally:
            for conn in to_close:
                conn.close()

    def _checkout(
        self, timeout: float | None, to_close: list[HTTPConnection]
    ) -> HTTPConnection | None:
        # Called with the lock held. None means "open a new connection in this slot".
        taken = self._take(to_close)
        if taken is not _Busy.ALL:
            return taken
        if not self.block:
            self._in_use += 1  # an extra connection beyond maxsize
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise EmptyPoolError(
                    self,
                    f"Pool reached maximum size ({self.maxsize}) and no connection "
                    f"was freed within pool_timeout={timeout}",
                )
            # Wake up now and then to notice responses dropped without being released.
            self._cond.wait(_ABANDON_SCAN if left is None else min(left, _ABANDON_SCAN))
            taken = self._take(to_close)
            if taken is not _Busy.ALL:
                return taken

    def _take(self, to_close: list[HTTPConnection]) -> HTTPConnection | _Busy | None:
        """With the lock held: an idle connection, None for a free slot, or ``_Busy.ALL``."""
        if self._closed:
            raise ClosedPoolError(self, "Pool is closed.")
        if self._idle:
            self._in_use += 1
            return self._idle.pop()
        if self._free <= 0 and self._leases:
            self._reclaim_abandoned(to_close)
        if self._free > 0:
            self._free -= 1
            self._in_use += 1
            return None
        return _Busy.ALL

    def _lease(self, conn: HTTPConnection, response: HTTPResponse) -> None:
        """Note that ``response`` holds ``conn`` (a streamed, not yet released body)."""
        with self._lock:
            self._leases[id(conn)] = (weakref.ref(response), conn)

    def _reclaim_abandoned(self, to_close: list[HTTPConnection]) -> None:
        """Take back slots of streamed responses that were dropped without a release.

        Done by a caller that needs a slot, never from a finalizer: the garbage collector
        only clears the weak reference, and the connection is closed here, outside it.
        """
        for key, (ref, conn) in list(self._leases.items()):
            if ref() is None:
                del self._leases[key]
                self._in_use -= 1
                if len(self._idle) + self._free < self.maxsize:
                    self._free += 1
                to_close.append(conn)
                log.warning("Reclaimed a connection from a response dropped unreleased")

    def _put_conn(self, conn: HTTPConnection | None, lease: int = 0) -> None:
        """Give back a checked-out connection, or ``None`` for a closed one's slot.

        ``lease`` is the ``id()`` of the connection a streamed response held.
        """
        discard = None
        with self._lock:
            if lease:
                self._leases.pop(lease, None)
            self._in_use -= 1
            if self._closed or self._retired:
                discard = conn
                if not self._closed:
                    self._free += 1
                    self._cond.notify()
            elif len(self._idle) + self._free < self.maxsize:
                if conn is None:
                    self._free += 1
                else:
                    self._idle.append(conn)
                self._cond.notify()
            else:
                discard = conn
        if discard is not None:
            if not self._closed and not self._retired:
                log.warning("Connection pool is full, discarding connection: %s", self.host)
            discard.close()

    def _new_conn(self) -> HTTPConnection:
        with self._lock:
            self.num_connections += 1
            count = self.num_connections
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "Starting new %s connection (%d): %s:%s", self.scheme, count, self.host, self._port
            )
        return self.ConnectionCls(self.host, self._port, **self.conn_kw)

    def close(self) -> None:
        """Close idle connections now; busy ones are closed when they come back."""
        abandoned: list[HTTPConnection] = []
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            if self._leases:
                self._reclaim_abandoned(abandoned)
            self._cond.notify_all()
        for conn in idle + abandoned:
            conn.close()

    def _retire(self) -> None:
        """Stop keeping connections but keep serving callers (a PoolManager eviction)."""
        with self._lock:
            self._retired = True
            idle, self._idle = self._idle, []
            self._free += len(idle)
        for conn in idle:
            conn.close()

    # --- URLs ----------------------------------------------------------------------------

    def is_same_host(self, url: str) -> bool:
        """Does ``url`` (absolute, or a path) belong to this pool's scheme, host and port?"""
        if url.startswith("/") or url.startswith(self._origin_prefixes):
            return True
        parsed = parse_url(url)
        if parsed.host is None:
            return True
        scheme = parsed.scheme or "http"
        port = parsed.port or DEFAULT_PORTS.get(scheme)
        return (scheme, _normalize_host(parsed.host), port) == (
            self.scheme,
            self.host,
            self._port,
        )

    def _absolute(self, target: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self._port}{target}"

    # --- the request loop ------------------------------------------------------------------

    def urlopen(
        self,
        method: str,
        url: str,
        body: bytes | str | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        retries: Retry | int | bool | None = None,
        redirect: bool = True,
        assert_same_host: bool = True,
        timeout: Timeout | float | None = _DEFAULT,
        pool_timeout: float | None = None,
        release_conn: bool | None = None,
        chunked: bool = False,
        body_pos: int | None = None,
        preload_content: bool = True,
        decode_content: bool = True,
        enforce_content_length: bool = True,
        max_decoded_size: int | None = _DEFAULT,
        **response_kw: Any,
    ) -> HTTPResponse:
        """Send one request (following retries and redirects) and return the response.

        ``headers=None`` sends the pool's default headers; ``retries`` allows that many
        retries, shared by errors and redirects; ``release_conn`` defaults to
        ``preload_content``.
        """
        if response_kw:
            raise TypeError(f"unexpected keyword arguments {sorted(response_kw)}")
        if headers is None:
            block, names, extra = self._default_head
        else:
            block, names, extra = self._header_parts(headers)
        if retries is None:
            retry = self.retries
        elif isinstance(retries, Retry):
            retry = retries
        else:
            retry = Retry.from_int(retries, redirect=redirect)
        if max_decoded_size is _DEFAULT:
            max_decoded_size = self.max_decoded_size
        timeout_obj = self.timeout if timeout is _DEFAULT else Timeout.coerce(timeout)
        upper = method.upper()

        if url.startswith("/"):
            target = url
        elif url.startswith(self._origin_prefixes):
            prefix = next(p for p in self._origin_prefixes if url.startswith(p))
            target = url[len(prefix) - 1 :].partition("#")[0]
        else:
            if not self.is_same_host(url):
                if assert_same_host:
                    raise HostChangedError(self, url, retry)
                target = url  # absolute form, as a proxy expects it
            else:
                target = parse_url(url).request_uri

        body_bytes, body_iter, rewind_to = _prepare_body(body, body_pos)
        if body_bytes is None and body_iter is None and upper in _BODY_METHODS:
            body_bytes = b""
        use_chunked = body_iter is not None and (chunked or "content-length" not in names)
        stale_retries = 0
        one_shot_sent = False

        while True:
            if self._forward:
                # Through an HTTP proxy: absolute form on the request line, proxy headers.
                line_target = self._forward_prefix + target if target[:1] == "/" else target
                line_extra = extra + self._proxy_lines
            else:
                line_target, line_extra = target, extra
            head_bytes = build_request_head(
                method,
                line_target,
                self._host_line,
                block,
                names,
                line_extra,
                None if body_bytes is None else len(body_bytes),
                use_chunked,
            )
            conn = self._get_conn(pool_timeout)
            reused = conn is not None
            try:
                if conn is not None and conn.is_dropped():
                    conn.close()  # the server closed it while idle: reopen, no retry used
                    conn = None
                    reused = False
                # Timeout.total is one deadline for this attempt: connect, send, head and
                # body (for a streamed response, until it is consumed or released).
                total = timeout_obj.total
                deadline = None if total is None else time.monotonic() + total
                if conn is None:
                    conn = self._new_conn()
                    conn.connect(timeout_obj.connect, deadline)
                conn.set_timeout(timeout_obj.read, deadline)
                with self._lock:
                    self.num_requests += 1
                if body_bytes is None:
                    conn.send(head_bytes)
                elif len(body_bytes) <= _SINGLE_SEND_LIMIT:
                    conn.send(head_bytes + body_bytes)
                else:
                    conn.send(head_bytes)
                    conn.send(body_bytes)
                if body_iter is not None:
                    _send_iter(conn, body_iter, use_chunked)
                    one_shot_sent = rewind_to is None
                head = conn.read_head(upper, enforce_content_length)
                response = HTTPResponse._from_head(
                    head,
                    conn,
                    self,
                    method,
                    url,
                    False,
                    decode_content,
                    max_decoded_size,
                    enforce_content_length,
                    retry,
                )
                conn = None  # the response owns it now
                if preload_content:
                    response._preload()
                elif response._connection is not None:
                    self._lease(response._connection, response)
                    response._lease = id(response._connection)
            except HTTPError as exc:
                if conn is not None:
                    conn.close()
                    self._put_conn(None)
                if isinstance(exc, _ERRORS_NOT_RETRIED):
                    raise
                if one_shot_sent:
                    raise  # a one-shot body was sent and cannot be sent again
                if (
                    reused
                    and isinstance(exc, StaleConnectionError)
                    and upper in IDEMPOTENT_METHODS
                    and stale_retries < _MAX_STALE_RETRIES
                ):
                    stale_retries += 1
                    continue
                retry = retry.increment(method, self._absolute(target), error=exc, _pool=self)
                if rewind_to is not None:
                    _rewind(body, rewind_to)
                retry.sleep()
                continue
            except BaseException:
                if conn is not None:
                    conn.close()
                    self._put_conn(None)
                raise

            status = response.status
            if redirect and status in REDIRECT_STATUSES:
                location = response.headers.get("location")
                if location:
                    try:
                        retry = retry.increment(
                            method, self._absolute(target), response=response, _pool=self
                        )
                    except MaxRetryError:
                        if retry.raise_on_redirect:
                            response.drain_conn()
                            raise
                        return response
                    response.drain_conn()
                    new_url = _resolve_location(self._absolute(target), location)
                    if redirect_method(status, upper) != upper:
                        method = upper = "GET"
                        body_bytes = body_iter = None
                        rewind_to = None
                        use_chunked = False
                        block, names, extra = _drop_body_headers(headers, block, names, extra)
                    if self.is_same_host(new_url):
                        target = parse_url(new_url).request_uri
                    elif assert_same_host:
                        raise HostChangedError(self, new_url, retry)
                    else:
                        target = new_url
                    url = new_url
                    if rewind_to is not None:
                        _rewind(body, rewind_to)
                    continue
            if status >= 400 or retry.status_forcelist:
                has_retry_after = (
                    status in RETRY_AFTER_STATUS_CODES and "retry-after" in response.headers
                )
                after = retry.get_retry_after(response) if has_retry_after else None
                if retry.is_retry(method, status, has_retry_after, after):
                    try:
                        retry = retry.increment(
                            method, self._absolute(target), response=response, _pool=self
                        )
                    except MaxRetryError:
                        if retry.raise_on_status:
                            response.drain_conn()
                            raise
                        return response
                    response.drain_conn()
                    retry.sleep(response)
                    if rewind_to is not None:
                        _rewind(body, rewind_to)
                    continue
            # Unless preloaded, the caller releases the connection: by reading to the end,
            # release_conn() or close(). release_conn=False with preloading changes nothing,
            # since holding a fully read connection would only waste a slot.
            return response


class HTTPSConnectionPool(HTTPConnectionPool):
    """Same as ``HTTPConnectionPool`` over TLS, verified against the system trust store.

    ``cert_reqs="CERT_NONE"`` turns verification off explicitly; ``ca_certs`` names a CA
    bundle; ``cert_file``/``key_file`` send a client certificate; ``ssl_context`` replaces
    all of those with a context of your own.
    """

    scheme = "https"
    ConnectionCls = HTTPSConnection

    def __init__(
        self,
        host: str,
        port: int | None = None,
        strict: bool = False,
        timeout: Timeout | float | None = None,
        maxsize: int = 1,
        block: bool = False,
        headers: Mapping[str, str] | None = None,
        key_file: str | None = None,
        cert_file: str | None = None,
        cert_reqs: str | int | None = "CERT_REQUIRED",
        ca_certs: str | None = None,
        retries: Retry | int | None = None,
        ssl_context: Any = None,
        server_hostname: str | None = None,
        ca_cert_dir: str | None = None,
        key_password: str | None = None,
        **conn_kw: Any,
    ) -> None:
        self.key_file = key_file
        self.cert_file = cert_file
        self.cert_reqs = cert_reqs
        self.ca_certs = ca_certs
        if ssl_context is None:
            ssl_context = make_ssl_context(
                cert_reqs, ca_certs, cert_file, key_file, ca_cert_dir, key_password
            )
        conn_kw["ssl_context"] = ssl_context
        if server_hostname is not None:
            conn_kw["server_hostname"] = server_hostname
        super().__init__(host, port, strict, timeout, maxsize, block, headers, retries, **conn_kw)


def connection_from_url(url: str, **kw: Any) -> HTTPConnectionPool:
    """The pool for ``url``'s scheme, host and port (``kw`` go to its constructor)."""
    parsed = parse_url(url)
    scheme = parsed.scheme or "http"
    if parsed.host is None:
        raise LocationParseError(url, "no host")
    port = parsed.port or DEFAULT_PORTS.get(scheme)
    if scheme == "https":
        return HTTPSConnectionPool(parsed.host, port=port, **kw)
    if scheme == "http":
        return HTTPConnectionPool(parsed.host, port=port, **kw)
    raise LocationParseError(url, f"unsupported scheme {scheme!r}")


# --- helpers ---------------------------------------------------------------------------------


def _prepare_body(
    body: Any, body_pos: int | None
) -> tuple[bytes | None, Iterable[bytes] | None, int | None]:
    """``(bytes_body, iterable_body, rewind_position)`` for what the caller passed."""
    if body is None:
        return None, None, None
    if isinstance(body, bytes):
        return body, None, None
    if isinstance(body, str):
        return body.encode("utf-8"), None, None
    if isinstance(body, bytearray | memoryview):
        return bytes(body), None, None
    if hasattr(body, "read"):
        pos = body_pos
        if pos is None:
            try:
                pos = body.tell()
            except (AttributeError, OSError, io.UnsupportedOperation):
                pos = None
        return None, _FileChunks(body), pos
    if isinstance(body, Iterable):
        return None, body, None
    raise TypeError(f"body must be bytes, str, a file or an iterable of bytes, not {type(body)}")


class _FileChunks:
    def __init__(self, fp: Any) -> None:
        self.fp = fp

    def __iter__(self) -> Any:
        while chunk := self.fp.read(64 * 1024):
            yield chunk.encode("utf-8") if isinstance(chunk, str) else chunk


def _rewind(body: Any, pos: int) -> None:
    try:
        body.seek(pos)
    except (AttributeError, OSError) as exc:
        raise NewConnectionError(f"cannot rewind the request body to retry: {exc}") from exc


def _send_iter(conn: HTTPConnection, chunks: Iterable[bytes], chunked: bool) -> None:
    for chunk in chunks:
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        if not chunk:
            continue
        if chunked:
            conn.send(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            conn.send(chunk)
    if chunked:
        conn.send(b"0\r\n\r\n")


def _resolve_location(base: str, location: str) -> str:
    """The absolute redirect target; control characters or odd schemes are refused."""
    parse_url(location)  # raises LocationParseError on CR/LF, controls, bad ports
    new_url = join_url(base, location)
    parsed = parse_url(new_url)
    if parsed.scheme not in ("http", "https"):
        raise LocationParseError(location, "redirect to a non-HTTP scheme")
    return new_url


def _drop_body_headers(
    headers: Mapping[str, str] | None, block: str, names: frozenset[str], extra: str
) -> tuple[str, frozenset[str], str]:
    """Header parts without the body's framing/type fields (a redirect turned into GET)."""
    if headers is None or not any(is_body_header(name) for name in names):
        return block, names, extra
    kept = HTTPHeaderDict(
        [(k, v) for k, v in HTTPHeaderDict(headers).iteritems() if not is_body_header(k.lower())]
    )
    return HTTPConnectionPool._header_parts(kept)
