"""What a spider author touches: ``Spider``, ``Request`` and ``Response``.

A ``Request`` is a plain frozen value: its callback is kept as a method *name* so requests can
be stored in the frontier and sent to worker processes. A ``Response`` is built in a worker from
a fetched body; it decodes and parses lazily and at most once, and the one lxml tree serves
``css()``, ``xpath()`` (through parsel) and ``links()`` (lxml directly, because it runs on every
page and a page can carry hundreds of links).

Decoding and link resolution live in :mod:`crawler.markup`: ``text`` never raises, and a body
that is not markup (an image, a PDF) gives empty ``css``/``xpath``/``links`` results instead of
errors.

parsel is not imported with this module: it brings w3lib, which imports ``urllib.request``
and through it ``http.client`` and ``ssl`` (about 4 MB resident in each process, 25-45 ms of
imports). Each worker imports what ``Spider.preload`` names (parsel by default) as it starts,
while the engine opens the store, so the first ``css()``/``xpath()`` finds it loaded and the
engine, which never parses, carries none of it. A spider that only follows ``links()`` can
leave it out of every process.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import lxml.etree
import lxml.html

from crawler.cookies import SESSION_META
from crawler.http import HTTPHeaderDict, ProxyConfig
from crawler.markup import (
    LinkJoiner,
    base_href,
    decode_body,
    link_hrefs,
    make_parser,
    markup_kind,
)

if TYPE_CHECKING:
    import parsel

__all__ = ["Request", "Response", "Spider", "decode_body", "iter_results"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_CHARS = re.compile(r"[\r\n\0]")

HeadersInput = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]] | None


def _callback_name(callback: object) -> str | None:
    """The method name a callback is stored under; a clear error for what cannot be named."""
    if callback is None:
        return None
    if isinstance(callback, str):
        if not callback.isidentifier():
            raise ValueError(f"callback {callback!r} is not a method name")
        return callback
    name = getattr(callback, "__name__", None)
    if not callable(callback) or not isinstance(name, str) or not name.isidentifier():
        raise TypeError(
            f"callback {callback!r} cannot be stored by name: pass a spider method "
            "(self.parse_item) or its name as a string, not a lambda or partial"
        )
    owner = getattr(callback, "__self__", None)
    if owner is not None:
        # A bound method: it must be reachable again as getattr(spider, name).
        func = getattr(callback, "__func__", None)
        if func is None or getattr(type(owner), name, None) is not func:
            raise TypeError(f"callback {name!r} is not a method of {type(owner).__name__}")
        return name
    qualname = getattr(callback, "__qualname__", "")
    if "." not in qualname or qualname.rsplit(".", 2)[-2] == "<locals>":
        raise TypeError(
            f"callback {qualname or name!r} is a plain function: the worker looks callbacks up "
            "on the spider by name, so use a spider method (self.parse_item)"
        )
    return name


def _str(value: str | bytes, what: str) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    return value


def _as_text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _normalise_headers(headers: HeadersInput) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    pairs: Iterable[tuple[Any, Any]]
    if isinstance(headers, HTTPHeaderDict):
        pairs = headers.iteritems()
    elif isinstance(headers, Mapping):
        pairs = headers.items()
    else:
        pairs = headers
    out = []
    for pair in pairs:
        name, value = pair
        name = _str(name, "header name")
        value = _str(value, f"header {name!r}")
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if _BAD_VALUE_CHARS.search(value):
            raise ValueError(f"header {name!r} contains CR, LF or NUL: {value!r}")
        out.append((name, value))
    return tuple(out)


_COOKIE_NAME = _TOKEN
_BAD_COOKIE_VALUE = re.compile(r'[\x00-\x20",;\\\x7f]')


def _normalise_cookies(
    cookies: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> tuple[tuple[str, str], ...]:
    """A request's own cookies as (name, value) pairs, checked against RFC 6265 section 4.1.1."""
    if not cookies:
        return ()
    pairs = cookies.items() if isinstance(cookies, Mapping) else cookies
    out = []
    for name, value in pairs:
        if not isinstance(name, str) or not _COOKIE_NAME.fullmatch(name):
            raise ValueError(f"invalid cookie name {name!r}")
        if not isinstance(value, str) or _BAD_COOKIE_VALUE.search(value):
            # The value is a secret: the message names the cookie only.
            raise ValueError(f"cookie {name!r} has a value that cannot be sent in a header")
        out.append((name, value))
    return tuple(out)


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """A URL to fetch and what to do with the response: a plain, comparable value.

    ``callback`` is stored as the spider method's *name* (``None`` means ``parse``), so a
    request can be persisted and sent to another process. The URL is kept as given; the
    frontier canonicalizes it (and skips and counts it if it is malformed). ``cookies`` are
    sent with this request only, after the jar's; ``session`` names the cookie jar it uses
    (``None``: the spider's default jar). docs/sessions.md.
    """

    url: str
    callback: str | None
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    priority: int
    meta: dict[str, Any] = field(hash=False)
    dont_filter: bool
    cookies: tuple[tuple[str, str], ...]
    session: str | None

    def __init__(
        self,
        url: str,
        callback: Callable[..., Any] | str | None = None,
        method: str = "GET",
        headers: HeadersInput = None,
        body: bytes | bytearray | memoryview | str | None = None,
        priority: int = 0,
        meta: Mapping[str, Any] | None = None,
        dont_filter: bool = False,
        proxy: str | None = None,
        cookies: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        session: str | None = None,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"Request url must be a str, not {type(url).__name__}")
        if not isinstance(method, str) or not _TOKEN.fullmatch(method):
            raise ValueError(f"invalid HTTP method {method!r}")
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif body is not None:
            if not isinstance(body, bytes | bytearray | memoryview):
                raise TypeError(f"Request body must be bytes or str, not {type(body).__name__}")
            body = bytes(body)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"Request priority must be an int, not {priority!r}")
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"Request meta must be a dict, not {type(meta).__name__}")
        setter = object.__setattr__
        setter(self, "url", url)
        setter(self, "callback", _callback_name(callback))
        setter(self, "method", method.upper())
        setter(self, "headers", _normalise_headers(headers))
        setter(self, "body", body)
        setter(self, "priority", priority)
        meta = dict(meta) if meta else {}
        if proxy is not None:
            # Travels in meta["proxy"] (persisted with the request), so without credentials:
            # the worker takes them from the matching entry of the `proxy` setting.
            try:
                meta["proxy"] = ProxyConfig.from_url(proxy).url
            except ValueError as exc:
                raise ValueError(f"Request proxy: {exc}") from None
        setter(self, "meta", meta)
        setter(self, "dont_filter", bool(dont_filter))
        setter(self, "cookies", _normalise_cookies(cookies))
        if session is not None and (not isinstance(session, str) or not session):
            raise ValueError(f"Request session must be a non-empty str, not {session!r}")
        setter(self, "session", session)

    @property
    def proxy(self) -> str | None:
        """The proxy this request goes through (``Request(proxy=...)``), without credentials."""
        value = self.meta.get("proxy")
        return value if isinstance(value, str) else None

    def replace(self, **changes: Any) -> Request:
        """A copy with some fields changed (validated like a new request)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:  # never the cookies: their values are secrets
        cb = f" callback={self.callback}" if self.callback else ""
        return f"<Request {self.method} {self.url}{cb}>"


class Response:
    """A fetched page as a callback sees it. Decoding and parsing happen on first use."""

    __slots__ = (
        "_base",
        "_encoding",
        "_root",
        "_selector",
        "_text",
        "body",
        "depth",
        "headers",
        "meta",
        "request",
        "status",
        "url",
    )

    def __init__(
        self,
        url: str,
        status: int,
        headers: HeadersInput | HTTPHeaderDict,
        body: bytes,
        request: Request | None = None,
        depth: int = 0,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.status = status
        if isinstance(headers, HTTPHeaderDict):
            self.headers = headers
        else:
            # What a server sent is taken as it is: no validation, which could only raise.
            self.headers = HTTPHeaderDict()
            pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
            for name, value in pairs:
                self.headers.add(_as_text(name), _as_text(value))
        self.body = bytes(body) if not isinstance(body, bytes) else body
        self.request = request
        self.depth = depth
        if meta is None:
            meta = dict(request.meta) if request is not None else {}
        self.meta: dict[str, Any] = meta
        self._text: str | None = None
        self._encoding: str | None = None
        self._root: Any = False  # False: not parsed yet; None: not markup or unparsable
        self._selector: parsel.Selector | None = None
        self._base: LinkJoiner | None = None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters (``""`` when absent)."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    @property
    def text(self) -> str:
        if self._text is None:
            self._text, self._encoding = decode_body(self.body, self.headers.get("content-type"))
        return self._text

    @property
    def encoding(self) -> str:
        if self._encoding is None:
            _ = self.text
        assert self._encoding is not None
        return self._encoding

    def _tree(self) -> Any:
        """The lxml root element, or ``None`` when the body is not (parsable) markup."""
        if self._root is False:
            self._root = None
            kind = markup_kind(self.content_type, self.body)
            if kind is not None:
                text = self.text
                if "\0" in text:
                    text = text.replace("\0", "\ufffd")
                if kind == "xml" and text.lstrip().startswith("<?xml"):
                    # The declaration names the original encoding; we hand lxml UTF-8.
                    text = text.lstrip()
                    text = text[text.find("?>") + 2 :]
                data = self.body if self._clean_utf8() else text.encode("utf-8", "replace")
                try:
                    self._root = lxml.etree.fromstring(data, make_parser(kind))
                except (lxml.etree.LxmlError, ValueError):
                    self._root = None
        return self._root

    def _clean_utf8(self) -> bool:
        # Hand lxml the original bytes when they are exactly what it would get from us.
        return (
            self._encoding == "utf-8"
            and not self.body.startswith(codecs.BOM_UTF8)
            and b"\0" not in self.body
            and "\ufffd" not in (self._text or "")
            and not self.body.lstrip().startswith(b"<?xml")
        )

    @property
    def selector(self) -> parsel.Selector | None:
        if self._selector is None:
            root = self._tree()
            if root is not None:
                import parsel  # see the module docstring

                kind = _parser_kind(root) or "html"
                self._selector = parsel.Selector(root=root, type=kind, base_url=self.url)
        return self._selector

    def css(self, query: str) -> parsel.SelectorList[parsel.Selector]:
        """parsel CSS selection (``::text``, ``::attr(name)``); empty for non-markup bodies."""
        sel = self.selector
        return sel.css(query) if sel is not None else _no_selection()

    def xpath(self, query: str, **variables: Any) -> parsel.SelectorList[parsel.Selector]:
        sel = self.selector
        return sel.xpath(query, **variables) if sel is not None else _no_selection()

    def _joiner(self) -> LinkJoiner:
        if self._base is None:
            base = self.url
            root = self._tree()
            if root is not None:
                found = base_href(root)
                if found is not None:
                    with contextlib.suppress(ValueError):
                        base = urljoin(self.url, found.strip())
            self._base = LinkJoiner(base)
        return self._base

    def urljoin(self, url: str) -> str:
        """``url`` made absolute against the page (its ``<base href>`` if any)."""
        return urljoin(self._joiner().base, url)

    def links(self) -> list[str]:
        """Absolute http(s) URLs of ``<a href>``/``<area href>``, unique, in document order."""
        root = self._tree()
        if root is None or _parser_kind(root) is not None:
            return []
        return self._joiner().join_all(link_hrefs(root))

    def form(
        self,
        css_or_xpath: str | None = None,
        formdata: Mapping[str, str | Iterable[str] | None] | None = None,
        clickdata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Request:
        """The ``Request`` a browser sends for a form of this page (``crawler.forms``).

        ``css_or_xpath`` picks the form (or an element in it; default: the first form);
        ``formdata`` replaces or adds fields (``None`` removes one); ``clickdata`` picks the
        submit button by its attributes (``{"name": "buy"}``, ``{"nr": 1}``). Other keywords
        go to ``Request``; the request stays in this page's cookie session unless ``session=``
        says otherwise. Raises ``FormNotFound`` (a ``ValueError``) when no form matches.
        """
        from crawler.forms import form_request  # and cssselect: only a spider with forms

        root = self._tree()
        if root is not None and _parser_kind(root) is not None:
            root = None
        method, url, headers, body = form_request(
            root,
            self._joiner().base,
            self.url,
            self.encoding,
            css_or_xpath,
            formdata,
            clickdata,
        )
        session = self.meta.get(SESSION_META)
        if session is not None:
            kwargs.setdefault("session", session)
        headers.update(kwargs.pop("headers", None) or {})
        return Request(url, method=method, headers=headers, body=body, **kwargs)

    def follow(self, url: str, **kwargs: Any) -> Request:
        """A ``Request`` for ``url`` resolved against this page; keywords go to ``Request``."""
        if not isinstance(url, str):
            raise TypeError(f"follow() takes a URL string, not {type(url).__name__}")
        return Request(self.urljoin(url), **kwargs)


def _parser_kind(root: Any) -> str | None:
    """``"xml"`` for a tree from the XML parser, ``None`` for HTML."""
    return None if isinstance(root, lxml.html.HtmlElement) else "xml"


# --- spiders --------------------------------------------------------------------------------


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [part for part in re.split(r"[\s,]+", value) if part]
    return value


def _bare_host(host: str) -> str:
    host = host.strip().lower()
    if "://" in host:
        host = urlsplit(host).hostname or ""
    elif host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


class Spider:
    """Subclass it: set ``name`` and ``start_urls``, write ``parse(response)`` that yields
    items (dicts), URLs (strs) and ``Request``s.

    The class attributes below are the whole contract: they are everything the engine, the
    workers and the command line read from a spider, each with its default (docs/spiders.md
    lists the same, and tests/shared/test_spider.py checks the two agree). ``crawler run -a
    key=value`` sets any of them on the instance, as a string.
    """

    name: str = ""
    """Required: how ``crawler run NAME`` finds the spider; also names ``data/NAME.db``."""

    start_urls: list[str] = []
    """Where :meth:`start_requests` starts (``-a start_urls=...`` is split on commas)."""

    allowed_domains: list[str] | None = None
    """Hosts whose links are followed, with their subdomains; ``None``: the start URLs' hosts."""

    custom_settings: dict[str, Any] = {}
    """Settings for this spider, over the defaults; ``-s`` on the command line wins."""

    user_agent: str | None = None
    """The User-Agent for this spider; ``None``: the ``user_agent`` setting."""

    recrawl_after: float | str | None = None
    """Fetch again pages older than this (seconds or a duration like ``"1d"``); the
    ``recrawl_after`` setting wins. ``None``: never, so a run resumes where the last stopped."""

    parse_unchanged: bool = False
    """Run callbacks on unchanged pages too; their pages are then fetched without validators."""

    sitemap_urls: Sequence[str] | str = ()
    """Sitemaps to read at the start of every run (one string: URLs separated by spaces)."""

    sitemap_callback: str | None = None
    """The method (by name) for pages a sitemap lists; ``None``: ``parse``."""

    handle_httpstatus_list: Collection[int] = ()
    """Non-2xx statuses whose responses still go to the callback (others are only stored)."""

    item_key: str | tuple[str, ...] | Callable[[dict[str, Any]], object] | None = None
    """What identifies an item across runs (docs/changes.md): a field name, a tuple of field
    names, or a method ``item_key(self, item)``; ``None``: items are not tracked."""

    item_schema: dict[str, Any] | None = None
    """A JSON Schema every item must match; an item that does not is an ``errors`` row."""

    preload: tuple[str, ...] = ("parsel",)
    """Modules each worker imports as it starts, before its first page. The engine forks the
    workers before it opens the store and checks only that these names exist (a missing one
    stops the crawl with :class:`~crawler.errors.SpiderLoadError`), so the imports run on
    every core while the engine is busy with the store, instead of before the fork in the
    engine alone, and the engine carries no copy. A module that raises on import is logged,
    and the spider's own import raises again in its callback. ``parsel`` is what ``css()``,
    ``xpath()`` and ``selector`` use, and is otherwise imported on their first call; a spider
    that never calls them can set ``()``, and no process of its crawl loads parsel (nor,
    through w3lib and ``urllib.request``, ``ssl``, unless it fetches an https URL)."""

    _allowed: frozenset[str] | bool | None = False  # computed on first allows()

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            if not key.isidentifier() or key.startswith("_"):
                raise ValueError(f"invalid spider argument name {key!r}")
            if callable(getattr(type(self), key, None)):
                raise ValueError(f"spider argument {key!r} would replace a method")
            if key in ("start_urls", "allowed_domains"):
                value = _split_list(value)
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def start_requests(self) -> Iterable[Request | str]:
        urls = self.start_urls
        yield from [urls] if isinstance(urls, str) else urls

    def parse(self, response: Response) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__}.parse() is not defined: write parse(self, response) "
            "yielding items (dicts), URLs and Requests"
        )

    def closed(self, reason: str) -> None:
        """Called once when the crawl ends, with its finish reason."""

    def validate_item(self, item: dict[str, Any]) -> str | None:
        """``None`` when ``item`` is valid, else what is wrong with it (name the field and
        the rule, e.g. ``"price: must be positive"``): it becomes an ``errors`` row."""
        return None

    def login(self) -> Iterable[Request]:
        """Requests that log in (docs/sessions.md). Run before :meth:`start_requests` when the
        cookie jar holds no live cookie, and once more when :meth:`logged_in` says a response
        shows the session ended. Requests their callbacks yield are part of the login; the
        crawl proper starts when none is left. The default logs nothing in."""
        return ()

    def logged_in(self, response: Response) -> bool:
        """Does ``response`` show a live session? Defined by a spider that logs in (e.g. a
        redirect to the login page says no); the default is always yes."""
        return True

    def _allowed_hosts(self) -> frozenset[str] | None:
        if self._allowed is False:
            domains = self.allowed_domains
            if domains is None:
                starts = self.start_urls
                urls = [starts] if isinstance(starts, str) else list(starts)
                domains = [urlsplit(u).hostname or "" for u in urls]
            hosts = frozenset(filter(None, (_bare_host(d) for d in domains)))
            self._allowed = hosts or None
        return self._allowed  # type: ignore[return-value]

    def allows(self, host: str) -> bool:
        """Offsite filter: ``host`` is an allowed domain or one of its subdomains.

        Ports are ignored. With no ``allowed_domains`` and no ``start_urls`` every host is
        allowed.
        """
        allowed = self._allowed_hosts()
        if allowed is None:
            return True
        host = _bare_host(host)
        if host in allowed:
            return True
        dot = host.find(".")
        while dot != -1:
            if host[dot + 1 :] in allowed:
                return True
            dot = host.find(".", dot + 1)
        return False


def iter_results(output: object) -> Iterator[dict[str, Any] | str | Request]:
    """Each thing a callback produced, checked: a dict (item), a str (URL) or a ``Request``.

    ``None`` (a callback that returns nothing, or ``yield selector.get()`` that found
    nothing) is skipped; anything else raises ``TypeError``.
    """
    if output is None:
        return
    if isinstance(output, dict | str | Request):
        output = (output,)
    elif isinstance(output, bytes | bytearray) or not isinstance(output, Iterable):
        raise TypeError(f"a callback must yield or return dicts, URLs or Requests, not {output!r}")
    for value in output:
        if isinstance(value, str | Request):
            yield value
        elif isinstance(value, Mapping):
            item = dict(value)
            for key in item:
                if not isinstance(key, str):
                    raise TypeError(f"item keys must be strings, got {key!r} in {item!r}")
            yield item
        elif value is not None:
            raise TypeError(
                f"a callback yielded {type(value).__name__} {value!r:.80}: "
                "yield dicts (items), URL strings or Requests"
            )


def _no_selection() -> parsel.SelectorList[parsel.Selector]:
    import parsel

    return parsel.SelectorList()
