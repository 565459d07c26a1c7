"""Sitemap parsing (sitemaps.org protocol 0.9): XML url sets, sitemap indexes, text lists.

How this works: :func:`parse_sitemap` takes the raw body of one fetched sitemap and returns a
frozen :class:`Sitemap`. A gzip body is recognised by its magic bytes (not by the URL or the
Content-Type, which are often wrong) and inflated in bounded steps, so a bomb costs at most
``max_size`` bytes of memory before it is refused. A body whose first non-blank byte is ``<``
is XML, read with ``lxml.etree.iterparse`` (each entry is cleared once read, so a 50 MB
sitemap never becomes one big tree) with a parser that resolves no entities, loads no DTD and
touches no network. Anything else is the text format: one URL per line.

Limits (the protocol's own, overridable):

- ``max_size`` = 50 MiB of *decoded* (inflated) bytes; larger is a :class:`SitemapError`.
- ``max_urls`` = 50,000 entries; the rest are ignored and ``truncated`` is set.
- only ``http``/``https`` locations are kept; others are counted in ``skipped``.

Element names are matched by local name, so a sitemap with a missing or wrong namespace
still works. ``lastmod`` is parsed from W3C Datetime (``2024``, ``2024-05``, ``2024-05-01``,
``2024-05-01T10:20Z``, ``2024-05-01T10:20:30.5+02:00``) into unix time; a time without a zone
is taken as UTC; an unreadable value becomes ``None``, not an error.
"""

from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

from lxml import etree

from crawler.errors import SitemapError

__all__ = [
    "MAX_SITEMAP_SIZE",
    "MAX_SITEMAP_URLS",
    "Sitemap",
    "SitemapEntry",
    "parse_lastmod",
    "parse_sitemap",
]

MAX_SITEMAP_SIZE = 50 * 1024 * 1024
MAX_SITEMAP_URLS = 50_000
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    """One ``<url>`` (a page) or ``<sitemap>`` (a child sitemap) entry."""

    loc: str
    lastmod: float | None = None  # unix time

    def __post_init__(self) -> None:
        if not self.loc:
            raise ValueError("a sitemap entry needs a loc")


@dataclass(frozen=True, slots=True)
class Sitemap:
    """A parsed sitemap. For ``kind == "index"`` the entries are child sitemaps."""

    kind: Literal["urlset", "index", "text"]
    entries: tuple[SitemapEntry, ...]
    truncated: bool = False  # more than max_urls entries: the rest were ignored
    skipped: int = 0  # entries dropped: empty, not http(s), or no <loc>

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(e.loc for e in self.entries)


_W3C_RE = re.compile(
    r"""^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})
        (?:[T ](?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?
        (?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?$""",
    re.VERBOSE | re.IGNORECASE,
)


def parse_lastmod(value: str | None) -> float | None:
    """Unix time from a W3C Datetime string, or None when absent or unreadable."""
    if not value:
        return None
    m = _W3C_RE.match(value.strip())
    if not m:
        return None
    tz = UTC
    if (zone := m["tz"]) and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        moment = datetime(
            int(m["y"]),
            int(m["m"] or 1),
            int(m["d"] or 1),
            int(m["H"] or 0),
            int(m["M"] or 0),
            int(m["S"] or 0),
            int((m["f"] or "0")[:6].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:  # month 13, hour 25, an offset past 24 h...
        return None
    return moment.timestamp()


def _gunzip(body: bytes, max_size: int) -> bytes:
    """Inflate a gzip body (all members), refusing to produce more than ``max_size`` bytes."""
    out = bytearray()
    data = body
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            # Feed at most what is still allowed plus one byte: enough to know it is too big.
            out += inflater.decompress(data, max_size + 1 - len(out))
            while inflater.unconsumed_tail and len(out) <= max_size:
                out += inflater.decompress(inflater.unconsumed_tail, max_size + 1 - len(out))
        except zlib.error as exc:
            raise SitemapError(f"bad gzip data: {exc}") from exc
        if len(out) > max_size:
            raise SitemapError(f"sitemap inflates past {max_size} bytes")
        if not inflater.eof:
            raise SitemapError("truncated gzip data")
        data = inflater.unused_data.lstrip(b"\0")  # the next member, if any; pad bytes ignored
    return bytes(out)


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _keep(loc: str) -> bool:
    return loc[:8].lower().startswith(("http://", "https://"))


def _parse_xml(data: bytes, max_urls: int) -> Sitemap:
    events = etree.iterparse(
        io.BytesIO(data),
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    kind: Literal["urlset", "index"] | None = None
    entry_tag = ""
    entries: list[SitemapEntry] = []
    skipped = 0
    truncated = False
    try:
        for event, elem in events:
            name = _local(elem.tag)
            if kind is None:
                if name == "urlset":
                    kind, entry_tag = "urlset", "url"
                elif name == "sitemapindex":
                    kind, entry_tag = "index", "sitemap"
                else:
                    raise SitemapError(f"not a sitemap: the root element is <{name}>")
                continue
            if event != "end" or name != entry_tag:
                continue
            loc = lastmod = None
            for child in elem:
                child_name = _local(child.tag)
                if child_name == "loc":
                    loc = (child.text or "").strip()
                elif child_name == "lastmod":
                    lastmod = child.text
            # Bounded memory: drop what we have read, and the emptied siblings before it.
            elem.clear()
            parent = elem.getparent()
            while parent is not None and elem.getprevious() is not None:
                del parent[0]
            if not loc or not _keep(loc):
                skipped += 1
                continue
            if len(entries) >= max_urls:
                truncated = True
                break
            entries.append(SitemapEntry(loc, parse_lastmod(lastmod)))
    except etree.XMLSyntaxError as exc:
        raise SitemapError(f"malformed sitemap XML: {exc}") from exc
    if kind is None:
        raise SitemapError("malformed sitemap XML: no root element")
    return Sitemap(kind, tuple(entries), truncated, skipped)


def _parse_text(data: bytes, max_urls: int) -> Sitemap:
    entries: list[SitemapEntry] = []
    skipped = 0
    truncated = False
    for raw in data.decode("utf-8", errors="replace").removeprefix("\ufeff").splitlines():
        line = raw.strip()
        if not line:
            continue
        if not _keep(line) or any(c.isspace() for c in line):
            skipped += 1
            continue
        if len(entries) >= max_urls:
            truncated = True
            break
        entries.append(SitemapEntry(line))
    return Sitemap("text", tuple(entries), truncated, skipped)


def parse_sitemap(
    body: bytes, *, max_size: int = MAX_SITEMAP_SIZE, max_urls: int = MAX_SITEMAP_URLS
) -> Sitemap:
    """Parse one sitemap body (XML, gzip-compressed XML or text). Raises :class:`SitemapError`."""
    if max_size < 0 or max_urls < 0:
        raise ValueError("max_size and max_urls must not be negative")
    if body[:2] == _GZIP_MAGIC:
        body = _gunzip(body, max_size)
    elif len(body) > max_size:
        raise SitemapError(f"sitemap larger than {max_size} bytes")
    start = body.lstrip()[:1]
    if body.startswith(b"\xef\xbb\xbf"):
        start = body[3:].lstrip()[:1]
    if start == b"<":
        return _parse_xml(body, max_urls)
    if not start:
        raise SitemapError("empty sitemap")
    return _parse_text(body, max_urls)
