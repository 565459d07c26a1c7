"""robots.txt policy per host, following RFC 9309, parsed by Protego.

How this works: :meth:`RobotsPolicy.from_response` turns the outcome of one robots.txt fetch (a
status, or ``None`` when the host could not be reached, and the body) into a frozen value that
answers ``allows(url)``, ``crawl_delay`` and ``sitemaps``. It does no I/O and takes the fetch
time as an argument, so every rule below is a plain unit test. :class:`RobotsCache` keeps one
policy per host until it expires (pure too: it takes ``now``). :func:`fetch_robots` is the only
part that touches the network, through a ``crawler.http`` pool.

Status rules (RFC 9309 section 2.3.1)::

    2xx            parse the body (the first 500 KiB, cut at a line break)   expires +24 h
    3xx            the fetcher follows up to 5 hops, even to another host; a 3xx that
                   reaches us here means "more hops than that": unavailable, allow all
    4xx            "unavailable": allow all (401 and 403 included, as the RFC says)  +24 h
    429, 5xx,      "unreachable": disallow all *for now*; ``retry_at`` = fetch + 5 min,
    None, other    the engine keeps the host's URLs queued and fetches robots.txt again

429 is the one deliberate departure from the letter of the RFC (which groups it with 4xx): a
server that is rate-limiting us is not saying "no rules apply", so we wait and ask again.

The RFC lets a crawler keep using a cached robots.txt while the file is unreachable;
:meth:`RobotsCache.put` does that for up to 30 days after the last good fetch, instead of
blocking a host whose robots.txt had been read successfully before.

A policy is plain data (the decoded text plus numbers), so it can cross a process boundary; the
Protego parser behind it is rebuilt from the text after unpickling.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from protego import Protego

from crawler.http import BodyTooLargeError, HTTPConnectionPool, HTTPError, Timeout

__all__ = [
    "MAX_REDIRECTS",
    "MAX_ROBOTS_SIZE",
    "ROBOTS_TTL",
    "UNREACHABLE_RETRY",
    "RobotsCache",
    "RobotsPolicy",
    "fetch_robots",
    "robots_url",
]

MAX_ROBOTS_SIZE = 500 * 1024  # RFC 9309 2.5: parse at least 500 KiB; we parse exactly that
ROBOTS_TTL = 24 * 3600.0  # RFC 9309 2.4: do not use a cached copy for more than 24 hours
UNREACHABLE_RETRY = 300.0  # ask an unreachable host again after this many seconds
STALE_GRACE = 30 * 86400.0  # keep obeying the last good copy this long while unreachable
MAX_REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five consecutive redirects

Kind = Literal["rules", "allow_all", "disallow_all"]


def robots_url(url: str) -> str:
    """The robots.txt URL for the scheme and authority of ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    netloc = parts.netloc.rsplit("@", 1)[-1]  # never send userinfo to robots.txt
    return f"{parts.scheme}://{netloc}/robots.txt"


def _decode(body: bytes) -> str:
    """The first MAX_ROBOTS_SIZE bytes as text, cut after the last complete line."""
    if len(body) > MAX_ROBOTS_SIZE:
        body = body[:MAX_ROBOTS_SIZE]
        # A rule cut mid-line could change meaning ("Disallow: /private" -> "/pri"); drop it.
        cut = max(body.rfind(b"\n"), body.rfind(b"\r"))
        body = body[: cut + 1] if cut >= 0 else b""
    # RFC 9309 says UTF-8; real files are sometimes Latin-1: keep what decodes, replace the rest.
    return body.decode("utf-8", errors="replace").removeprefix("\ufeff")


