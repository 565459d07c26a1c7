"""Canonical URLs, hosts and fingerprints: what every process agrees a URL is. No I/O.

How this works: every discovered link passes through :func:`canonicalize_url` and
:func:`fingerprint` (hundreds per page), so both have a fast path. A URL that is already in
canonical form (lower-case http(s) scheme and host, no default port, no fragment, a path, only
safe characters and upper-case percent escapes of reserved bytes, no dot segments) is
recognised by one regular expression and returned as it is; anything else takes the slow
path, which rebuilds it piece by piece. The fast path accepts only strings the slow path would
return unchanged (``tests/shared/test_urls.py`` checks that property).

Canonical form, decided here once:

- only ``http`` and ``https`` with a host; scheme and host lower-cased; a non-ASCII host is
  IDNA-encoded; one trailing dot of the host is dropped; the default port (80/443) is dropped;
- userinfo (``user:pass@``) is kept, percent-normalised: dropping it would change what the
  server answers. It is rare, and :func:`url_host` ignores it;
- leading and trailing ASCII whitespace is stripped (as browsers do with ``href``); any other
  control character, CR or LF inside the URL is an :class:`InvalidURL`;
- the fragment is dropped; an empty path becomes ``/``; dot segments are resolved; an empty
  query (``?`` alone) is dropped; query parameter order is kept;
- percent-encoding: escapes of unreserved characters are decoded (``%7E`` -> ``~``), other
  escapes get upper-case hex, a ``%`` not followed by two hex digits becomes ``%25``; spaces,
  non-ASCII (as UTF-8) and other characters unsafe in a path or query are percent-encoded;
  reserved characters (``/?#[]@!$&'()*+,;=:``) are left alone.

Admission, also decided here once: :func:`admit` is the one chain every path that accepts a
URL goes through (links and requests a callback yields, sitemap entries, start requests and
sitemaps, redirect targets): canonical form, the ``max_url_length`` check on that form, the
host, the caller's offsite filter, the fingerprint. It answers :class:`Admitted` or
:class:`Refused`; what a refusal costs (a skipped count, an errors row) is the caller's to say."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from enum import Enum
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

from crawler.errors import InvalidURL

__all__ = [
    "Admitted",
    "Refusal",
    "Refused",
    "admit",
    "canonicalize_url",
    "fingerprint",
    "url_host",
]


# --- canonical URLs ---------------------------------------------------------------------------

# Percent escapes that canonical form keeps: upper-case hex, and not an unreserved character
# (ALPHA 41-5A/61-7A, DIGIT 30-39, "-" 2D, "." 2E, "_" 5F, "~" 7E).
_KEPT_ESCAPE = r"%(?:[01][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF]|[89A-F][0-9A-F])"
# One character class per component, repeated: the regex engine runs such a repeat in a tight
# loop, where an alternation (a safe character, or an escape) costs a branch per character
# (python3-doc links: 3.3 us a URL that way, 0.7 us this way). The escapes are then checked
# by _BAD_ESCAPE, only when the URL holds a "%", and empty host labels by _fast().
_PCHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]"
_QCHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]"
_FAST = re.compile(
    r"(https?)://([a-z0-9_.-]+)(?::([1-9][0-9]{0,4}))?" rf"(/{_PCHAR}*)(?:\?{_QCHAR}+)?"
)
_BAD_ESCAPE = re.compile(f"%(?!{_KEPT_ESCAPE[1:]})")
_DEFAULT_PORT = {"http": "80", "https": "443"}
_STRIP = " \t\n\r\f"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEX = "0123456789ABCDEFabcdef"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = frozenset(_UNRESERVED | set("!$&'()*+,;=:@/"))
_QUERY_SAFE = frozenset(_PATH_SAFE | {"?"})
_USER_SAFE = frozenset(_UNRESERVED | set("!$&'()*+,;=:"))
_HOST_LABEL = re.compile(r"[a-z0-9_-]+")
MAX_HOST_LENGTH = 253


def canonicalize_url(url: str, base: str | None = None) -> str:
    """The canonical form of ``url`` (resolved against ``base`` when relative).

    Raises :class:`InvalidURL` for anything that is not an absolute http(s) URL with a valid
    host and port once resolved.
    """
    return _canonicalize(url, base)[0]


def _canonicalize(url: str, base: str | None) -> tuple[str, str | None]:
    """The canonical form, and its :func:`url_host` when the fast path has seen it already
    (None from the slow path): :func:`admit` then saves a second scan of the URL."""
    if base is not None:
        url = _join(url, base)
    source = url
    hash_at = url.find("#")
    if hash_at >= 0:
        url = url[:hash_at]  # the fragment never reaches the server
    m = _fast(url)
    if m is not None:
        host, port, path = m.group(2, 3, 4)
        if "/." not in path and (
            port is None or (port != _DEFAULT_PORT[m.group(1)] and int(port) <= 65535)
        ):
            return url, host if port is None else f"{host}:{port}"
    return _canonicalize_slow(source), None


def _fast(url: str) -> re.Match[str] | None:
    """``_FAST``'s match when ``url``'s host labels and escapes are canonical too, else None."""
    m = _FAST.fullmatch(url)
    if m is None:
        return None
    host = m.group(2)
    if len(host) > 63 or host[0] == "." or host[-1] == "." or ".." in host:
        return None
    if "%" in url and _BAD_ESCAPE.search(url, m.start(4)) is not None:
        return None
    return m


def _join(url: str, base: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    stripped = url.strip(_STRIP)
    if stripped.startswith("/"):
        if not stripped.startswith("//"):
            # The common relative link: origin of the base plus an absolute path.
            origin = _origin(base)
            if origin is not None:
                return origin + stripped
    elif stripped and stripped[0].isalnum() and ":" not in stripped:
        # A path relative to the base's directory (dot segments are resolved later).
        directory = _directory(base)
        if directory is not None:
            return directory + stripped
    try:
        return urljoin(base, stripped)
    except ValueError as exc:
        raise InvalidURL(url, f"cannot resolve against base: {exc}") from None


@lru_cache(maxsize=256)
def _directory(base: str) -> str | None:
    """A canonical base URL up to the last ``/`` of its path, or None for the general path."""
    m = _fast(base)
    if m is None:
        return None
    return base[: base.rfind("/", 0, m.end(4)) + 1]


@lru_cache(maxsize=256)
def _origin(base: str) -> str | None:
    """``scheme://authority`` of a canonical base URL, or None to take the general path."""
    m = _fast(base)
    if m is None:
        return None
    return base[: m.start(4)]


