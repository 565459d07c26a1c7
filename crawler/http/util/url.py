"""``parse_url``: split a URL into a validated ``Url``; malformed ones raise.

We lean on :func:`urllib.parse.urlsplit` for the grammar and add what it lets through:
control characters anywhere, bad ports, empty or malformed hosts. Hosts are lower-cased
(they are case-insensitive) and IPv6 literals keep their brackets in ``netloc``.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

from ..exceptions import LocationParseError

__all__ = ["Url", "join_url", "parse_url"]

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_HOST_OK = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=-]*")
DEFAULT_PORTS = {"http": 80, "https": 443}


class Url(NamedTuple):
    """The parts of a URL; ``None`` for what it did not have."""

    scheme: str | None = None
    auth: str | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    query: str | None = None
    fragment: str | None = None

    @property
    def hostname(self) -> str | None:
        return self.host

    @property
    def request_uri(self) -> str:
        """The request target: path (at least ``/``) plus ``?query``."""
        uri = self.path or "/"
        if self.query is not None:
            uri += "?" + self.query
        return uri

    @property
    def netloc(self) -> str | None:
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port is not None else host

    @property
    def url(self) -> str:
        out = ""
        if self.scheme is not None:
            out += self.scheme + "://"
        if self.auth is not None:
            out += self.auth + "@"
        if self.netloc is not None:
            out += self.netloc
        if self.path is not None:
            out += self.path
        if self.query is not None:
            out += "?" + self.query
        if self.fragment is not None:
            out += "#" + self.fragment
        return out

    def __str__(self) -> str:
        return self.url


def parse_url(url: str) -> Url:
    """Parse ``url`` (absolute, scheme-relative or a bare path) or raise LocationParseError."""
    if not isinstance(url, str):
        raise LocationParseError(repr(url), "not a str")
    if _CONTROL.search(url.strip(" ")) is not None or " " in url:
        raise LocationParseError(url, "contains whitespace or control characters")
    source = url
    # "host:port/path" without a scheme is common input for connection_from_url.
    if "://" not in url and not url.startswith(("/", "?", "#")):
        source = "//" + url
    try:
        parts = urlsplit(source)
        port = parts.port
    except ValueError as exc:
        raise LocationParseError(url, str(exc)) from exc
    scheme = parts.scheme.lower() or None
    host = parts.hostname
    netloc = parts.netloc
    auth = netloc.rpartition("@")[0] if "@" in netloc else None
    if (netloc or "://" in url) and not host:
        raise LocationParseError(url, "empty host")
    if host is not None:
        if ":" in host:  # IPv6 literal; urlsplit already checked the brackets
            if not re.fullmatch(r"[0-9a-fA-F:.]+(%25[A-Za-z0-9._~-]+|%[A-Za-z0-9._~-]+)?", host):
                raise LocationParseError(url, "invalid IPv6 address")
        elif not _HOST_OK.fullmatch(host):
            raise LocationParseError(url, "invalid characters in host")
        if scheme is None and "://" in url:
            raise LocationParseError(url, "empty scheme")
    if port is not None and not 0 < port < 65536:
        raise LocationParseError(url, "port out of range")
    return Url(
        scheme=scheme,
        auth=auth,
        host=host,
        port=port,
        path=parts.path or None,
        query=parts.query if "?" in url else None,
        fragment=parts.fragment if "#" in url else None,
    )


def join_url(base: str, location: str) -> str:
    """Resolve a (possibly relative) ``Location`` against the URL it came from."""
    return urljoin(base, location)
