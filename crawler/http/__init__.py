"""crawler.http: a fast, thread-safe per-host HTTP/1.1 connection pool (urllib3's classic API)."""

from __future__ import annotations

from ._collections import HTTPHeaderDict
from .connectionpool import (
    ConnectionPool,
    HTTPConnectionPool,
    HTTPSConnectionPool,
    connection_from_url,
)
from .exceptions import (
    BodyTooLargeError,
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
    EmptyPoolError,
    HeaderInjectionError,
    HostChangedError,
    HTTPError,
    LocationParseError,
    MaxRetryError,
    NewConnectionError,
    PoolError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
    TimeoutError,
)
from .poolmanager import PoolManager
from .proxy import ProxyConfig, ProxyManager, proxy_from_url, redact_proxy_url
from .response import HTTPResponse
from .util import Retry, Timeout, Url, encode_multipart_formdata, make_headers, parse_url

__all__ = [
    "BodyTooLargeError",
    "ClosedPoolError",
    "ConnectTimeoutError",
    "ConnectionPool",
    "DecodeError",
    "EmptyPoolError",
    "HTTPConnectionPool",
    "HTTPError",
    "HTTPHeaderDict",
    "HTTPResponse",
    "HTTPSConnectionPool",
    "HeaderInjectionError",
    "HostChangedError",
    "LocationParseError",
    "MaxRetryError",
    "NewConnectionError",
    "PoolError",
    "PoolManager",
    "ProtocolError",
    "ProxyConfig",
    "ProxyError",
    "ProxyManager",
    "ReadTimeoutError",
    "ResponseError",
    "Retry",
    "SSLError",
    "Timeout",
    "TimeoutError",
    "Url",
    "connection_from_url",
    "encode_multipart_formdata",
    "make_headers",
    "parse_url",
    "proxy_from_url",
    "redact_proxy_url",
]
