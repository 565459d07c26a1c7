"""``Retry``: an immutable retry policy. ``increment`` returns a new policy or raises.

Counters left at ``None`` fall back on ``total``. A connect error never reached the
server, so it is always safe to retry; a read error (timeout, dropped connection,
broken framing) may have reached it, so it is retried only for ``allowed_methods``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from ..exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)

if TYPE_CHECKING:
    from ..response import HTTPResponse

__all__ = ["Retry"]

IDEMPOTENT_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE"})
RETRY_AFTER_STATUS_CODES = frozenset({413, 429, 503})
BACKOFF_MAX = 120.0


@dataclass(frozen=True, slots=True)
class RequestHistory:
    method: str | None
    url: str | None
    error: BaseException | None
    status: int | None
    redirect_location: str | None


@dataclass(frozen=True, slots=True)
class Retry:
    """How many more attempts are allowed, per kind of failure."""

    DEFAULT: ClassVar[Retry]

    total: int | bool | None = 10
    connect: int | None = None
    read: int | None = None
    redirect: int | bool | None = None
    status: int | None = None
    other: int | None = None
    status_forcelist: Collection[int] | None = None
    backoff_factor: float = 0.0
    backoff_max: float = BACKOFF_MAX
    respect_retry_after_header: bool = True
    allowed_methods: Collection[str] | None = IDEMPOTENT_METHODS
    raise_on_redirect: bool = True
    raise_on_status: bool = True
    # A Retry-After longer than this is not waited for inside urlopen: the response is
    # returned as it is, so a hostile "Retry-After: 3600" cannot park a caller for an hour.
    retry_after_max: float = 5.0
    history: tuple[RequestHistory, ...] = ()

    def __post_init__(self) -> None:
        for name in ("connect", "read", "status", "other"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ValueError(f"Retry.{name} must be a non-negative int or None")
        if self.backoff_factor < 0:
            raise ValueError("Retry.backoff_factor must be >= 0")
        if self.redirect is False or self.total is False:
            object.__setattr__(self, "raise_on_redirect", False)
        if self.redirect is False:
            object.__setattr__(self, "redirect", 0)

    @classmethod
    def from_int(
        cls,
        retries: Retry | int | bool | None,
        redirect: bool | int | None = True,
        default: Retry | int | None = None,
    ) -> Retry:
        """Coerce what a caller passed as ``retries`` into a ``Retry``."""
        if retries is None:
            retries = default if default is not None else cls.DEFAULT
        if isinstance(retries, Retry):
            return retries
        redirect = bool(redirect) and None
        return cls(retries, redirect=redirect)

    def new(self, **kw: Any) -> Retry:
        return replace(self, **kw)

    # --- queries -------------------------------------------------------------------------

    def is_retry(
        self,
        method: str,
        status_code: int,
        has_retry_after: bool = False,
        retry_after: float | None = None,
    ) -> bool:
        """Should a response with this status be retried?

        Never when it asks us (``retry_after`` seconds) to wait longer than
        ``retry_after_max``.
        """
        if not self._method_allowed(method):
            return False
        if (
            self.respect_retry_after_header
            and retry_after is not None
            and retry_after > self.retry_after_max
        ):
            return False
        if self.status_forcelist and status_code in self.status_forcelist:
            return True
        return bool(
            self.total
            and self.respect_retry_after_header
            and has_retry_after
            and status_code in RETRY_AFTER_STATUS_CODES
        )

    def is_exhausted(self) -> bool:
        counts = [
            c
            for c in (self.total, self.connect, self.read, self.redirect, self.status, self.other)
            if c is not None and not isinstance(c, bool)
        ]
        return bool(counts) and min(counts) < 0

    def _method_allowed(self, method: str | None) -> bool:
        return self.allowed_methods is None or (method or "").upper() in self.allowed_methods

    def get_backoff_time(self) -> float:
        """Seconds to sleep before the next attempt (0 for the first retry of a run)."""
        run = 0
        for entry in reversed(self.history):
            if entry.redirect_location is not None:
                break
            run += 1
        if run <= 1:
            return 0.0
        return float(min(self.backoff_max, self.backoff_factor * (2 ** (run - 1))))

    @staticmethod
    def parse_retry_after(value: str, now: float | None = None) -> float:
        """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP-date)."""
        if re.fullmatch(r"\s*[0-9]+\s*", value):
            return float(int(value))
        import email.utils  # 9 ms of imports, for the rare Retry-After given as a date

        parsed = email.utils.parsedate_to_datetime(value)
        now = time.time() if now is None else now
        return max(parsed.timestamp() - now, 0.0)

    def get_retry_after(self, response: HTTPResponse) -> float | None:
        value = response.headers.get("Retry-After")
        if value is None:
            return None
        try:
            return self.parse_retry_after(value)
        except (TypeError, ValueError):
            return None

    def sleep(self, response: HTTPResponse | None = None) -> None:
        if self.respect_retry_after_header and response is not None:
            after = self.get_retry_after(response)
            if after:
                time.sleep(min(after, self.backoff_max))
                return
        backoff = self.get_backoff_time()
        if backoff > 0:
            time.sleep(backoff)

    # --- the transition ---------------------------------------------------------------

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: HTTPResponse | None = None,
        error: BaseException | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> Retry:
        """Count one failed attempt; return the new policy or raise ``MaxRetryError``.

        An error that is not retryable (a read error for a non-idempotent method, or any
        error when ``total`` is ``False``) is re-raised as it is.
        """
        if self.total is False:
            if error is not None:
                raise error
            raise MaxRetryError(_pool, url or "", ResponseError("retries are disabled"))
        total = self.total
        if total is not None and not isinstance(total, bool):
            total -= 1
        connect, read, redirect, status, other = (
            self.connect,
            self.read,
            self.redirect,
            self.status,
            self.other,
        )
        cause: BaseException | None = None
        status_code: int | None = None
        location: str | None = None
        if error is not None and _is_connect_error(error):
            if connect is not None:
                connect -= 1
            cause = error
        elif error is not None and _is_read_error(error):
            if not self._method_allowed(method):
                raise error
            if read is not None:
                read -= 1
            cause = error
        elif error is not None:
            if other is not None:
                other -= 1
            cause = error
        elif response is not None and response.get_redirect_location():
            if redirect is not None and not isinstance(redirect, bool):
                redirect -= 1
            cause = ResponseError("too many redirects")
            status_code = response.status
            loc = response.get_redirect_location()
            location = loc if isinstance(loc, str) else None
        else:
            if status is not None:
                status -= 1
            if response is not None:
                status_code = response.status
                cause = ResponseError(f"too many {status_code} error responses")
            else:
                cause = ResponseError("unknown failure")
        history = (*self.history, RequestHistory(method, url, error, status_code, location))
        counts = (total, connect, read, redirect, status, other)
        if any(c is not None and not isinstance(c, bool) and c < 0 for c in counts):
            raise MaxRetryError(_pool, url or "", error or cause) from error
        new = replace(
            self,
            total=total,
            connect=connect,
            read=read,
            redirect=redirect,
            status=status,
            other=other,
            history=history,
        )
        return new


def _is_connect_error(err: BaseException) -> bool:
    return isinstance(err, ConnectTimeoutError | NewConnectionError | SSLError)


def _is_read_error(err: BaseException) -> bool:
    return isinstance(err, ReadTimeoutError | ProtocolError)


Retry.DEFAULT = Retry(3)
