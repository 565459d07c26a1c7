"""Building a worker's answers: the page row and the Outcome shapes every path shares.

Every way a Job ends (a response, a redirect, a retry, a sitemap, a callback) answers with an
:class:`~crawler.messages.Outcome`; the common shapes are built here once so the paths that
use them read as decisions, not as constructor calls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from crawler.messages import Failure, Job, Outcome, Page
from crawler.worker.retry import RetryDecision

__all__ = ["done", "failed", "lease_lost", "make_page", "retry"]


def done(job: Job, page: Page | None, failures: Iterable[Failure] = (), **more: Any) -> Outcome:
    """The Job is finished: its page row (if any), failures, and ``more`` Outcome fields."""
    return Outcome(job.fp, job.url, job.host, "done", page=page, failures=tuple(failures), **more)


def failed(job: Job, failure: Failure) -> Outcome:
    """The Job is given up, for one reason, without a page row."""
    return Outcome(job.fp, job.url, job.host, "failed", failures=(failure,))


def lease_lost(job: Job) -> Outcome:
    """Not sent: the Job's ``not_after`` had passed (``crawler.worker.fence``)."""
    return Outcome(job.fp, job.url, job.host, "lease_lost")


def retry(
    job: Job, decision: RetryDecision, status: int | None = None, error: str | None = None
) -> Outcome:
    """Fetch the Job again at ``decision.retry_at`` (the host may be pushed too); ``status``
    or ``error`` (a Failure kind) say what the host did, for the parent's autothrottle."""
    return Outcome(
        job.fp,
        job.url,
        job.host,
        "retry",
        retry_at=decision.retry_at,
        host_not_before=decision.host_not_before,
        stats={"retries": 1},
        retry_status=status,
        retry_error=error,
    )


def make_page(
    job: Job,
    status: int,
    headers: Any,
    content_type: str | None,
    body: bytes,
    location: str | None,
    started: float,
    now: float,
    store_body: bool,
) -> Page:
    """The ``pages`` row of a response (the body only when it is stored, and never for a 304)."""
    keep = store_body and status != 304
    return Page(
        url=job.url,
        status=status,
        headers=json.dumps(dict(headers.itermerged()), ensure_ascii=False),
        content_type=content_type,
        size=len(body),
        body=body if keep else None,
        content_hash=hashlib.blake2b(body, digest_size=16).hexdigest() if body else None,
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        location=location,
        depth=job.depth,
        fetched_at=now,
        elapsed_ms=round((now - started) * 1000.0, 3),
    )
