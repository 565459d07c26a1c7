"""The decisions a worker makes about one fetch, as pure functions.

Nothing here does I/O or reads the clock: the worker passes ``now`` and a random source in, so
each rule is a one-line test. The job runner (``crawler.worker.runner``) does the fetching and
calls these to decide what becomes of a frontier entry:

- a retryable failure (connection error, timeout, reset, 429, 5xx) with attempts left becomes
  ``Outcome(state="retry", retry_at=...)``, delayed by exponential backoff with 0.5x-1.5x jitter,
  never earlier than a ``Retry-After`` the server sent;
- with no attempts left it becomes ``state="failed"`` with a ``Failure`` row;
- a 3xx with a usable ``Location`` becomes a new frontier entry for the target (see
  :func:`redirect_target`), so redirects are visible rows rather than hidden in the pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from crawler.http import (
    BodyTooLargeError,
    ConnectTimeoutError,
    DecodeError,
    HTTPError,
    LocationParseError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from crawler.http import TimeoutError as HTTPTimeoutError

# The method after a redirect is the pool's rule too; one definition serves both.
from crawler.http.util.redirect import redirect_method

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "REDIRECT_STATUSES",
    "RETRY_AFTER_MAX",
    "RETRY_STATUSES",
    "RetryDecision",
    "backoff_delay",
    "decide_retry",
    "error_kind",
    "is_retryable_error",
    "parse_retry_after",
    "redirect_method",
    "redirect_target",
]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BACKOFF_BASE = 1.0  # seconds before the first retry, doubled per attempt
BACKOFF_MAX = 300.0
# A Retry-After further out than this is treated as this: a run that must wait a day for one
# host should end (max_runtime) and resume later rather than hold the entry hostage.
RETRY_AFTER_MAX = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a retryable failure: ``retry_at`` is None when attempts are used up."""

    retry_at: float | None
    host_not_before: float | None = None

    @property
    def give_up(self) -> bool:
        return self.retry_at is None


def backoff_delay(
    attempt: int,
    rand: Callable[[], float],
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_MAX,
) -> float:
    """Seconds to wait before retry number ``attempt + 1``: ``base * 2**attempt``, jittered.

    ``rand()`` returns a float in [0, 1); the jitter spreads retries of many URLs that failed
    together (a host restart) so they do not come back as one burst.
    """
    raw = min(cap, base * math.pow(2.0, max(0, attempt)))
    return raw * (0.5 + rand())


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        seconds = float(text)
    else:
        import email.utils  # 9 ms of imports, for the rare Retry-After given as a date

        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now
    return min(max(0.0, seconds), RETRY_AFTER_MAX)


def decide_retry(
    attempt: int,
    retries: int,
    now: float,
    rand: Callable[[], float],
    *,
    status: int | None = None,
    retry_after: float | None = None,
) -> RetryDecision:
    """Retry or give up after a failed attempt number ``attempt`` (0 for the first fetch).

    A 429 or 503 with ``Retry-After`` also pushes the whole host (``host_not_before``): the
    server told us about itself, not about one URL.
    """
    host_not_before = None
    if retry_after is not None and status in (429, 503):
        host_not_before = now + retry_after
    if attempt >= retries:
        return RetryDecision(None, host_not_before)
    delay = backoff_delay(attempt, rand)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return RetryDecision(now + delay, host_not_before)


def _root_cause(exc: BaseException) -> BaseException:
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        return exc.reason
    return exc


def is_retryable_error(exc: BaseException) -> bool:
    """Connection errors, timeouts and resets are worth another try; the rest are permanent."""
    cause = _root_cause(exc)
    if isinstance(cause, BodyTooLargeError | DecodeError | LocationParseError | SSLError):
        return False
    return isinstance(cause, ProtocolError | HTTPTimeoutError | ConnectionError | OSError)


def error_kind(exc: BaseException) -> str:
    """The ``errors.kind`` for an exception raised while fetching."""
    cause = _root_cause(exc)
    if isinstance(cause, BodyTooLargeError):
        return "too_large"
    if isinstance(cause, DecodeError):
        return "decode"
    if isinstance(cause, ConnectTimeoutError):
        return "connect_timeout"
    if isinstance(cause, ReadTimeoutError | HTTPTimeoutError):
        return "timeout"
    if isinstance(cause, NewConnectionError):
        return "connect"
    if isinstance(cause, SSLError):
        return "ssl"
    if isinstance(cause, LocationParseError):
        return "url"
    if isinstance(cause, ConnectionResetError):
        return "reset"
    if isinstance(cause, ProtocolError):
        text = str(cause).lower()
        return "reset" if "reset" in text or "aborted" in text else "protocol"
    if isinstance(cause, ConnectionError):
        return "connect"
    if isinstance(cause, HTTPError):
        return "http"
    return "other"


def redirect_target(url: str, location: str | None) -> str | None:
    """The absolute target of a redirect from ``url``, or None when it is not http(s).

    The caller canonicalizes the result; here we only resolve it and keep the scheme rule
    (``file:``, ``ftp:``, ``javascript:`` and friends are never followed).
    """
    if location is None:
        return None
    location = location.strip()
    if not location or any(c in location for c in "\r\n\0"):
        return None
    try:
        target = urljoin(url, location)
        scheme = urlsplit(target).scheme.lower()
    except ValueError:
        return None
    if scheme not in ("http", "https"):
        return None
    return target
