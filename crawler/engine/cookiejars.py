"""The spider's cookie jars: RFC 6265 matching by the standard library, owned by the parent.

How this works: the engine (one process, one thread) holds every jar. A jar is an
``http.cookiejar.CookieJar`` (domain and path matching, ``Secure``, expiry; ``HttpOnly`` and
``SameSite`` kept among the cookie's attributes) whose policy also consults the Public Suffix
List, so ``Domain=.co.uk`` (or ``Domain=github.io``) is refused; the standard library alone
knows only a few hard-coded suffixes. When the engine dispatches a Job it computes the
``Cookie`` header for the Job's URL here (:meth:`CookieJars.header`); the worker sends it and
returns the response's ``Set-Cookie`` headers, in order, in the Outcome, which the engine
feeds back with :meth:`CookieJars.absorb` before the batch (and any redirect target in it) is
recorded. So hosts of one site served by different worker processes share one jar, and a
worker never holds cookie state. A Job already in flight carries the header of the moment it
was sent, as a browser's parallel requests do.

Named sessions (``Request(session="buyer")``) are separate jars; ``None`` is the default one.
Cookie *values* are secrets: nothing here logs them, and ``repr`` shows counts only.

This module is the parent's alone and loaded when the engine builds its sessions, after the
workers are forked: ``http.cookiejar`` imports ``urllib.request``, which loads ``http.client``
and ``ssl`` (about 6 MB resident). The values a Request's meta carries between the processes
(``SESSION_META`` and the others) are in :mod:`crawler.cookies`.
"""

from __future__ import annotations

import email.message
import http.cookiejar
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["CookieJars", "PublicSuffixPolicy"]

_psl: Any = None


def _public_suffixes() -> Any:
    global _psl
    if _psl is None:
        from publicsuffixlist import PublicSuffixList

        _psl = PublicSuffixList()
    return _psl


class PublicSuffixPolicy(http.cookiejar.DefaultCookiePolicy):
    """The standard RFC 6265-style policy, plus: a ``Domain`` that is a public suffix is
    refused unless it is the request's own host (then the cookie stays host-only in effect,
    RFC 6265 section 5.3 step 5)."""

    def set_ok_domain(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        if not super().set_ok_domain(cookie, request):
            return False
        if cookie.domain_specified:
            domain = cookie.domain.lstrip(".").lower()
            host = http.cookiejar.request_host(request).lower()  # type: ignore[attr-defined]
            if domain != host and _public_suffixes().is_public(domain):
                return False
        return True


class _Response:
    """What ``CookieJar.extract_cookies`` reads: ``info().get_all("Set-Cookie")``."""

    def __init__(self, set_cookie: Sequence[str]) -> None:
        self._message = email.message.Message()
        for value in set_cookie:
            self._message["Set-Cookie"] = value

    def info(self) -> email.message.Message:
        return self._message


# The stored form of a cookie: these attributes of http.cookiejar.Cookie, one column each.
_FIELDS = (
    "version",
    "name",
    "value",
    "port",
    "port_specified",
    "domain",
    "domain_specified",
    "domain_initial_dot",
    "path",
    "path_specified",
    "secure",
    "expires",
    "discard",
    "comment",
    "comment_url",
)


class CookieJars:
    """Every cookie jar of one crawl: one per session name (``None``: the default)."""

    def __init__(self) -> None:
        self._jars: dict[str | None, http.cookiejar.CookieJar] = {}
        self._policy = PublicSuffixPolicy()
        self.dirty = False  # changed since the last save (rows())

    def __repr__(self) -> str:
        counts = ", ".join(f"{k or 'default'}: {len(j)}" for k, j in self._jars.items())
        return f"<CookieJars {counts or 'empty'}>"

    def __bool__(self) -> bool:
        return any(len(jar) for jar in self._jars.values())

    def _jar(self, session: str | None) -> http.cookiejar.CookieJar:
        jar = self._jars.get(session)
        if jar is None:
            jar = self._jars[session] = http.cookiejar.CookieJar(self._policy)
        return jar

    def header(
        self, url: str, session: str | None = None, extra: Mapping[str, str] | None = None
    ) -> str | None:
        """The ``Cookie`` header for ``url`` (``None``: no cookie); ``extra`` are the
        request's own cookies, sent after the jar's and in place of same-named ones."""
        value = None
        jar = self._jars.get(session)
        if jar is not None and len(jar):
            request = urllib.request.Request(url)
            jar.add_cookie_header(request)
            value = request.unredirected_hdrs.get("Cookie")
        if extra:
            pairs = [p for p in (value or "").split("; ") if p and p.split("=", 1)[0] not in extra]
            pairs.extend(f"{name}={val}" for name, val in extra.items())
            value = "; ".join(pairs)
        return value or None

    def absorb(self, url: str, set_cookie: Sequence[str], session: str | None = None) -> None:
        """Take a response's ``Set-Cookie`` headers (in the order received) for ``url``."""
        if set_cookie:
            self._jar(session).extract_cookies(
                _Response(set_cookie),  # type: ignore[arg-type]
                urllib.request.Request(url),
            )
            self.dirty = True

    def clear(self, session: str | None = None) -> None:
        """Forget one session's cookies (its login ended)."""
        jar = self._jars.pop(session, None)
        if jar is not None and len(jar):
            self.dirty = True

    def has_live(self, session: str | None = None, now: float | None = None) -> bool:
        """Does ``session`` hold any cookie that has not expired?"""
        jar = self._jars.get(session)
        if jar is None:
            return False
        now = time.time() if now is None else now
        return any(not c.is_expired(int(now)) for c in jar)

    def cookies(self, session: str | None = None) -> list[http.cookiejar.Cookie]:
        jar = self._jars.get(session)
        return list(jar) if jar is not None else []

    # -- persistence: plain rows for the store ----------------------------------------------

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every unexpired cookie as a row (session cookies included: a scheduled crawl
        stays logged in). Clears ``dirty``."""
        now = time.time() if now is None else now
        out = []
        for session, jar in self._jars.items():
            for cookie in jar:
                if cookie.is_expired(int(now)):
                    continue
                row: dict[str, Any] = {"session": session or ""}
                row.update((f, getattr(cookie, f)) for f in _FIELDS)
                row["rest"] = dict(cookie._rest)  # type: ignore[attr-defined]  # HttpOnly, SameSite
                out.append(row)
        self.dirty = False
        return out

    def load(self, rows: Iterable[Mapping[str, Any]], now: float | None = None) -> int:
        """Restore stored cookies (expired ones dropped); how many were kept."""
        now = time.time() if now is None else now
        kept = 0
        for row in rows:
            expires = row.get("expires")
            if expires is not None and expires <= now:
                continue
            kwargs: dict[str, Any] = {f: row.get(f) for f in _FIELDS}
            for flag in (
                "port_specified",
                "domain_specified",
                "domain_initial_dot",
                "path_specified",
                "secure",
                "discard",
            ):
                kwargs[flag] = bool(kwargs[flag])
            cookie = http.cookiejar.Cookie(**kwargs, rest=dict(row.get("rest") or {}))
            self._jar(row.get("session") or None).set_cookie(cookie)
            kept += 1
        return kept

    def sessions(self) -> Iterator[str | None]:
        return iter(list(self._jars))
