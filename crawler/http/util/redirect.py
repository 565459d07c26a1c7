"""The one redirect rule: what the next hop's request carries.

Three callers follow redirects: a pool (same host only), ``PoolManager`` (any host) and the
crawl, which turns a 3xx into a new request in its frontier. They all ask :func:`next_hop`
(or, for the pool's pre-split headers, :func:`redirect_method` and :func:`is_body_header`),
so the rule cannot drift between them:

- The method (RFC 9110 15.4): a 303 becomes GET (HEAD stays HEAD); a 301 or 302 answering a
  POST becomes GET, as browsers do; 307 and 308 keep the method and the body.
- A hop that becomes GET loses the body and the headers that describe it (``Content-*``,
  ``Transfer-Encoding``).
- Credentials belong to the origin they were sent to: a hop to another origin (scheme, host
  or port differs, so an https -> http downgrade is one too) drops ``Authorization``,
  ``Cookie`` and ``Proxy-Authorization``. Same origin keeps them. This is what leaked in
  Scrapy's CVE-2024-3574 and CVE-2024-1968.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from .url import DEFAULT_PORTS, parse_url

__all__ = [
    "CREDENTIAL_HEADERS",
    "Hop",
    "is_body_header",
    "next_hop",
    "origin",
    "redirect_method",
]

CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class Hop(NamedTuple):
    """The request a redirect leads to."""

    method: str
    keeps_body: bool  # False: send no body (the method became GET)
    headers: tuple[tuple[str, str], ...]
    cross_origin: bool


def redirect_method(status: int, method: str) -> str:
    """The next hop's method: GET after a 303 (but HEAD stays HEAD) and after a 301/302 that
    answered a POST; otherwise unchanged."""
    if status == 303 and method != "HEAD":
        return "GET"
    if status in (301, 302) and method == "POST":
        return "GET"
    return method


def is_body_header(lower_name: str) -> bool:
    """Does this (lower-case) header describe the request body, so it goes with the body?"""
    return lower_name.startswith("content-") or lower_name == "transfer-encoding"


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port filled in and the host lower-cased."""
    parsed = parse_url(url)
    scheme = (parsed.scheme or "http").lower()
    host = (parsed.host or "").lower().strip("[]")
    return scheme, host, parsed.port or DEFAULT_PORTS.get(scheme)


def next_hop(
    status: int, method: str, headers: Iterable[tuple[str, str]], from_url: str, to_url: str
) -> Hop:
    """The method, headers and whether the body goes along, for the request that follows
    ``status`` from ``from_url`` to ``to_url`` (both absolute)."""
    upper = method.upper()
    new_method = redirect_method(status, upper)
    to_get = new_method != upper
    cross_origin = origin(from_url) != origin(to_url)
    kept = tuple(
        (name, value)
        for name, value in headers
        if not (to_get and is_body_header(name.lower()))
        and not (cross_origin and name.lower() in CREDENTIAL_HEADERS)
    )
    return Hop(new_method, not to_get, kept, cross_origin)