@dataclass(frozen=True, slots=True)
class RobotsPolicy:
    """What one robots.txt fetch allows, for one user agent. Build with :meth:`from_response`."""

    kind: Kind
    status: int | None  # HTTP status of the fetch; None: unreachable
    fetched_at: float
    expires_at: float  # fetch robots.txt again after this (unix time)
    user_agent: str
    crawl_delay_max: float
    text: str = ""  # the decoded (and size-limited) body, for kind == "rules"
    retry_at: float | None = None  # set when unreachable: try the fetch again then
    _parser: Protego | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("rules", "allow_all", "disallow_all"):
            raise ValueError(f"unknown robots policy kind: {self.kind!r}")
        if not self.user_agent.strip():
            raise ValueError("user_agent must not be empty")
        if self.crawl_delay_max < 0:
            raise ValueError("crawl_delay_max must not be negative")
        if self.kind == "rules" and self._parser is None:
            object.__setattr__(self, "_parser", Protego.parse(self.text))

    @classmethod
    def from_response(
        cls,
        status: int | None,
        body: bytes | None,
        *,
        fetched_at: float,
        user_agent: str,
        crawl_delay_max: float,
        retry_delay: float = UNREACHABLE_RETRY,
    ) -> RobotsPolicy:
        """Apply the RFC 9309 status rules (see the module docstring) to one fetch."""
        common: dict[str, Any] = {
            "status": status,
            "fetched_at": fetched_at,
            "user_agent": user_agent,
            "crawl_delay_max": crawl_delay_max,
        }
        if status is not None and 200 <= status < 300:
            text = _decode(body or b"")
            return cls("rules", text=text, expires_at=fetched_at + ROBOTS_TTL, **common)
        if status is not None and (300 <= status < 400 or (400 <= status < 500 and status != 429)):
            return cls("allow_all", expires_at=fetched_at + ROBOTS_TTL, **common)
        retry_at = fetched_at + retry_delay
        return cls("disallow_all", expires_at=retry_at, retry_at=retry_at, **common)

    @property
    def unreachable(self) -> bool:
        """True for the temporary "disallow all" of a 5xx, a 429 or a failed connection."""
        return self.retry_at is not None

    def allows(self, url: str) -> bool:
        """May ``url`` (absolute, on this policy's host) be fetched?"""
        if self.kind == "allow_all":
            return True
        if self.kind == "disallow_all" or self._parser is None:
            return False
        # RFC 9309 2.2.2: /robots.txt itself is always allowed.
        if urlsplit(url).path == "/robots.txt":
            return True
        return bool(self._parser.can_fetch(url, self.user_agent))

    @property
    def crawl_delay(self) -> float | None:
        """The Crawl-delay for our user agent, capped at ``crawl_delay_max``; None when unset."""
        if self._parser is None:
            return None
        delay = self._parser.crawl_delay(self.user_agent)
        if delay is None or not delay >= 0:  # `not >=` also rejects NaN
            return None
        return min(float(delay), self.crawl_delay_max)

    @property
    def sitemaps(self) -> tuple[str, ...]:
        """The ``Sitemap:`` URLs, in file order, without duplicates."""
        if self._parser is None:
            return ()
        return tuple(dict.fromkeys(self._parser.sitemaps))

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    def __reduce__(self) -> Any:
        # Plain data only across processes: the parser is rebuilt from the text.
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["_parser"] = None
        return (_rebuild, (values,))


def _rebuild(values: dict[str, Any]) -> RobotsPolicy:
    return RobotsPolicy(**values)


class RobotsCache:
    """One :class:`RobotsPolicy` per host key, until it expires. Pure: every call takes ``now``."""

    def __init__(self) -> None:
        self._policies: dict[str, RobotsPolicy] = {}

    def get(self, host: str, now: float) -> RobotsPolicy | None:
        """The host's policy, or None when there is none or it expired (fetch it again)."""
        policy = self._policies.get(host)
        if policy is None or policy.is_expired(now):
            return None
        return policy

    def put(self, host: str, policy: RobotsPolicy) -> RobotsPolicy:
        """Store the policy from a new fetch and return the one to obey.

        When the new fetch found the file unreachable but an earlier fetch had read it less
        than 30 days ago, the earlier rules stay in force until the new ``retry_at``.
        """
        old = self._policies.get(host)
        if (
            policy.unreachable
            and old is not None
            and not old.unreachable
            and policy.fetched_at - old.fetched_at < STALE_GRACE
        ):
            policy = dataclasses.replace(
                old, expires_at=policy.expires_at, retry_at=policy.retry_at, _parser=old._parser
            )
        self._policies[host] = policy
        return policy

    def __len__(self) -> int:
        return len(self._policies)

    def __iter__(self) -> Iterator[str]:
        return iter(self._policies)

    def __repr__(self) -> str:
        unreachable = sum(p.unreachable for p in self._policies.values())
        return f"<RobotsCache {len(self._policies)} hosts {unreachable} unreachable>"


