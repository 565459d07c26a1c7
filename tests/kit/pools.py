"""Pools on the kit's servers, and the two checks every fault test ends with.

``make_pool(server)`` opens a ``crawler.http`` pool on a ``MisbehavingServer`` or
``ConcurrencyServer``: one slot and ``block=True`` unless told otherwise, so a slot that a
failure leaks starves the next request instead of going unnoticed. ``assert_cause`` accepts an
error either raised as itself or wrapped as the ``reason`` of a ``MaxRetryError``.
``assert_healthy`` then shows the pool whole: nothing checked out, and the next request served.
"""

from __future__ import annotations

from typing import Any

from crawler.http import HTTPConnectionPool
from tests.kit.servers import LoopbackServer

__all__ = ["assert_cause", "assert_healthy", "make_pool"]


def make_pool(
    server: LoopbackServer, *, maxsize: int = 1, block: bool = True, **kw: Any
) -> HTTPConnectionPool:
    """A pool on ``server``; ``kw`` goes to ``HTTPConnectionPool`` (timeout, headers, ...)."""
    return HTTPConnectionPool(server.host, server.port, maxsize=maxsize, block=block, **kw)


def assert_cause(exc: BaseException, cls: type[BaseException] | tuple[type[BaseException], ...]):
    """Assert `exc` is `cls`, or a MaxRetryError-like error whose `.reason` is `cls`.

    The pool may surface a timeout, TLS or protocol error that used up the retries either way.
    Returns the cause for further checks.
    """
    if isinstance(exc, cls):
        return exc
    reason = getattr(exc, "reason", None)
    assert isinstance(reason, cls), f"expected {cls}, got {exc!r} (reason {reason!r})"
    return reason


def assert_healthy(pool: HTTPConnectionPool, **urlopen_kw: Any) -> None:
    """No slot lost: nothing checked out, and a blocking caller is served at once by ``/ok``.

    ``urlopen_kw`` adds to that request's keywords (a test's own ``timeout=``, say).
    """
    assert pool.num_in_use == 0
    response = pool.urlopen("GET", "/ok", pool_timeout=1, retries=0, **urlopen_kw)
    assert (response.status, response.data) == (200, b"ok")
    assert pool.num_in_use == 0
