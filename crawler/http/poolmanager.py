"""``PoolManager``: one pool per (scheme, host, port), LRU-bounded, redirects across hosts.

The manager's map of pools changes under its own lock. Evicting a pool does not close it
under a thread that may be using it: the pool is *retired*, which closes its idle
connections now and every other one as it comes back, while requests already on their way
still complete.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ._collections import HTTPHeaderDict
from ._request_methods import RequestMethods
from .connectionpool import HTTPConnectionPool, HTTPSConnectionPool, _resolve_location
from .exceptions import LocationParseError, MaxRetryError
from .response import HTTPResponse
from .util.redirect import next_hop
from .util.retry import Retry
from .util.url import DEFAULT_PORTS, parse_url

__all__ = ["PoolManager"]

_POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {
    "http": HTTPConnectionPool,
    "https": HTTPSConnectionPool,
}
_HTTP_ONLY_KW = (
    "key_file",
    "cert_file",
    "cert_reqs",
    "ca_certs",
    "ssl_context",
    "ca_cert_dir",
    "key_password",
    "server_hostname",
)


class PoolManager(RequestMethods):
    """Pools for any number of origins, at most ``num_pools`` kept (least recently used go)."""

    def __init__(
        self, num_pools: int = 10, headers: Mapping[str, str] | None = None, **pool_kw: Any
    ) -> None:
        if num_pools < 1:
            raise ValueError("num_pools must be at least 1")
        self.num_pools = num_pools
        self.headers = dict(headers or {})
        self.pool_kw = pool_kw
        self._pools: OrderedDict[tuple[str, str, int], HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PoolManager {len(self._pools)}/{self.num_pools} pools>"

    def __enter__(self) -> PoolManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()

    def __len__(self) -> int:
        return len(self._pools)

    @property
    def pools(self) -> dict[tuple[str, str, int], HTTPConnectionPool]:
        """A snapshot of the live pools, keyed by ``(scheme, host, port)``."""
        with self._lock:
            return dict(self._pools)

    def connection_from_host(
        self, host: str, port: int | None = None, scheme: str | None = "http"
    ) -> HTTPConnectionPool:
        scheme = (scheme or "http").lower()
        if scheme not in _POOL_CLASSES:
            raise LocationParseError(f"{scheme}://{host}", f"unsupported scheme {scheme!r}")
        if not host:
            raise LocationParseError(repr(host), "no host")
        key = (scheme, host.strip("[]").lower(), port or DEFAULT_PORTS[scheme])
        evicted = None
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            pool = self._new_pool(*key)
            self._pools[key] = pool
            if len(self._pools) > self.num_pools:
                _, evicted = self._pools.popitem(last=False)
        if evicted is not None:
            evicted._retire()
        return pool

    def connection_from_url(self, url: str) -> HTTPConnectionPool:
        parsed = parse_url(url)
        if parsed.host is None:
            raise LocationParseError(url, "an absolute URL is needed")
        return self.connection_from_host(parsed.host, parsed.port, parsed.scheme or "http")

    def _new_pool(self, scheme: str, host: str, port: int) -> HTTPConnectionPool:
        kw = dict(self.pool_kw)
        if scheme == "http":
            for name in _HTTP_ONLY_KW:
                kw.pop(name, None)
        return _POOL_CLASSES[scheme](host, port, **kw)

    def clear(self) -> None:
        """Retire every pool (idle connections close now, busy ones when released)."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool._retire()

    close = clear

    def urlopen(
        self,
        method: str,
        url: str,
        redirect: bool = True,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retries: Retry | int | bool | None = None,
        **kw: Any,
    ) -> HTTPResponse:
        """Like the pool's ``urlopen`` with an absolute URL, following cross-host redirects."""
        if headers is None:
            headers = self.headers
        if retries is None:
            retries = self.pool_kw.get("retries")
        retry = (
            retries if isinstance(retries, Retry) else Retry.from_int(retries, redirect=redirect)
        )
        while True:
            parsed = parse_url(url)
            if parsed.host is None or parsed.scheme not in _POOL_CLASSES:
                raise LocationParseError(url, "an absolute http(s) URL is needed")
            pool = self.connection_from_host(parsed.host, parsed.port, parsed.scheme)
            response = pool.urlopen(
                method,
                parsed.request_uri,
                body=body,
                headers=headers,
                retries=retry,
                redirect=False,
                assert_same_host=False,
                **kw,
            )
            location = response.get_redirect_location() if redirect else False
            if not isinstance(location, str) or not location:
                return response
            retry = response.retries if isinstance(response.retries, Retry) else retry
            try:
                retry = retry.increment(method, url, response=response, _pool=pool)
            except MaxRetryError:
                if retry.raise_on_redirect:
                    response.drain_conn()
                    raise
                return response
            response.drain_conn()
            new_url = _resolve_location(url, location)
            items = headers.iteritems() if isinstance(headers, HTTPHeaderDict) else headers.items()
            hop = next_hop(response.status, method, items, url, new_url)
            method = hop.method
            if not hop.keeps_body:
                body = None
            headers = HTTPHeaderDict(hop.headers)
            url = new_url
