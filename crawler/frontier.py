"""Canonical URLs, fingerprints, host routing and per-host politeness clocks. No I/O.

How this works: every discovered link passes through :func:`canonicalize_url` and
:func:`fingerprint` (hundreds per page), so both have a fast path. A URL that is already in
canonical form (lower-case http(s) scheme and host, no default port, no fragment, a path, only
safe characters and upper-case percent escapes of reserved bytes, no dot segments) is
recognised by one regular expression and returned as it is; anything else takes the slow
path, which rebuilds it piece by piece. The fast path accepts only strings the slow path would
return unchanged (``tests/test_frontier.py`` checks that property).

Canonical form, decided here once:

- only ``http`` and ``https`` with a host; scheme and host lower-cased; a non-ASCII host is
  IDNA-encoded; one trailing dot of the host is dropped; the default port (80/443) is dropped;
- userinfo (``user:pass@``) is kept, percent-normalised: dropping it would change what the
  server answers. It is rare, and :func:`url_host` ignores it;
- leading and trailing ASCII whitespace is stripped (as browsers do with ``href``); any other
  control character, CR or LF inside the URL is an :class:`InvalidURL`;
- the fragment is dropped; an empty path becomes ``/``; dot segments are resolved; an empty
  query (``?`` alone) is dropped; query parameter order is kept;
- percent-encoding: escapes of unreserved characters are decoded (``%7E`` -> ``~``), other
  escapes get upper-case hex, a ``%`` not followed by two hex digits becomes ``%25``; spaces,
  non-ASCII (as UTF-8) and other characters unsafe in a path or query are percent-encoded;
  reserved characters (``/?#[]@!$&'()*+,;=:``) are left alone.

Politeness lives in :class:`HostClock` (one host) and :class:`Politeness` (all hosts, for the
engine). Their methods take ``now`` explicitly and the jitter RNG is injected, so tests drive
them with plain numbers.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

__all__ = [
    "HostClock",
    "InvalidURL",
    "Politeness",
    "PolitenessPolicy",
    "canonicalize_url",
    "fingerprint",
    "owner_of",
    "url_host",
]


class InvalidURL(ValueError):
    """A URL that cannot be crawled: malformed, or not http(s). ``reason`` says why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{reason}: {url[:200]!r}")
        self.url = url
        self.reason = reason


# --- canonical URLs ---------------------------------------------------------------------------

# Percent escapes that canonical form keeps: upper-case hex, and not an unreserved character
# (ALPHA 41-5A/61-7A, DIGIT 30-39, "-" 2D, "." 2E, "_" 5F, "~" 7E).
_KEPT_ESCAPE = r"%(?:[01][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF]|[89A-F][0-9A-F])"
_PCHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]"
_QCHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]"
_FAST = re.compile(
    r"(https?)://([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)(?::([1-9][0-9]{0,4}))?"
    rf"(/(?:{_PCHAR}|{_KEPT_ESCAPE})*)(?:\?(?:{_QCHAR}|{_KEPT_ESCAPE})+)?"
)
_DEFAULT_PORT = {"http": "80", "https": "443"}
_STRIP = " \t\n\r\f"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEX = "0123456789ABCDEFabcdef"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = frozenset(_UNRESERVED | set("!$&'()*+,;=:@/"))
_QUERY_SAFE = frozenset(_PATH_SAFE | {"?"})
_USER_SAFE = frozenset(_UNRESERVED | set("!$&'()*+,;=:"))
_HOST_LABEL = re.compile(r"[a-z0-9_-]+")
MAX_HOST_LENGTH = 253


def canonicalize_url(url: str, base: str | None = None) -> str:
    """The canonical form of ``url`` (resolved against ``base`` when relative).

    Raises :class:`InvalidURL` for anything that is not an absolute http(s) URL with a valid
    host and port once resolved.
    """
    if base is not None:
        url = _join(url, base)
    source = url
    hash_at = url.find("#")
    if hash_at >= 0:
        url = url[:hash_at]  # the fragment never reaches the server
    m = _FAST.fullmatch(url)
    if m is not None:
        port = m.group(3)
        path = m.group(4)
        if (
            "/." not in path
            and len(m.group(2)) <= 63
            and (port is None or (port != _DEFAULT_PORT[m.group(1)] and int(port) <= 65535))
        ):
            return url
    return _canonicalize_slow(source)


