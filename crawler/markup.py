"""Body decoding and link resolution for responses: no Request, Response or Spider here.

Decoding follows the order browsers use: a byte-order mark, then the Content-Type charset,
then the document's own declaration (``<meta charset>``, ``<meta http-equiv>``,
``<?xml encoding?>``), then detection (UTF-16 without a BOM, strict UTF-8, else cp1252).
Undecodable bytes are replaced, so decoding never raises.

Link resolution is the per-page hot path (a page can carry hundreds of links), so the common
shapes of ``href`` are joined by hand and only the rest go through ``urljoin``.
"""

from __future__ import annotations

import codecs
import functools
import re
import threading
from collections.abc import Iterable
from urllib.parse import urljoin, urlsplit

import lxml.etree
import lxml.html

__all__ = [
    "LINK_XPATH",
    "LinkJoiner",
    "base_href",
    "decode_body",
    "link_hrefs",
    "make_parser",
    "markup_kind",
]

# --- decoding -------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([^"';\s]+)""", re.I)
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]+?encoding\s*=\s*["']\s*([a-zA-Z0-9_.\-]+)""", re.I)
# Labels browsers map to windows-1252, and ones they refuse.
_AS_CP1252 = {"ascii", "latin-1", "iso8859-1"}
_REFUSED = {"utf-7"}


@functools.lru_cache(maxsize=256)
def _codec(label: str) -> str | None:
    """Python's codec name for a charset label, or ``None`` when it is unknown or not text."""
    try:
        name = codecs.lookup(label.strip().lower()).name
        b"x".decode(name)  # "base64", "zlib" and friends are not text encodings
    except (LookupError, ValueError):
        return None
    if name in _REFUSED:
        return None
    if name in _AS_CP1252:
        return "cp1252"
    if name in ("utf-16", "utf-32"):
        return "utf-16-le" if name == "utf-16" else "utf-32-le"
    return name


def _sniff_utf16(body: bytes) -> str | None:
    sample = body[:512]
    if len(sample) < 4:
        return None
    half = len(sample) // 2
    even_zeros = sample[0::2].count(0)
    odd_zeros = sample[1::2].count(0)
    if odd_zeros > half * 0.3 and even_zeros < half * 0.05:
        return "utf-16-le"
    if even_zeros > half * 0.3 and odd_zeros < half * 0.05:
        return "utf-16-be"
    return None


