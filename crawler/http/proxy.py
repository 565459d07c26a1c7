"""Proxies: ``ProxyConfig`` (one parsed proxy URL), ``ProxyManager`` and ``proxy_from_url``.

How a request reaches its target through each kind of proxy (the connection does the
dialing, see :mod:`.connection`; the pool picks the request-line form):

- ``http://proxy`` and an ``http://`` target: the connection is opened to the proxy and the
  request line carries the absolute URL (RFC 9112 section 3.2.2), with ``Proxy-Authorization``
  among the headers. The ``Host`` header is still the target's.
- ``http://proxy`` and an ``https://`` target: the connection asks the proxy for a tunnel
  with ``CONNECT host:port`` (RFC 9110 section 9.3.6), ``Proxy-Authorization`` going only on
  that request, then speaks TLS to the *target* through it: SNI and the certificate check use
  the target's name, never the proxy's.
- ``socks4``/``socks4a``/``socks5``/``socks5h``: the SOCKS handshake (python-socks) opens a
  raw stream to the target, over which the request goes exactly as on a direct connection.
  ``socks5h`` and ``socks4a`` let the proxy resolve the name; ``socks5``/``socks4`` resolve it
  here (honouring a pool's ``resolve`` pins).

Credentials come from the proxy URL's userinfo. They are kept out of ``repr``, of log lines
and of error messages: :func:`redact_proxy_url` is the one place a proxy URL is printed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from .exceptions import LocationParseError
from .poolmanager import PoolManager
from .util.request import make_headers
from .util.url import parse_url

__all__ = ["ProxyConfig", "ProxyManager", "proxy_from_url", "redact_proxy_url"]

PROXY_SCHEMES = {"http": 8080, "socks4": 1080, "socks4a": 1080, "socks5": 1080, "socks5h": 1080}


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """One proxy: where it is, how to talk to it, and what to tell it (never the target)."""

    scheme: str
    host: str
    port: int
    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)
    # Headers sent to the proxy only: on the CONNECT request, or on forwarded http requests.
    headers: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.scheme not in PROXY_SCHEMES:
            raise ValueError(
                f"unsupported proxy scheme {self.scheme!r} (use one of {sorted(PROXY_SCHEMES)})"
            )
        if not self.host:
            raise ValueError("a proxy needs a host")

    @property
    def is_socks(self) -> bool:
        return self.scheme.startswith("socks")

    @property
    def remote_dns(self) -> bool:
        """Does the proxy resolve the target's name (``socks5h``, ``socks4a``)?"""
        return self.scheme in ("socks5h", "socks4a")

    @property
    def header_lines(self) -> str:
        """The proxy-only headers as request-head lines."""
        return "".join(f"{name}: {value}\r\n" for name, value in self.headers)

    @property
    def url(self) -> str:
        """The proxy's URL without credentials (safe to log)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @classmethod
    def from_url(cls, url: str, headers: Mapping[str, str] | None = None) -> ProxyConfig:
        """Parse ``scheme://[user:password@]host[:port]``; ``headers`` go to the proxy."""
        try:
            parsed = parse_url(url)
        except LocationParseError:
            raise ValueError(f"bad proxy URL {redact_proxy_url(url)!r}") from None
        scheme = (parsed.scheme or "http").lower()
        if scheme == "https":
            # TLS to the proxy, and for https sites TLS inside that TLS, is not built: say so
            # when the setting is read rather than failing every request of the crawl.
            raise ValueError(
                "https:// proxies (TLS to the proxy) are not supported; an http:// proxy"
                " also carries https:// sites (through a CONNECT tunnel, TLS end to end)"
            )
        if scheme not in PROXY_SCHEMES:
            raise ValueError(
                f"unsupported proxy scheme {scheme!r} (use one of {sorted(PROXY_SCHEMES)})"
            )
        if not parsed.host:
            raise ValueError(f"proxy URL {redact_proxy_url(url)!r} has no host")
        username = password = None
        if parsed.auth:
            user, _, pw = parsed.auth.partition(":")
            username, password = unquote(user), unquote(pw)
        extra: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        if username is not None and scheme == "http" and "proxy-authorization" not in extra:
            extra.update(make_headers(proxy_basic_auth=f"{username}:{password}"))
        return cls(
            scheme,
            parsed.host.strip("[]"),
            parsed.port or PROXY_SCHEMES[scheme],
            username,
            password,
            tuple(extra.items()),
        )


def redact_proxy_url(url: str) -> str:
    """``url`` with any userinfo replaced by ``***`` (for logs and stored settings)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{path}"


class ProxyManager(PoolManager):
    """A ``PoolManager`` whose every pool reaches its target through one proxy.

    ``ProxyManager("http://user:pw@proxy:3128/")`` (or :func:`proxy_from_url`): pools stay
    keyed by the *target* origin, so keep-alive and per-host limits work as without a proxy;
    only the dialing and the request-line form change (see the module docstring).
    ``proxy_headers`` are sent to the proxy only.
    """

    def __init__(
        self,
        proxy_url: str,
        num_pools: int = 10,
        headers: Mapping[str, str] | None = None,
        proxy_headers: Mapping[str, str] | None = None,
        **connection_pool_kw: Any,
    ) -> None:
        self.proxy_config = ProxyConfig.from_url(proxy_url, proxy_headers)
        self.proxy = parse_url(self.proxy_config.url)
        self.proxy_headers = dict(proxy_headers or {})
        connection_pool_kw["proxy"] = self.proxy_config
        super().__init__(num_pools, headers, **connection_pool_kw)

    def __repr__(self) -> str:
        return f"<ProxyManager {self.proxy_config.url} {len(self)}/{self.num_pools} pools>"


def proxy_from_url(url: str, **kw: Any) -> ProxyManager:
    """A :class:`ProxyManager` for the proxy at ``url`` (``kw`` as for ``ProxyManager``)."""
    return ProxyManager(proxy_url=url, **kw)
