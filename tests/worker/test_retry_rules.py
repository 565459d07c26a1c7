"""The pure fetch decisions (crawler.worker.retry): backoff, Retry-After, retry, redirects."""

from __future__ import annotations

import email.utils

import pytest

from crawler.http import (
    BodyTooLargeError,
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from crawler.worker import retry as fetch

NOW = 1_000_000.0


def half() -> float:
    return 0.5  # jitter factor 1.0


@pytest.mark.parametrize(("attempt", "delay"), [(0, 1.0), (1, 2.0), (3, 8.0), (30, 300.0)])
def test_backoff_doubles_and_is_capped(attempt: int, delay: float) -> None:
    assert fetch.backoff_delay(attempt, half) == delay


def test_backoff_jitter_range() -> None:
    assert fetch.backoff_delay(2, lambda: 0.0) == 2.0
    assert fetch.backoff_delay(2, lambda: 0.999) == pytest.approx(5.996)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("", None), ("120", 120.0), ("soon", None), ("99999999", 86400.0)],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert fetch.parse_retry_after(value, NOW) == seconds


def test_parse_retry_after_http_date() -> None:
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert fetch.parse_retry_after(date, NOW) == pytest.approx(30.0)
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert fetch.parse_retry_after(past, NOW) == 0.0


def test_decide_retry_until_retries_are_used() -> None:
    first = fetch.decide_retry(0, 2, NOW, half)
    assert (first.retry_at, first.host_not_before, first.give_up) == (NOW + 1.0, None, False)
    assert fetch.decide_retry(1, 2, NOW, half).retry_at == NOW + 2.0
    assert fetch.decide_retry(2, 2, NOW, half).give_up


def test_retry_after_wins_over_backoff_and_pushes_the_host() -> None:
    d = fetch.decide_retry(0, 3, NOW, half, status=503, retry_after=60.0)
    assert (d.retry_at, d.host_not_before) == (NOW + 60.0, NOW + 60.0)
    # A 500 with Retry-After delays the URL but says nothing about the host.
    assert fetch.decide_retry(0, 3, NOW, half, status=500, retry_after=60.0).host_not_before is None
    # Even when giving up, a 429's Retry-After still holds the host back.
    given_up = fetch.decide_retry(3, 3, NOW, half, status=429, retry_after=10.0)
    assert given_up.give_up and given_up.host_not_before == NOW + 10.0


@pytest.mark.parametrize(
    ("exc", "kind", "retry"),
    [
        (NewConnectionError("refused"), "connect", True),
        (ConnectTimeoutError("slow connect"), "connect_timeout", True),
        (ReadTimeoutError("slow read"), "timeout", True),
        (ProtocolError("Connection reset by peer"), "reset", True),
        (ProtocolError("bad status line"), "protocol", True),
        (SSLError("bad cert"), "ssl", False),
        (BodyTooLargeError("big"), "too_large", False),
        (MaxRetryError(None, "http://a/", NewConnectionError("refused")), "connect", True),
    ],
)
def test_error_kinds(exc: BaseException, kind: str, retry: bool) -> None:
    assert fetch.error_kind(exc) == kind
    assert fetch.is_retryable_error(exc) is retry


@pytest.mark.parametrize(
    ("location", "target"),
    [
        ("/b", "http://h/b"),
        ("https://other/x", "https://other/x"),
        ("//other/y", "http://other/y"),
        ("ftp://h/file", None),
        ("file:///etc/passwd", None),
        ("javascript:alert(1)", None),
        ("/ok\r\nX-Injected: yes", None),
        ("", None),
        (None, None),
    ],
)
def test_redirect_target(location: str | None, target: str | None) -> None:
    assert fetch.redirect_target("http://h/a", location) == target


@pytest.mark.parametrize(
    ("status", "method", "result"),
    [(303, "POST", "GET"), (302, "POST", "GET"), (307, "POST", "POST"), (301, "GET", "GET")],
)
def test_redirect_method(status: int, method: str, result: str) -> None:
    assert fetch.redirect_method(status, method) == result
