"""A recrawl fetch as the worker makes it: conditional headers, and telling "unchanged".

Which stored pages a new run fetches again is decided in the store, in SQL
(``Store.schedule_recrawl`` for start URLs, sitemaps and ``recrawl_after``; ``Store.add`` for a
sitemap ``lastmod`` newer than the last fetch; docs/cron.md lists the rules). A due entry's
``Job`` carries the validators and body hash the frontier kept from its last fetch; the
worker asks conditionally with them (:func:`conditional_headers`), and the answer counts as
unchanged (:func:`is_unchanged`) for a 304 or for a 2xx body whose hash equals the stored one.
An unchanged page keeps its stored data and its callback is not run again.
"""

from __future__ import annotations

__all__ = ["conditional_headers", "is_unchanged"]


def _clean(value: str | None) -> str | None:
    """A validator we can send back: non-empty, one line, no NUL (it came from a server)."""
    if value is None:
        return None
    value = value.strip()
    if not value or any(c in value for c in "\r\n\0"):
        return None
    return value


def conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    """``If-None-Match`` / ``If-Modified-Since`` from stored validators (RFC 9110 13.1).

    Both are sent when both are known: a server that understands ETags ignores
    If-Modified-Since when If-None-Match is present. Unusable values are left out.
    """
    headers: dict[str, str] = {}
    if tag := _clean(etag):
        headers["If-None-Match"] = tag
    if date := _clean(last_modified):
        headers["If-Modified-Since"] = date
    return headers


def is_unchanged(status: int, new_hash: str | None, old_hash: str | None) -> bool:
    """Did a refetch find the same page: a 304, or a 2xx body with the stored hash?"""
    if status == 304:
        return True
    return 200 <= status < 300 and new_hash is not None and new_hash == old_hash