def _join(url: str, base: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    stripped = url.strip(_STRIP)
    if stripped.startswith("/"):
        if not stripped.startswith("//"):
            # The common relative link: origin of the base plus an absolute path.
            origin = _origin(base)
            if origin is not None:
                return origin + stripped
    elif stripped and stripped[0].isalnum() and ":" not in stripped:
        # A path relative to the base's directory (dot segments are resolved later).
        directory = _directory(base)
        if directory is not None:
            return directory + stripped
    try:
        return urljoin(base, stripped)
    except ValueError as exc:
        raise InvalidURL(url, f"cannot resolve against base: {exc}") from None


@lru_cache(maxsize=256)
def _directory(base: str) -> str | None:
    """A canonical base URL up to the last ``/`` of its path, or None for the general path."""
    m = _FAST.fullmatch(base)
    if m is None:
        return None
    return base[: base.rfind("/", 0, m.end(4)) + 1]


@lru_cache(maxsize=256)
def _origin(base: str) -> str | None:
    """``scheme://authority`` of a canonical base URL, or None to take the general path."""
    m = _FAST.fullmatch(base)
    if m is None:
        return None
    return base[: m.start(4)]


def _canonicalize_slow(url: str) -> str:
    if not isinstance(url, str):
        raise InvalidURL(repr(url), "not a string")
    source = url
    # The fragment never reaches the server: whatever it holds does not matter.
    url = url.strip(_STRIP).partition("#")[0]
    if _CONTROL.search(url) is not None:
        raise InvalidURL(source, "control character in URL")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidURL(source, f"malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidURL(source, "relative URL without a base")
    if scheme not in _DEFAULT_PORT:
        raise InvalidURL(source, f"unsupported scheme {scheme!r}")
    userinfo, netloc = "", parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        userinfo = _normalise_escapes(userinfo, _USER_SAFE) + "@" if userinfo else ""
    host, port = _split_host_port(netloc, source)
    if port is not None and port != _DEFAULT_PORT[scheme]:
        host = f"{host}:{port}"
    path = _remove_dot_segments(_normalise_escapes(parts.path, _PATH_SAFE)) or "/"
    query = _normalise_escapes(parts.query, _QUERY_SAFE)
    out = f"{scheme}://{userinfo}{host}{path}"
    return f"{out}?{query}" if query else out


def _split_host_port(netloc: str, source: str) -> tuple[str, str | None]:
    port: str | None = None
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise InvalidURL(source, "unclosed IPv6 bracket")
        host, rest = netloc[: end + 1].lower(), netloc[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InvalidURL(source, "junk after IPv6 address")
            port = rest[1:]
        if not re.fullmatch(r"\[[0-9a-f:.]+\]", host):
            raise InvalidURL(source, "invalid IPv6 address")
    else:
        host, sep, port_text = netloc.partition(":")
        if sep:
            port = port_text
        host = _normalise_host(host, source)
    if port is not None:
        if port == "":
            port = None
        elif not port.isascii() or not port.isdigit():
            raise InvalidURL(source, f"invalid port {port[:20]!r}")
        else:
            value = int(port)
            if not 0 < value <= 65535:
                raise InvalidURL(source, f"port out of range {port[:20]!r}")
            port = str(value)
    return host, port


def _normalise_host(host: str, source: str) -> str:
    if "%" in host:
        host = _unquote(host, source)
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise InvalidURL(source, "no host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURL(source, "invalid internationalised host") from None
    if len(host) > MAX_HOST_LENGTH:
        raise InvalidURL(source, "host too long")
    for label in host.split("."):
        if not label or len(label) > 63 or _HOST_LABEL.fullmatch(label) is None:
            raise InvalidURL(source, f"invalid host {host[:100]!r}")
    return host


def _unquote(text: str, source: str) -> str:
    try:
        raw = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text).encode(
            "latin-1"
        )
        return raw.decode("utf-8")
    except UnicodeError:
        raise InvalidURL(source, "invalid percent-encoding in host") from None


def _normalise_escapes(text: str, safe: frozenset[str]) -> str:
    """Percent-encoding normalised for one component (see the module docstring)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            if i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
                decoded = chr(int(text[i + 1 : i + 3], 16))
                out.append(decoded if decoded in _UNRESERVED else "%" + text[i + 1 : i + 3].upper())
                i += 3
                continue
            out.append("%25")
        elif c in safe:
            out.append(c)
        else:
            out.append("".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    segments = path.split("/")
    out: list[str] = []
    for seg in segments[1:] if path.startswith("/") else segments:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    if segments[-1] in (".", ".."):
        out.append("")  # "/a/b/.." names the directory "/a/"
    return "/" + "/".join(out)


def url_host(url: str) -> str:
    """The politeness key of a canonical URL: ``host``, or ``host:port`` for a non-default port."""
    start = url.find("://") + 3
    end = url.find("/", start)
    netloc = url[start:end] if end >= 0 else url[start:]
    at = netloc.rfind("@")
    return netloc[at + 1 :] if at >= 0 else netloc


def fingerprint(url: str, method: str = "GET", body: bytes | None = None) -> int:
    """A signed 64-bit fingerprint of a request, stable across processes and runs.

    ``url`` must be canonical (from :func:`canonicalize_url`; it is not canonicalised again
    here, to keep the per-link path cheap). A body-less GET fingerprints the URL alone, so
    the fingerprint of a link is a function of its canonical URL.
    """
    if method != "GET":
        method = method.upper()
    if body is None and method == "GET":
        data = url.encode()
    else:
        data = method.encode() + b" " + url.encode()
        if body is not None:
            data += b"\n" + body
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def owner_of(host: str, workers: int) -> int:
    """The worker index that owns ``host``: a stable hash, never the salted ``hash()``."""
    return zlib.crc32(host.encode()) % workers


# --- politeness -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolitenessPolicy:
    """The politeness settings shared by every host (immutable; from ``Settings``).

    ``delay`` is the mean gap between request starts to one host, jittered 0.5x-1.5x; a
    robots ``Crawl-delay`` (capped at ``crawl_delay_max``) is a hard floor under it. After
    ``n`` consecutive failures the host waits ``min(backoff_max, backoff_base * 2**(n-1))``.
    """

    per_host: int = 2
    delay: float = 0.0
    crawl_delay_max: float = 30.0
    backoff_base: float = 0.5
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if self.per_host < 1:
            raise ValueError("per_host must be at least 1")
        if min(self.delay, self.crawl_delay_max, self.backoff_base, self.backoff_max) < 0:
            raise ValueError("politeness durations must not be negative")

    def backoff(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.backoff_max, self.backoff_base * 2.0 ** min(failures - 1, 30))


class HostClock:
    """When the next request to one host may start. Times are unix seconds passed in.

    A start is allowed when fewer than ``per_host`` requests are in flight and ``now`` has
    reached ``ready_at`` (pushed by the delay after each start, Retry-After and backoff).
    """

    __slots__ = ("crawl_delay", "failures", "in_flight", "policy", "ready_at", "rng")

    def __init__(self, policy: PolitenessPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng if rng is not None else random.Random()
        self.in_flight = 0
        self.ready_at = 0.0
        self.failures = 0
        self.crawl_delay = 0.0

    def __repr__(self) -> str:
        return (
            f"<HostClock {self.in_flight}/{self.policy.per_host} busy ready_at={self.ready_at:.3f}"
            f" failures={self.failures} crawl_delay={self.crawl_delay}>"
        )

    def can_start(self, now: float) -> bool:
        return self.in_flight < self.policy.per_host and now >= self.ready_at

    def next_start(self, now: float) -> float:
        """The earliest time a start is allowed; ``inf`` while every slot is busy."""
        if self.in_flight >= self.policy.per_host:
            return math.inf
        return max(now, self.ready_at)

    def set_crawl_delay(self, seconds: float | None) -> None:
        """Apply robots.txt ``Crawl-delay`` as a floor (capped by ``crawl_delay_max``)."""
        self.crawl_delay = (
            0.0 if not seconds else min(max(seconds, 0.0), self.policy.crawl_delay_max)
        )

    def started(self, now: float) -> None:
        self.in_flight += 1
        gap = self.policy.delay * self.rng.uniform(0.5, 1.5) if self.policy.delay else 0.0
        gap = max(gap, self.crawl_delay)
        if gap:
            self.ready_at = max(self.ready_at, now + gap)

    def finished(self, now: float, ok: bool) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if ok:
            self.failures = 0
            return
        self.failures += 1
        self.ready_at = max(self.ready_at, now + self.policy.backoff(self.failures))

    def push(self, until: float) -> None:
        """No start before ``until`` (Retry-After, a 429/503)."""
        self.ready_at = max(self.ready_at, until)


class Politeness:
    """The clocks of every host, for the engine's scheduling loop.

    Memory is bounded by the number of hosts. A heap of ``(ready_at, host)`` entries, pushed
    whenever a clock moves into the future, answers "when does the next host become ready"
    without scanning every host; stale heap entries are dropped lazily.
    """

    def __init__(self, policy: PolitenessPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng if rng is not None else random.Random()
        self._clocks: dict[str, HostClock] = {}
        self._heap: list[tuple[float, str]] = []

    def __repr__(self) -> str:
        busy = sum(c.in_flight for c in self._clocks.values())
        return f"<Politeness {len(self._clocks)} hosts {busy} in flight>"

    def clock(self, host: str) -> HostClock:
        c = self._clocks.get(host)
        if c is None:
            c = self._clocks[host] = HostClock(self.policy, self._rng)
        return c

    def in_flight(self, host: str) -> int:
        c = self._clocks.get(host)
        return c.in_flight if c is not None else 0

    def ready(self, hosts: Iterable[str], now: float) -> list[str]:
        """The hosts among ``hosts`` that may start a request now, fewest busy first."""
        out = []
        for host in hosts:
            c = self._clocks.get(host)
            if c is None or c.can_start(now):
                out.append((c.in_flight if c is not None else 0, host))
        out.sort()
        return [host for _, host in out]

    def free_slots(self, host: str, now: float) -> int:
        """How many requests to ``host`` may start now (0 or ``per_host - in_flight``).

        With a delay set only one start is allowed at a time, since each start moves the clock.
        """
        c = self.clock(host)
        if not c.can_start(now):
            return 0
        if self.policy.delay or c.crawl_delay:
            return 1
        return self.policy.per_host - c.in_flight

    def started(self, host: str, now: float) -> None:
        c = self.clock(host)
        c.started(now)
        self._note(host, c, now)

    def finished(self, host: str, now: float, ok: bool) -> None:
        c = self.clock(host)
        c.finished(now, ok)
        self._note(host, c, now)

    def push(self, host: str, until: float) -> None:
        c = self.clock(host)
        c.push(until)
        heapq.heappush(self._heap, (c.ready_at, host))

    def set_crawl_delay(self, host: str, seconds: float | None) -> None:
        self.clock(host).set_crawl_delay(seconds)

    def next_ready(self, now: float) -> float | None:
        """The earliest future time a host waiting on its clock becomes ready, if any."""
        heap = self._heap
        while heap:
            at, host = heap[0]
            c = self._clocks.get(host)
            if c is None or at != c.ready_at or at <= now:
                heapq.heappop(heap)
                continue
            return at
        return None

    def forget_idle(self, now: float) -> int:
        """Drop clocks with nothing in flight, no pending wait and no state worth keeping."""
        idle = [
            h
            for h, c in self._clocks.items()
            if c.in_flight == 0 and c.ready_at <= now and c.failures == 0 and not c.crawl_delay
        ]
        for h in idle:
            del self._clocks[h]
        return len(idle)

    def _note(self, host: str, c: HostClock, now: float) -> None:
        if c.ready_at > now:
            heapq.heappush(self._heap, (c.ready_at, host))