def decode_body(body: bytes, content_type: str | None) -> tuple[str, str]:
    """``(text, encoding)`` of a body; never raises (undecodable bytes become U+FFFD)."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, "replace"), name
    encoding = None
    if content_type:
        found = _HEADER_CHARSET.search(content_type)
        if found:
            encoding = _codec(found.group(1))
    if encoding is None:
        head = body[:4096]
        m = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
        if m:
            encoding = _codec(m.group(1).decode("ascii"))
            # A declaration we could read as ASCII cannot be UTF-16/32 (as browsers reason).
            if encoding is not None and encoding.startswith(("utf-16", "utf-32")):
                encoding = "utf-8"
    if encoding is None:
        encoding = _sniff_utf16(body)
    if encoding is None:
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            encoding = "cp1252"
    return body.decode(encoding, "replace"), encoding


# --- parsing --------------------------------------------------------------------------------

_HTML_TYPES = {"text/html", "application/xhtml+xml", "application/vnd.wap.xhtml+xml"}
_XML_TYPES = {"text/xml", "application/xml"}
_LOOKS_HTML = re.compile(
    rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body|title)", re.I | re.S
)
_LOOKS_MARKUP = re.compile(rb"^\s*<[!?a-zA-Z]")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*:")
LINK_XPATH = lxml.etree.XPath("//a/@href|//area/@href", smart_strings=False)
_A_HREFS = lxml.etree.XPath("//a/@href", smart_strings=False)
_parsers = threading.local()  # lxml parsers must not be shared between threads


def markup_kind(content_type: str, body: bytes) -> str | None:
    """``"html"``, ``"xml"`` or ``None`` (not markup: nothing to select or follow)."""
    if content_type in _HTML_TYPES:
        return "html"
    if content_type in _XML_TYPES or content_type.endswith("+xml"):
        return "xml"
    head = body[:1024].lstrip(b"\xef\xbb\xbf")
    if not content_type:
        return "html" if _LOOKS_MARKUP.match(head) else None
    if content_type.startswith("text/") and _LOOKS_HTML.match(head):
        return "html"  # e.g. HTML served as text/plain
    return None


def make_parser(kind: str) -> lxml.etree._FeedParser:
    p = getattr(_parsers, kind, None)
    if p is None:
        if kind == "html":
            p = lxml.html.HTMLParser(encoding="utf-8", no_network=True, collect_ids=False)
        else:
            p = lxml.etree.XMLParser(
                encoding="utf-8", recover=True, no_network=True, resolve_entities=False
            )
        setattr(_parsers, kind, p)
    return p


def base_href(root: lxml.etree._Element) -> str | None:
    """The ``href`` of the document's first ``<base href>``, as browsers take it.

    ``iter("base")`` rather than an XPath: lxml answers at once when the tag name was never
    parsed (it is missing from the parser's name dictionary), which is the common case; the
    XPath ``(//base[@href])[1]`` walked the whole tree on every page (0.15 ms on python3-doc).
    """
    for element in root.iter("base"):
        href = element.get("href")
        if href is not None:
            return str(href)
    return None


def link_hrefs(root: lxml.etree._Element) -> list[str]:
    """The ``href`` of every ``<a>`` and ``<area>`` of an HTML tree, in document order.

    The union ``LINK_XPATH`` walks the tree twice and sorts the merge into document order;
    most pages have no ``<area>``, and ``iter("area")`` says so at once when the tag name was
    never parsed (see :func:`base_href`), so those pages take one walk over ``<a>`` alone
    (python3-doc: 270 -> 150 us a page).
    """
    if next(root.iter("area"), None) is None:
        return _A_HREFS(root)  # type: ignore[no-any-return]
    return LINK_XPATH(root)  # type: ignore[no-any-return]


class _JoinCache:
    """Joined hrefs by base directory, shared by the pages of a process.

    A site's pages repeat their hrefs (navigation, index links), and pages of one directory
    join a relative href to the same URL. Only what depends on nothing but the base's
    directory is kept (``LinkJoiner.simple`` bases, hrefs other than ``""`` and ``?...``);
    the whole cache is dropped past ``_JOIN_CACHE_MAX`` entries, so it stays under a few MB.
    """

    __slots__ = ("by_dir", "size")

    def __init__(self) -> None:
        self.by_dir: dict[str, dict[str, str | None]] = {}
        self.size = 0

    def for_dir(self, directory: str) -> dict[str, str | None]:
        if self.size > _JOIN_CACHE_MAX:
            self.by_dir.clear()
            self.size = 0
        cache = self.by_dir.get(directory)
        if cache is None:
            cache = self.by_dir[directory] = {}
        return cache


_JOIN_CACHE_MAX = 8192
_joined = _JoinCache()


class LinkJoiner:
    """Resolve hrefs against one base URL; cheap string work for the common cases.

    ``urljoin`` costs a few microseconds a call; most links are absolute, root-relative or
    plain relative names, which need only a concatenation. Anything with dot segments or an
    unusual shape still goes through ``urljoin``.
    """

    __slots__ = ("base", "dir", "dir_path", "origin", "path_base", "scheme", "simple")

    def __init__(self, base: str) -> None:
        self.base = base.partition("#")[0]
        parts = urlsplit(self.base)
        self.scheme = parts.scheme
        self.origin = f"{parts.scheme}://{parts.netloc}"
        path = parts.path or "/"
        self.path_base = self.origin + path
        self.dir_path = path[: path.rfind("/") + 1]
        self.dir = self.origin + self.dir_path
        # A base path with dot segments or empty segments: leave relative hrefs to urljoin.
        self.simple = path.startswith("/") and "/." not in path and "//" not in path

    def _relative(self, href: str) -> str:
        """``href`` (no scheme, not starting with "/") against the base directory."""
        if not self.simple:
            return urljoin(self.base, href)
        path = self.dir_path
        rest = href
        while rest[:1] == ".":
            if rest.startswith("../"):
                if path != "/":
                    path = path[: path.rfind("/", 0, len(path) - 1) + 1]
                rest = rest[3:]
            elif rest.startswith("./"):
                rest = rest[2:]
            else:  # "..", ".", ".hidden", "..x": rare, let urljoin decide
                return urljoin(self.base, href)
        if "/." in rest.partition("?")[0]:
            return urljoin(self.base, href)
        return self.origin + path + rest

    def join_all(self, hrefs: Iterable[str]) -> list[str]:
        """Each distinct absolute http(s) URL of ``hrefs``, in order of first appearance.

        A page repeats its hrefs, mostly with different fragments (python3-doc: 311 links a
        page, 44 distinct URLs), so each distinct href without its fragment is joined once,
        and one a page of the same directory joined before is taken from ``_joined``.
        ``join`` drops the fragment anyway, so that is the same answer.
        """
        join = self.join
        cache = _joined.for_dir(self.dir) if self.simple else None
        seen: dict[str, None] = {}
        # Distinct raw hrefs first (a C-speed pass), then without their fragments.
        for href in dict.fromkeys([h.partition("#")[0] for h in dict.fromkeys(hrefs)]):
            if cache is not None and href and href[0] != "?":
                url = cache.get(href, "")
                if url == "":
                    try:
                        url = join(href)
                    except ValueError:  # e.g. an unbalanced IPv6 bracket
                        continue
                    cache[href] = url
                    _joined.size += 1
            else:
                try:
                    url = join(href)
                except ValueError:
                    continue
            if url is not None:
                seen[url] = None
        return list(seen)

    def join(self, href: str) -> str | None:
        """The absolute http(s) URL without fragment, or ``None`` to skip the link."""
        href = href.strip()
        if "\n" in href or "\t" in href or "\r" in href:
            href = href.replace("\n", "").replace("\t", "").replace("\r", "")
        first = href[:1]
        if first == "/":
            if href[1:2] == "/":
                url = self.scheme + ":" + href
            elif "/." in href:
                url = urljoin(self.base, href)
            else:
                url = self.origin + href
        elif not href or first == "#":
            return self.base
        elif first == "?":
            url = self.path_base + href
        elif first == ".":
            url = self._relative(href)
        else:
            m = _SCHEME.match(href)
            if m is None:
                url = self._relative(href)
            else:
                scheme = m.group()[:-1].lower()
                if scheme not in ("http", "https"):
                    return None  # mailto:, javascript:, data:, tel:, ftp:, ...
                rest = href[m.end() :]
                # "http:page.html" (no slashes) is relative, as urljoin reads it.
                if rest.startswith("//") and "/." not in rest:
                    url = scheme + ":" + rest
                else:
                    url = urljoin(self.base, href)
        url = url.partition("#")[0]
        return url if url.startswith(("http://", "https://")) else None
