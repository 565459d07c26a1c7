"""``Timeout``: an immutable pair of connect and read limits (plus an optional total)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Timeout"]


def _check(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"Timeout {name} must be a number or None, not {value!r}")
    if value <= 0:
        raise ValueError(f"Timeout {name} must be > 0 (use None to disable), got {value!r}")


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds allowed to connect, to wait for each read, and (optionally) in total.

    ``None`` disables a limit. ``total`` is a deadline for one attempt as a whole: connect,
    sending the request, the response head and its body (read inside ``urlopen`` when
    preloading; for ``preload_content=False`` until the body is consumed or released). Every
    socket wait gets ``min(read, what is left)``, so a peer trickling one byte just inside
    each read timeout is still cut off. Retries and redirect hops each start a new deadline;
    waiting for a pool slot (``pool_timeout``) is not counted. ``Timeout(5)`` sets both
    connect and read.
    """

    connect: float | None = None
    read: float | None = None
    total: float | None = None
    _started: float | None = field(default=None, compare=False, repr=False)

    def __init__(
        self, connect: float | None = None, read: float | None = None, total: float | None = None
    ) -> None:
        _check("connect", connect)
        _check("read", read)
        _check("total", total)
        object.__setattr__(self, "connect", connect)
        object.__setattr__(self, "read", read)
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "_started", None)

    @classmethod
    def from_float(cls, timeout: float | None) -> Timeout:
        """One number for both the connect and the read limit."""
        return cls(connect=timeout, read=timeout)

    @classmethod
    def coerce(cls, timeout: Timeout | float | None) -> Timeout:
        if isinstance(timeout, Timeout):
            return timeout
        return cls.from_float(timeout)

    @property
    def connect_timeout(self) -> float | None:
        if self.total is None:
            return self.connect
        if self.connect is None:
            return self.total
        return min(self.connect, self.total)

    def read_timeout(self, connect_started: float | None = None) -> float | None:
        """The read limit; with ``total``, what is left of it after connecting."""
        if self.total is None:
            return self.read
        used = 0.0 if connect_started is None else time.monotonic() - connect_started
        left = max(self.total - used, 0.001)
        return left if self.read is None else min(self.read, left)