def _canonicalize_slow(url: str) -> str:
    if not isinstance(url, str):
        raise InvalidURL(repr(url), "not a string")
    source = url
    # The fragment never reaches the server: whatever it holds does not matter.
    url = url.strip(_STRIP).partition("#")[0]
    if _CONTROL.search(url) is not None:
        raise InvalidURL(source, "control character in URL")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidURL(source, f"malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidURL(source, "relative URL without a base")
    if scheme not in _DEFAULT_PORT:
        raise InvalidURL(source, f"unsupported scheme {scheme!r}")
    userinfo, netloc = "", parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        userinfo = _normalise_escapes(userinfo, _USER_SAFE) + "@" if userinfo else ""
    host, port = _split_host_port(netloc, source)
    if port is not None and port != _DEFAULT_PORT[scheme]:
        host = f"{host}:{port}"
    path = _remove_dot_segments(_normalise_escapes(parts.path, _PATH_SAFE)) or "/"
    query = _normalise_escapes(parts.query, _QUERY_SAFE)
    out = f"{scheme}://{userinfo}{host}{path}"
    return f"{out}?{query}" if query else out


def _split_host_port(netloc: str, source: str) -> tuple[str, str | None]:
    port: str | None = None
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise InvalidURL(source, "unclosed IPv6 bracket")
        host, rest = netloc[: end + 1].lower(), netloc[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InvalidURL(source, "junk after IPv6 address")
            port = rest[1:]
        if not re.fullmatch(r"\[[0-9a-f:.]+\]", host):
            raise InvalidURL(source, "invalid IPv6 address")
    else:
        host, sep, port_text = netloc.partition(":")
        if sep:
            port = port_text
        host = _normalise_host(host, source)
    if port is not None:
        if port == "":
            port = None
        elif not port.isascii() or not port.isdigit():
            raise InvalidURL(source, f"invalid port {port[:20]!r}")
        else:
            value = int(port)
            if not 0 < value <= 65535:
                raise InvalidURL(source, f"port out of range {port[:20]!r}")
            port = str(value)
    return host, port


def _normalise_host(host: str, source: str) -> str:
    if "%" in host:
        host = _unquote(host, source)
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise InvalidURL(source, "no host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURL(source, "invalid internationalised host") from None
    if len(host) > MAX_HOST_LENGTH:
        raise InvalidURL(source, "host too long")
    for label in host.split("."):
        if not label or len(label) > 63 or _HOST_LABEL.fullmatch(label) is None:
            raise InvalidURL(source, f"invalid host {host[:100]!r}")
    return host


def _unquote(text: str, source: str) -> str:
    try:
        raw = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text).encode(
            "latin-1"
        )
        return raw.decode("utf-8")
    except UnicodeError:
        raise InvalidURL(source, "invalid percent-encoding in host") from None


def _normalise_escapes(text: str, safe: frozenset[str]) -> str:
    """Percent-encoding normalised for one component (see the module docstring)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            if i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
                decoded = chr(int(text[i + 1 : i + 3], 16))
                out.append(decoded if decoded in _UNRESERVED else "%" + text[i + 1 : i + 3].upper())
                i += 3
                continue
            out.append("%25")
        elif c in safe:
            out.append(c)
        else:
            out.append("".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    segments = path.split("/")
    out: list[str] = []
    for seg in segments[1:] if path.startswith("/") else segments:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    if segments[-1] in (".", ".."):
        out.append("")  # "/a/b/.." names the directory "/a/"
    return "/" + "/".join(out)


def url_host(url: str) -> str:
    """The politeness key of a canonical URL: ``host``, or ``host:port`` for a non-default port."""
    start = url.find("://") + 3
    end = url.find("/", start)
    netloc = url[start:end] if end >= 0 else url[start:]
    at = netloc.rfind("@")
    return netloc[at + 1 :] if at >= 0 else netloc


def fingerprint(url: str, method: str = "GET", body: bytes | None = None) -> int:
    """A signed 64-bit fingerprint of a request, stable across processes and runs.

    ``url`` must be canonical (from :func:`canonicalize_url`; it is not canonicalised again
    here, to keep the per-link path cheap). A body-less GET fingerprints the URL alone, so
    the fingerprint of a link is a function of its canonical URL.
    """
    if method != "GET":
        method = method.upper()
    if body is None and method == "GET":
        data = url.encode()
    else:
        data = method.encode() + b" " + url.encode()
        if body is not None:
            data += b"\n" + body
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


# --- admission -------------------------------------------------------------------------------


class Admitted(NamedTuple):
    """A URL that may be queued: its canonical form, politeness key and request fingerprint."""

    url: str
    host: str
    fp: int


class Refusal(Enum):
    """Why :func:`admit` refused a URL."""

    INVALID = "invalid"  # not an absolute http(s) URL once resolved (InvalidURL)
    TOO_LONG = "too_long"  # the canonical form is longer than max_url_length
    OFFSITE = "offsite"  # the caller's allows(host) said no
    DUPLICATE = "duplicate"  # its fingerprint is in the caller's ``seen`` already (no error)


class Refused(NamedTuple):
    """A URL :func:`admit` turned away, and why.

    ``detail`` is a one-line message fit for an errors row (for ``INVALID``, the
    :class:`InvalidURL` message); ``url`` is the canonical form of a ``TOO_LONG`` one (a
    redirect records where it would have gone), else None.
    """

    reason: Refusal
    detail: str
    url: str | None


# admit() runs once per link (hundreds per page), so it allocates little: the refusals that
# carry nothing of their URL are built once, and the others with tuple.__new__ (a NamedTuple's
# own __new__ is a Python function, which would be most of admit's cost).
_new = tuple.__new__
_TOO_LONG = "longer than max_url_length"
_OFFSITE = Refused(Refusal.OFFSITE, "host not allowed", None)
_DUPLICATE = Refused(Refusal.DUPLICATE, "already admitted", None)


def admit(
    url: str,
    *,
    base: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
    max_url_length: int,
    allows: Callable[[str], bool] | None = None,
    seen: set[int] | None = None,
) -> Admitted | Refused:
    """Decide whether ``url`` (resolved against ``base``) may become a request.

    Canonical form first (:func:`canonicalize_url`), then its length against
    ``max_url_length``, then ``allows(host)`` when given (the spider's offsite filter; paths
    that follow a URL wherever it leads pass None), then the fingerprint of ``method`` and
    ``body`` at that URL. ``seen`` is for the URLs of one response (a page's links, a
    sitemap's entries): the fingerprints admitted from it so far, to which this one is added;
    a repeat is refused as ``DUPLICATE``, which is not an error. Never raises for a bad URL: a
    refusal is an answer.
    """
    try:
        canonical, host = _canonicalize(url, base)
    except InvalidURL as exc:
        return _new(Refused, (Refusal.INVALID, str(exc), None))
    if len(canonical) > max_url_length:
        return _new(Refused, (Refusal.TOO_LONG, _TOO_LONG, canonical))
    if host is None:
        host = url_host(canonical)
    if allows is not None and not allows(host):
        return _OFFSITE
    fp = fingerprint(canonical, method, body)
    if seen is not None:
        if fp in seen:
            return _DUPLICATE
        seen.add(fp)
    return _new(Admitted, (canonical, host, fp))
