"""The one exception tree of :mod:`crawler.http`.

::

    HTTPError(Exception)
    ├── PoolError                      .pool
    │   ├── EmptyPoolError             block=True pool had no free slot in time
    │   ├── ClosedPoolError            the pool was closed
    │   ├── HostChangedError           .url .retries: redirect/URL to another host
    │   └── MaxRetryError              .url .reason: attempts used up, last cause
    ├── TimeoutError (+ builtins.TimeoutError)
    │   ├── ConnectTimeoutError
    │   └── ReadTimeoutError
    ├── SSLError
    ├── ProtocolError (+ ConnectionError) the peer broke HTTP/1.1 or the connection
    │   └── NewConnectionError         could not open the connection (refused, DNS...)
    │       └── ProxyError             the proxy refused, failed or answered CONNECT badly
    ├── ResponseError                  why a response was retried (in MaxRetryError.reason)
    ├── DecodeError                    a content-coding could not be decoded
    │   └── BodyTooLargeError          the decoded body went past its cap
    ├── LocationParseError (+ ValueError) a URL we cannot parse
    └── HeaderInjectionError (+ ValueError) CR/LF/NUL in something we were asked to send

Socket, ``ssl`` and codec exceptions are translated into these at the boundary
(``raise ... from exc``), so callers never need to catch a foreign type.
"""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "BodyTooLargeError",
    "ClosedPoolError",
    "ConnectTimeoutError",
    "DecodeError",
    "EmptyPoolError",
    "HTTPError",
    "HeaderInjectionError",
    "HostChangedError",
    "LocationParseError",
    "MaxRetryError",
    "NewConnectionError",
    "PoolError",
    "ProtocolError",
    "ProxyError",
    "ReadTimeoutError",
    "ResponseError",
    "SSLError",
    "TimeoutError",
]


class HTTPError(Exception):
    """Base of every error raised by :mod:`crawler.http`."""


class PoolError(HTTPError):
    """An error tied to one pool, kept in ``.pool``."""

    def __init__(self, pool: Any, message: str) -> None:
        self.pool = pool
        super().__init__(f"{pool!r}: {message}")

    def __reduce__(self) -> Any:
        # Pools are not picklable; keep the message only.
        return (type(self), (None, str(self)))


class EmptyPoolError(PoolError):
    """A ``block=True`` pool had no free connection within ``pool_timeout``."""


class ClosedPoolError(PoolError):
    """The pool was closed before or while it was used."""


class HostChangedError(PoolError):
    """A URL (or a redirect) points at a host this pool does not serve."""

    def __init__(self, pool: Any, url: str, retries: Any = 3) -> None:
        self.url = url
        self.retries = retries
        super().__init__(pool, f"Tried to open a foreign host with url: {url}")


class MaxRetryError(PoolError):
    """Every allowed attempt failed; ``.reason`` is the last cause (or ``None``)."""

    def __init__(self, pool: Any, url: str, reason: BaseException | None = None) -> None:
        self.url = url
        self.reason = reason
        super().__init__(pool, f"Max retries exceeded with url: {url} (Caused by {reason!r})")


class TimeoutError(HTTPError, builtins.TimeoutError):
    """A connect or read timed out; also a built-in :class:`TimeoutError`."""


class ConnectTimeoutError(TimeoutError):
    """Opening the TCP (or TLS) connection took longer than the connect timeout."""


class ReadTimeoutError(TimeoutError):
    """The server did not send data within the read timeout."""


class SSLError(HTTPError):
    """The TLS handshake or certificate verification failed."""


class ProtocolError(HTTPError, ConnectionError):
    """The peer broke HTTP/1.1 framing or dropped the connection mid-exchange."""


class ResponseError(HTTPError):
    """Why responses were retried: too many redirects or error statuses."""


class NewConnectionError(ProtocolError):
    """The TCP connection could not be opened (refused, unreachable, name not found).

    Nothing reached the server, so this is always safe to retry.
    """


class DecodeError(HTTPError):
    """The body could not be decoded with its ``Content-Encoding``."""


class BodyTooLargeError(DecodeError):
    """The decoded body grew past ``max_decoded_size`` (a decompression-bomb guard)."""


class LocationParseError(HTTPError, ValueError):
    """A URL could not be parsed."""

    def __init__(self, location: str, why: str = "") -> None:
        self.location = location
        super().__init__(f"Failed to parse: {location!r}" + (f" ({why})" if why else ""))

    def __reduce__(self) -> Any:
        return (type(self), (self.location,))


class HeaderInjectionError(HTTPError, ValueError):
    """A method, target or header we were asked to send holds CR, LF or NUL."""


class ProxyError(NewConnectionError):
    """The proxy could not be reached, refused the tunnel or failed the SOCKS handshake.

    A subclass of :class:`NewConnectionError` because, to the caller, the connection to the
    target was never opened: the same retry rules apply. The message never carries the
    proxy's credentials.
    """
