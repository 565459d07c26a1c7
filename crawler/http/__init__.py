"""crawler.http: a fast, thread-safe per-host HTTP/1.1 connection pool (urllib3's classic API)."""

from __future__ import annotations

from ._collections import HTTPHeaderDict
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
    ReadTimeoutError,
    ResponseError,
    SSLError,
    TimeoutError,
)
from .util import Retry, Timeout, Url, encode_multipart_formdata, make_headers, parse_url

__all__ = [
    "BodyTooLargeError",
    "ClosedPoolError",
    "ConnectTimeoutError",
    "DecodeError",
    "EmptyPoolError",
    "HTTPError",
    "HTTPHeaderDict",
    "HeaderInjectionError",
    "HostChangedError",
    "LocationParseError",
    "MaxRetryError",
    "NewConnectionError",
    "PoolError",
    "ProtocolError",
    "ReadTimeoutError",
    "ResponseError",
    "Retry",
    "SSLError",
    "Timeout",
    "TimeoutError",
    "Url",
    "encode_multipart_formdata",
    "make_headers",
    "parse_url",
]
