"""Reading a response body under a size limit and a whole-response deadline.

A body larger than the limit is cut (what was read is kept, with the reason), and a peer that
trickles bytes must not hold a fetch thread, and a slot of its host, forever: the pool enforces
the deadline on every socket wait (``Timeout.total``) and :func:`read_body` also checks it
between pieces. :class:`BodyDeadline` is that deadline's error; :func:`past_deadline` tells the
pool's read timeout at the deadline apart from an ordinary one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crawler.http import BodyTooLargeError, HTTPError, MaxRetryError, ReadTimeoutError

__all__ = ["BodyDeadline", "past_deadline", "read_body"]

_CHUNK = 64 * 1024
# A read timeout this close to the whole-response deadline is the pool enforcing that deadline.
_DEADLINE_SLACK = 0.5


class BodyDeadline(HTTPError):
    """The body took longer than the whole-response deadline (a slowloris peer)."""


def read_body(
    resp: Any, started: float, limit: int, body_deadline: float, clock: Callable[[], float]
) -> tuple[bytes, str | None]:
    """Read the decoded body up to ``limit`` bytes; the second value says why it was cut.

    Raises :class:`BodyDeadline` when the body is not complete ``body_deadline`` seconds after
    ``started`` (by ``clock``), and what the pool raises for the connection.
    """
    deadline = started + body_deadline
    parts: list[bytes] = []
    size = 0
    try:
        # read1: each piece as it arrives, so a trickled body meets the clock check below
        # between bytes instead of after a 64 KiB read.
        while chunk := resp.read1(_CHUNK):
            if size + len(chunk) > limit:
                parts.append(chunk[: limit - size])
                resp.close()
                return b"".join(parts), f"body larger than {limit} bytes"
            parts.append(chunk)
            size += len(chunk)
            if clock() > deadline:
                resp.close()
                raise BodyDeadline(f"body not complete after {body_deadline:.0f}s")
    except BodyTooLargeError:
        resp.close()
        return b"".join(parts), f"body larger than {limit} bytes"
    return b"".join(parts), None


def past_deadline(
    exc: HTTPError,
    started: float,
    body_deadline: float,
    clock: Callable[[], float],
    what: str,
) -> HTTPError:
    """The pool's read timeout at the whole-response deadline, as that deadline's error."""
    cause = exc.reason if isinstance(exc, MaxRetryError) else exc
    if isinstance(cause, ReadTimeoutError) and (
        clock() - started >= body_deadline - _DEADLINE_SLACK
    ):
        return BodyDeadline(f"{what} not complete after {body_deadline:.0f}s")
    return exc
