"""The parent's robots.txt bookkeeping: which hosts may be dispatched, and what to fetch first.

How this works: the engine asks :meth:`RobotsGate.state` for every host it is about to
dispatch. With no valid policy for the host the answer is ``FETCH``: the engine sends the
Job from :meth:`RobotsGate.begin` (callback ``ROBOTS_CALLBACK``, no frontier row) to the
worker that owns the host, which fetches robots.txt through that host's own pool, so the
fetch counts toward ``per_host`` and comes before any other request to the host. Until the
answer arrives the host is ``PENDING`` and nothing else of it is dispatched. The answer
(:meth:`finish`) goes into a :class:`~crawler.robots.RobotsCache`; from then on the host is
``GO`` (the engine checks ``policy.allows(url)`` for each Job it takes) until the policy
expires (24 h), or ``WAIT`` while robots.txt is unreachable (5xx, 429, no connection): its
URLs stay queued and robots.txt is asked for again at ``retry_at``, and at the start of the
next run whatever ``retry_at`` says.

The parent, not the worker, applies the rules: it is the only process that sees every host's
policy, it can leave a disallowed URL undispatched, and it knows the Crawl-delay before the
first page request of the host starts. No I/O here; times are passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

from crawler.messages import ROBOTS_CALLBACK, Job
from crawler.robots import STALE_GRACE, RobotsCache, RobotsPolicy, robots_url
from crawler.store import ROBOTS_COLUMNS
from crawler.urls import fingerprint

__all__ = ["Gate", "RobotsGate"]


class Gate(enum.Enum):
    FETCH = "fetch robots.txt first"
    PENDING = "robots.txt being fetched"
    WAIT = "robots.txt unreachable; retry later"
    GO = "rules known"


class RobotsGate:
    """Robots policies by host key, the fetches in flight, and the hosts waiting to retry."""

    def __init__(self, user_agent: str, crawl_delay_max: float) -> None:
        self.user_agent = user_agent
        self.crawl_delay_max = crawl_delay_max
        self.cache = RobotsCache()
        self._pending: dict[str, int] = {}  # host -> the fp of its robots Job in flight
        self._by_fp: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"<RobotsGate {len(self.cache)} hosts {len(self._pending)} fetching>"

    # -- persistence (rows of the Store's robots table) --------------------------------------

    @staticmethod
    def row(policy: RobotsPolicy) -> dict[str, Any]:
        return {name: getattr(policy, name) for name in ROBOTS_COLUMNS}

    @staticmethod
    def since(now: float) -> float:
        """Older stored policies are useless even as a stale fallback."""
        return now - STALE_GRACE

    def load(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> list[tuple[str, RobotsPolicy]]:
        """Policies from an earlier run; one fetched for another User-Agent is ignored.

        A robots.txt that was unreachable when last asked is asked again at the start of this
        run: the operator may have fixed the server, and the 5-minute backoff is for retries
        within one run. An unreachable row is dropped; a last good copy kept in force while
        unreachable is loaded as already expired, so it is fetched first and still serves as
        the stale fallback if the server is down again.
        """
        loaded = []
        for host, row in rows:
            if row.get("user_agent") != self.user_agent:
                continue
            try:
                fetched_at = float(row["fetched_at"])
                expires_at = float(row["expires_at"])
                if row["retry_at"] is not None:
                    if row["kind"] == "disallow_all":
                        continue
                    expires_at = fetched_at
                policy = RobotsPolicy(
                    kind=row["kind"],
                    status=row["status"],
                    fetched_at=fetched_at,
                    expires_at=expires_at,
                    user_agent=self.user_agent,
                    crawl_delay_max=self.crawl_delay_max,
                    text=row["text"] or "",
                )
            except (KeyError, TypeError, ValueError):
                continue  # a row we cannot read is simply fetched again
            loaded.append((host, self.cache.put(host, policy)))
        return loaded

    # -- the dispatch decision ---------------------------------------------------------------

    def state(self, host: str, now: float) -> tuple[Gate, RobotsPolicy | None]:
        if host in self._pending:
            return Gate.PENDING, None
        policy = self.cache.get(host, now)
        if policy is None:
            return Gate.FETCH, None
        if policy.kind == "disallow_all":  # only ever the temporary "unreachable"
            return Gate.WAIT, policy
        return Gate.GO, policy

    def begin(self, host: str, url: str) -> Job:
        """The Job that fetches ``host``'s robots.txt (``url`` is any URL of the host)."""
        target = robots_url(url)
        fp = fingerprint(target, "ROBOTS")  # never a frontier fingerprint (those use GET...)
        self._pending[host] = fp
        self._by_fp[fp] = host
        return Job(fp=fp, url=target, host=host, callback=ROBOTS_CALLBACK)

    def is_robots(self, fp: int) -> bool:
        return fp in self._by_fp

    def finish(self, fp: int, policy: RobotsPolicy | None, now: float) -> tuple[str, RobotsPolicy]:
        """Take the answer to a robots Job: ``(host, the policy to obey)``.

        ``policy`` is None when the worker could not produce one (a bug of ours reported as a
        failure): treated like an unreachable robots.txt, so the host waits and retries.
        """
        host = self._by_fp.pop(fp)
        self._pending.pop(host, None)
        if policy is None:
            policy = RobotsPolicy.from_response(
                None,
                None,
                fetched_at=now,
                user_agent=self.user_agent,
                crawl_delay_max=self.crawl_delay_max,
            )
        return host, self.cache.put(host, policy)

    def lost(self, fp: int) -> None:
        """A robots Job that will never be answered (its worker died): fetch it again."""
        host = self._by_fp.pop(fp, None)
        if host is not None:
            self._pending.pop(host, None)

    def only_waiting(self, hosts: Iterable[str], now: float) -> bool:
        """Is every one of ``hosts`` held back by an unreachable robots.txt (and any at all)?"""
        seen = False
        for host in hosts:
            if self.state(host, now)[0] is not Gate.WAIT:
                return False
            seen = True
        return seen