def _default_open_pool(url: str, timeout: float | Timeout) -> Any:
    # Imported late: the pool module may be absent in a partial checkout, the policy is not.
    http = importlib.import_module("crawler.http")
    return http.connection_from_url(url, timeout=timeout, maxsize=1)


def _cap_for(pool: Any) -> dict[str, int]:
    """Our pool's decoded-size cap just above what is parsed, so a compressed robots.txt never
    inflates far past it (other pools of the classic API, e.g. urllib3's, lack the option)."""
    if isinstance(pool, HTTPConnectionPool):
        return {"max_decoded_size": MAX_ROBOTS_SIZE + 64 * 1024}
    return {}


def _read_capped(response: Any, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body and whether more was left unread."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            chunk = response.read(min(64 * 1024, limit + 1 - size))
        except BodyTooLargeError:  # the pool's decoded-size cap, set just above ``limit``
            break
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], True


def fetch_robots(
    pool: Any,
    url: str,
    *,
    user_agent: str,
    timeout: float | Timeout,
    crawl_delay_max: float,
    now: Callable[[], float] = time.time,
    open_pool: Callable[[str, float | Timeout], Any] | None = None,
    errors: tuple[type[BaseException], ...] = (HTTPError, OSError),
) -> RobotsPolicy:
    """Fetch the robots.txt of ``url``'s host and return its policy. Never raises for I/O.

    ``pool`` serves ``url``'s origin with the classic API (``urlopen(method, path, ...,
    redirect=False, preload_content=False)``, ``response.read(amt)``, ``release_conn()``); it
    is typically the pool the owning worker already holds for that host, so the fetch counts
    toward its ``per_host`` limit. Pass ``None`` to open one. Redirects are followed here, up
    to :data:`MAX_REDIRECTS` hops and across hosts as RFC 9309 asks; a hop to another origin
    uses a short-lived pool from ``open_pool(url, timeout)`` (default
    ``crawler.http.connection_from_url``), closed afterwards. Any of ``errors`` means the host
    is unreachable. ``timeout`` is a number (connect and each read) or a ``Timeout``, whose
    ``total`` bounds each hop as a whole (a robots.txt trickled byte by byte).
    """
    opener = open_pool or _default_open_pool
    target = robots_url(url)
    pools: dict[tuple[str, str], Any] = {}  # origin -> pool; the ones we opened are closed
    home = urlsplit(target)[:2]
    status: int | None = None
    body: bytes | None = None
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(target)
            current = pool if parts[:2] == home and pool is not None else pools.get(parts[:2])
            if current is None:
                current = pools[parts[:2]] = opener(target, timeout)
            response = current.urlopen(
                "GET",
                parts.path + (f"?{parts.query}" if parts.query else ""),
                headers={"user-agent": user_agent},
                redirect=False,
                retries=0,
                timeout=timeout,
                preload_content=False,
                assert_same_host=False,
                **_cap_for(current),
            )
            status = int(response.status)
            location = response.headers.get("location")
            if 300 <= status < 400 and location:
                response.release_conn()
                target = urljoin(target, location.strip())
                if urlsplit(target).scheme not in ("http", "https"):
                    break  # a redirect we will not follow: unavailable
                continue
            if 200 <= status < 300:
                body, more = _read_capped(response, MAX_ROBOTS_SIZE)
                if more:
                    response.close()  # do not download the rest of a huge file
            response.release_conn()
            break
    except errors:
        status, body = None, None
    finally:
        for opened in pools.values():
            opened.close()
    return RobotsPolicy.from_response(
        status, body, fetched_at=now(), user_agent=user_agent, crawl_delay_max=crawl_delay_max
    )
