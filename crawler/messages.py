"""The plain values that cross process boundaries between the engine and its workers.

Only these frozen dataclasses of plain data (str, int, float, bytes, tuples, JSON-able dicts)
travel through the queues: never a socket, a pool, an lxml tree or an exception object. They
are also what the storage layer writes, so the worker's output is persisted without another
translation step.

Data flow::

    engine --Job--> worker --Outcome--> engine --Store.record()--> SQLite

A ``Job`` is one fetch of one frontier entry. The worker answers every ``Job`` with exactly one
``Outcome``, whatever happened (a response, a redirect, a failure, a callback that raised), so
the engine can always account for what it has in flight.

The per-link path is the hot one (a page can carry hundreds of links), so links followed with
the default callback travel as compact ``(fingerprint, url, host)`` tuples in ``Outcome.follows``
rather than as ``NewRequest`` objects; only explicit ``Request`` objects, redirect targets and
start requests become ``NewRequest``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from crawler.robots import RobotsPolicy

__all__ = [
    "ROBOTS_CALLBACK",
    "SITEMAP_CALLBACK",
    "Failure",
    "Follow",
    "Job",
    "NewRequest",
    "Outcome",
    "Page",
]

# Reserved callback names: Jobs the worker handles itself instead of calling a spider method.
# A robots.txt Job never has a frontier row (the engine sends it before a host's first URL);
# a sitemap is an ordinary frontier entry whose callback is SITEMAP_CALLBACK.
ROBOTS_CALLBACK = "__robots__"
SITEMAP_CALLBACK = "__sitemap__"

# (fingerprint, canonical url, host key): a link followed with the spider's ``parse``.
Follow = tuple[int, str, str]


@dataclass(frozen=True, slots=True)
class NewRequest:
    """A request to add to the frontier (from a callback, ``start_requests`` or a redirect).

    ``url`` is canonical and ``fp`` is its fingerprint (``crawler.urls.fingerprint``);
    ``host`` is the politeness key (``crawler.urls.url_host``). With ``dont_filter`` the
    engine gives the request a fresh fingerprint so it is queued even when seen before.
    """

    fp: int
    url: str
    host: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    callback: str | None = None  # spider method name; None means "parse"
    priority: int = 0
    meta: dict[str, Any] | None = None  # JSON-serialisable
    depth: int = 0
    dont_filter: bool = False
    redirect_urls: tuple[str, ...] = ()  # earlier hops, when this is a redirect target
    # A sitemap's <lastmod> (unix time) for this URL: a stored page fetched before it is
    # queued again (recrawl rule 3).
    lastmod: float | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One fetch the engine hands to the worker that owns ``host``."""

    fp: int
    url: str
    host: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    callback: str | None = None
    meta: dict[str, Any] | None = None
    depth: int = 0
    attempt: int = 0  # fetch attempts already made for this entry
    redirect_urls: tuple[str, ...] = ()
    # Validators from an earlier fetch, for a conditional request on recrawl.
    etag: str | None = None
    last_modified: str | None = None
    # The stored body hash: a 2xx with the same hash counts as unchanged.
    content_hash: str | None = None
    # The Cookie header the engine computed from its jar for this URL when it sent the Job
    # (crawler.cookies); never stored in the frontier.
    cookie: str | None = None
    # A node of a shared run (PostgreSQL): no request of this Job goes on the wire after
    # this ``time.monotonic()`` value, its host's local lease deadline (crawler.engine.nodes;
    # the worker's check: crawler.worker.fence). CLOCK_MONOTONIC is one clock for every
    # process on a Linux machine, so the parent's deadline means the same in the worker.
    # None (SQLite, one machine): no deadline, nothing checked.
    not_after: float | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One row of the ``pages`` table: a URL fetched, with any status."""

    url: str
    status: int
    headers: str  # JSON object; repeated headers joined with ", "
    content_type: str | None
    size: int  # decoded body bytes received
    body: bytes | None  # None when store_body is off (or for a 304)
    content_hash: str | None
    etag: str | None
    last_modified: str | None
    location: str | None  # for a 3xx: the absolute target
    depth: int
    fetched_at: float  # unix time
    elapsed_ms: float


@dataclass(frozen=True, slots=True)
class Failure:
    """One row of the ``errors`` table."""

    url: str
    # e.g. "connect", "timeout", "reset", "protocol", "proxy" (the proxy, not the site, failed),
    # "too_large", "callback", "url", "worker_died"
    kind: str
    message: str
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The worker's answer to one ``Job``.

    ``state`` says what becomes of the frontier entry:

    - ``"done"``: fetched (any status, including a 3xx whose target is in ``requests``);
    - ``"failed"``: given up (retries exhausted, too large, a permanent error); see ``failures``;
    - ``"retry"``: fetch again, not before ``retry_at`` (unix time), counting one more attempt;
    - ``"lease_lost"``: not sent, because ``Job.not_after`` had passed (a node of a shared run
      lost its host's lease, or may have): no row, no attempt; the URL goes back to whoever
      holds the host.
    """

    fp: int
    url: str
    host: str
    state: Literal["done", "failed", "retry", "lease_lost"]
    page: Page | None = None
    items: tuple[dict[str, Any], ...] = ()
    follows: tuple[Follow, ...] = ()
    requests: tuple[NewRequest, ...] = ()
    links: tuple[str, ...] = ()  # outgoing canonical links, kept when store_links is on
    failures: tuple[Failure, ...] = ()
    retry_at: float | None = None
    # A 429/503 with Retry-After, or repeated failures: no request to this host before then.
    host_not_before: float | None = None
    skipped_urls: int = 0  # malformed, unsupported, offsite or too long: dropped and counted
    stats: dict[str, int] = field(default_factory=dict)  # extra counters, summed by the engine
    # The callback that ran on the page (None: none ran), for items per callback; and, when
    # the spider declares item_key, each item's identity in the order of ``items``.
    callback: str | None = None
    item_keys: tuple[str, ...] = ()
    # A "retry" has no page or failure row: what the host did instead (an HTTP status such as
    # 503, or a transport error kind such as "timeout"), for the parent's autothrottle.
    retry_status: int | None = None
    retry_error: str | None = None
    # The answer to a robots.txt Job (``callback == ROBOTS_CALLBACK``): plain data, picklable.
    robots: RobotsPolicy | None = None
    # The response's Set-Cookie headers in the order received, for the engine's jar; and
    # whether the spider's ``logged_in`` check said the session ended (the Job is retried
    # after a new login).
    set_cookies: tuple[str, ...] = ()
    session_ended: bool = False


def _pickle_as_values(cls: type) -> None:
    """Pickle ``cls`` as ``(cls, its field values)``, read back through its ``__init__``.

    Every Job and Outcome crosses a pipe, and the pickling a ``slots`` dataclass gets by
    default (``__getstate__``/``__setstate__``) calls ``fields()`` and loops in Python on both
    sides: 25 us to dump and 32 us to load three small Outcomes, against 10 and 21 this way.
    The field list is read from the class, so a field added later is pickled too.
    """
    values = operator.attrgetter(*(f.name for f in fields(cls)))

    def __reduce__(self: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]


for _cls in (NewRequest, Job, Page, Failure, Outcome):
    _pickle_as_values(_cls)
del _cls
