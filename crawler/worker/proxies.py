"""Which proxy a request goes through: rotation per host, cool-down of failing proxies.

The rules, all pure (time is an argument) so they are tested without sleeping:

- Each host is given one proxy of the ``proxy`` setting, spread by a stable hash of the host
  name, so every worker agrees and a host's requests (and its keep-alive connections) stay
  on one proxy. Politeness is untouched: the engine keys it by the *target* host, and a
  proxy never changes which host a request counts against.
- A proxy that fails ``FAILS_TO_COOL`` times in a row (:func:`proxy_failed`: it refused us,
  the tunnel failed, the SOCKS handshake failed, or it accepted a forwarded request and closed
  or reset the connection without an answer) is cooled down for ``COOL_DOWN`` seconds; a host
  whose proxy is cooling goes to the next live one in order.
- One request tries at most ``MAX_ROTATIONS`` further proxies after a proxy failure, then is
  left to the usual retry rules. A 429 or 503 is the *target's* answer, not the proxy's: it
  is retried under Retry-After like any other and never rotates, so there is no loop of
  proxies hammering a host that asked us to slow down.
"""

from __future__ import annotations

import threading
import zlib

from crawler.http import MaxRetryError, ProtocolError, ProxyConfig, ProxyError, redact_proxy_url
from crawler.http.connection import StaleConnectionError

__all__ = ["COOL_DOWN", "FAILS_TO_COOL", "MAX_ROTATIONS", "ProxyRotation", "proxy_failed"]

FAILS_TO_COOL = 3
COOL_DOWN = 60.0
MAX_ROTATIONS = 2


def proxy_failed(exc: BaseException, proxy: str, url: str) -> ProxyError | None:
    """The proxy's own failure behind ``exc`` (raised fetching ``url`` through ``proxy``), as a
    :class:`ProxyError`, or ``None`` when the target is to blame (or cannot be told apart).

    A :class:`ProxyError` is one already: the proxy could not be reached, refused the tunnel or
    failed the SOCKS handshake. Through an HTTP proxy to an ``http://`` target the proxy is
    also the peer that answers every request: a proxy that accepted the connection and then
    closed or reset it without a single byte of answer is dead or broken, since a working one
    answers 502 or 504 when the target fails (those are statuses, left to the retry rules).
    Behind a ``CONNECT`` tunnel or a SOCKS stream the bytes are the target's, so a close there
    is the target's. A proxy that accepts and never answers ends in a read timeout, which is
    not told apart from a slow target: the usual retry rules handle it.
    """
    cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
    if isinstance(cause, ProxyError):
        return cause
    if not isinstance(cause, ProtocolError) or url[:5].lower() != "http:":
        return None
    dropped = isinstance(cause, StaleConnectionError) or isinstance(cause.__cause__, OSError)
    if not dropped:
        return None
    config = ProxyConfig.from_url(proxy)
    if config.scheme != "http":
        return None
    error = ProxyError(f"proxy {config.url} dropped the connection without an answer ({cause})")
    error.__cause__ = cause
    return error


class ProxyRotation:
    """The proxies of one worker and what it has learned about them."""

    def __init__(self, proxies: tuple[str, ...]) -> None:
        self.proxies = proxies
        # Credential-free URL -> the setting's entry (which may carry credentials).
        self._by_bare = {ProxyConfig.from_url(p).url: p for p in proxies}
        self._fails: dict[str, int] = {}
        self._cool_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.proxies)

    def full_url(self, proxy: str) -> str:
        """A request's proxy (stored without credentials) with the setting's credentials."""
        return self._by_bare.get(ProxyConfig.from_url(proxy).url, proxy)

    def pick(self, host: str, now: float, skip: tuple[str, ...] = ()) -> str | None:
        """The proxy for ``host``: its own, or the next one not cooling and not in ``skip``."""
        n = len(self.proxies)
        if not n:
            return None
        start = zlib.crc32(host.encode("utf-8", "surrogatepass")) % n
        with self._lock:
            fallback = None
            for i in range(n):
                proxy = self.proxies[(start + i) % n]
                if proxy in skip:
                    continue
                if fallback is None:
                    fallback = proxy
                if self._cool_until.get(proxy, 0.0) <= now:
                    return proxy
        return fallback  # all cooling: the least bad one, rather than no request at all

    def failed(self, proxy: str, now: float) -> None:
        with self._lock:
            fails = self._fails.get(proxy, 0) + 1
            self._fails[proxy] = fails
            if fails >= FAILS_TO_COOL:
                self._cool_until[proxy] = now + COOL_DOWN
                self._fails[proxy] = 0

    def succeeded(self, proxy: str) -> None:
        if self._fails.get(proxy):
            with self._lock:
                self._fails[proxy] = 0
                self._cool_until.pop(proxy, None)

    def cooling(self, now: float) -> list[str]:
        """The proxies cooling down at ``now``, redacted (for logs and stats)."""
        with self._lock:
            return [redact_proxy_url(p) for p, t in self._cool_until.items() if t > now]
