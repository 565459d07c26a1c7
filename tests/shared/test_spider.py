"""Request, Response and Spider: pure units, fed with bytes."""

from __future__ import annotations

import ast
import codecs
import dataclasses
import functools
import inspect
import pickle
import re
import time
import types
from pathlib import Path
from typing import Any

import pytest

import crawler.spider as spider_module
from crawler import Request, Response, Spider
from crawler.http import HTTPHeaderDict
from crawler.spider import decode_body, iter_results


class Shop(Spider):
    name = "shop"
    start_urls = ["http://shop.example/"]

    def parse(self, response: Response) -> Any:
        yield {"url": response.url}

    def parse_item(self, response: Response) -> Any:
        yield {"item": response.url}


# --- Request --------------------------------------------------------------------------------


def test_request_defaults_and_normalisation() -> None:
    req = Request("http://a/", method="post", headers={"X-A": "1"}, body="é")
    assert req.method == "POST"
    assert req.headers == (("X-A", "1"),)
    assert req.body == "é".encode()
    assert req.callback is None
    assert req.meta == {} and req.priority == 0 and req.dont_filter is False


def test_request_headers_from_pairs_and_bytes() -> None:
    req = Request("http://a/", headers=[(b"Accept", b"text/html"), ("Accept", "*/*")])
    assert req.headers == (("Accept", "text/html"), ("Accept", "*/*"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"headers": {"X": "a\r\nInjected: 1"}},
        {"headers": {"X": "a\nb"}},
        {"headers": {"Bad Name": "v"}},
        {"method": "GET\r\n"},
        {"method": "G ET"},
        {"method": ""},
    ],
)
def test_request_rejects_header_injection(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Request("http://a/", **kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"body": 12}, {"priority": "high"}, {"priority": True}, {"meta": ["x"]}]
)
def test_request_rejects_wrong_types(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        Request("http://a/", **kwargs)


def test_request_url_must_be_str() -> None:
    with pytest.raises(TypeError, match="url"):
        Request(b"http://a/")  # type: ignore[arg-type]


def test_callback_by_bound_method_string_or_class_function() -> None:
    spider = Shop()
    assert Request("http://a/", callback=spider.parse_item).callback == "parse_item"
    assert Request("http://a/", callback="parse_item").callback == "parse_item"
    assert Request("http://a/", callback=Shop.parse_item).callback == "parse_item"


@pytest.mark.parametrize(
    "callback",
    [
        lambda r: None,
        functools.partial(Shop.parse_item, Shop()),
        print,
        "not a name",
        42,
    ],
)
def test_callback_that_cannot_be_named_is_rejected(callback: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="callback"):
        Request("http://a/", callback=callback)


def test_nested_function_callback_is_rejected() -> None:
    def handler(response: Response) -> None:
        pass

    with pytest.raises(TypeError, match="spider method"):
        Request("http://a/", callback=handler)


def test_bound_method_not_on_the_spider_class_is_rejected() -> None:
    def elsewhere(self: Spider, response: Response) -> None:
        pass

    bound = types.MethodType(elsewhere, Shop())
    with pytest.raises(TypeError, match="not a method of Shop"):
        Request("http://a/", callback=bound)


def test_request_is_frozen_comparable_picklable_and_replaceable() -> None:
    req = Request("http://a/", callback="parse_item", meta={"k": [1]}, priority=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.url = "http://b/"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(req)) == req
    other = req.replace(url="http://b/", method="head")
    assert other.url == "http://b/" and other.method == "HEAD"
    assert other.callback == "parse_item" and other.meta == {"k": [1]}
    assert req.url == "http://a/"
    with pytest.raises(ValueError):
        req.replace(headers={"X": "\r\n"})
    assert "parse_item" in repr(req) and "http://a/" in repr(req)


def test_request_meta_is_copied() -> None:
    meta = {"a": 1}
    req = Request("http://a/", meta=meta)
    meta["a"] = 2
    assert req.meta == {"a": 1}


# --- decoding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "text", "encoding"),
    [
        ("café".encode(), "text/html; charset=utf-8", "café", "utf-8"),
        ("café".encode("latin-1"), "text/html; charset=ISO-8859-1", "café", "cp1252"),
        ("€".encode("cp1252"), 'text/html; charset="windows-1252"', "€", "cp1252"),
        # header wins over the document
        (
            b"<meta charset=latin-1>\xc3\xa9",
            "text/html; charset=utf-8",
            "<meta charset=latin-1>é",
            "utf-8",
        ),
        # the document when the header has none (or an unknown/non-text one)
        (b"<meta charset='iso-8859-1'>\xe9", "text/html", "<meta charset='iso-8859-1'>é", "cp1252"),
        (
            b"<meta charset=koi8-r>\xc1",
            "text/html; charset=base64",
            "<meta charset=koi8-r>\u0430",
            "koi8-r",
        ),
        (
            b'<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">\xe0',
            None,
            '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">\u0430',
            "cp1251",
        ),
        (
            b"<?xml version='1.0' encoding='latin1'?><a>\xe9</a>",
            None,
            "<?xml version='1.0' encoding='latin1'?><a>é</a>",
            "cp1252",
        ),
        # a BOM beats everything
        (codecs.BOM_UTF8 + "é".encode(), "text/html; charset=latin-1", "é", "utf-8"),
        ("hé".encode("utf-16"), "text/html; charset=utf-8", "hé", "utf-16-le"),
        ("hé".encode("utf-16-be"), None, "hé", "utf-16-be"),  # no BOM: detected
        ("<p>hé</p>".encode("utf-16-le"), None, "<p>hé</p>", "utf-16-le"),
        # detection: utf-8 first, then cp1252
        ("naïve".encode(), None, "naïve", "utf-8"),
        (b"na\xefve", None, "naïve", "cp1252"),
        # a lying charset never raises
        (b"caf\xe9 \xff", "text/html; charset=utf-8", "caf\ufffd \ufffd", "utf-8"),
        (b"\x81", "text/html; charset=cp1252", "\ufffd", "cp1252"),
        (b"", None, "", "utf-8"),
        # a meta claiming utf-16 that we read as ASCII is not utf-16
        (b"<meta charset=utf-16>ok", None, "<meta charset=utf-16>ok", "utf-8"),
        (b"+AGE-", "text/plain; charset=utf-7", "+AGE-", "utf-8"),
    ],
)
def test_decode_body(body: bytes, content_type: str | None, text: str, encoding: str) -> None:
    assert decode_body(body, content_type) == (text, encoding)


def test_decode_random_bytes_never_raises() -> None:
    import random

    rnd = random.Random(7)
    for _ in range(200):
        body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(64)))
        for ct in (None, "text/html; charset=utf-8", "text/html; charset=utf-16", "x; charset=zz"):
            text, enc = decode_body(body, ct)
            assert isinstance(text, str) and enc


# --- Response -------------------------------------------------------------------------------

PAGE = b"""<!doctype html><html><head><title> Hello </title>
<base href="/docs/"></head><body>
<a href="a.html#top">A</a> <a href="/root">R</a> <a href="a.html">A again</a>
<a href="http://other.example/x?y=1">X</a> <a href="//cdn.example/s.js">S</a>
<a href="mailto:me@example.com">M</a> <a href="javascript:void(0)">J</a>
<a href="data:text/plain,hi">D</a> <a href="tel:+123">T</a> <a href="ftp://f/">F</a>
<a>no href</a> <a href="../up.html">U</a> <a href="?page=2">Q</a>
<map><area href="area.html"></map> <link href="/style.css"> <img src="/i.png">
<p class="price" data-v="3">3 EUR</p>
</body></html>"""


def html(body: bytes, url: str = "http://site.example/dir/page.html", **kw: Any) -> Response:
    return Response(url, 200, {"Content-Type": "text/html; charset=utf-8"}, body, **kw)


def test_css_and_xpath() -> None:
    r = html(PAGE)
    assert r.css("title::text").get() == " Hello "
    assert r.css("p.price::attr(data-v)").get() == "3"
    assert r.xpath("//p[@class='price']/text()").get() == "3 EUR"
    assert len(r.css("a::attr(href)").getall()) == 12
    assert r.css("nothing").get() is None
    assert r.selector is r.selector  # built once


def test_links_absolute_unique_ordered_filtered_with_base() -> None:
    assert html(PAGE).links() == [
        "http://site.example/docs/a.html",
        "http://site.example/root",
        "http://other.example/x?y=1",
        "http://cdn.example/s.js",
        "http://site.example/up.html",
        "http://site.example/docs/?page=2",
        "http://site.example/docs/area.html",
    ]


def test_links_without_base() -> None:
    body = b"<a href='b.html'>1</a><a href='./c/../d.html'>2</a><a href=' /e f '>3</a>"
    assert html(body).links() == [
        "http://site.example/dir/b.html",
        "http://site.example/dir/d.html",
        "http://site.example/e f",
    ]


def test_links_take_the_first_base_with_an_href_wherever_it_is() -> None:
    body = b"<p><base target='_top'><BASE HREF='/other/'><base href='/third/'><a href='x'>1</a>"
    assert html(body).links() == ["http://site.example/other/x"]


@pytest.mark.parametrize(
    "base",
    [
        "https://h.example:8443/a/b/c.html?x=1",
        "http://h.example/",
        "http://h.example/a/b/",
        "http://h.example/a/./b/../c/d",
        "http://h.example//x//y",
    ],
)
def test_links_match_urljoin_for_many_shapes(base: str) -> None:
    from urllib.parse import urljoin

    hrefs = [
        "d", "d/e", "./d", "../d", "../../../d", "/d", "/./d", "//o.example/d", "?q", "#f", "",
        "d?q#f", "HTTPS://UP.example/P", "http:rel", "https://h.example/a/./b/../c",
        ";p", "d;p?q", "%41", "é", "../../x", "./../x", "../?q", "..", ".", "../", ".hidden",
        "..x/y", "./", "../a/./b", "a/../b", "../a?x=/./", "../../../../../z",
    ]  # fmt: skip
    body = "".join(f'<a href="{h}">x</a>' for h in hrefs).encode()
    r = html(body, url=base)
    joined = (urljoin(base, h).partition("#")[0] for h in hrefs)
    web = (u for u in joined if u.lower().startswith(("http://", "https://")))
    expected = list(dict.fromkeys(web))
    got = r.links()
    assert [u.lower() for u in got] == [u.lower() for u in expected]


def test_links_where_urljoin_is_not_the_reference() -> None:
    body = b"<a href='?q'>1</a><a href='d//e'>2</a>"
    # RFC 3986 keeps empty segments (urljoin drops them); an empty path is "/" for http.
    assert html(body, url="http://h.example").links() == [
        "http://h.example/?q",
        "http://h.example/d//e",
    ]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", "text/html"),
        (b"   ", "text/html"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "image/png"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n<a href='x'>", "application/pdf"),
        (b"\x00\x01\x02<a href='x'>", None),
        (b"just text, <a href='x'>not html</a>", "text/plain"),
        (b'{"a": "<a href=x>"}', "application/json"),
    ],
)
def test_non_markup_bodies_give_empty_results(body: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = Response("http://h/", 200, headers, body)
    assert r.css("a").getall() == []
    assert r.xpath("//a").getall() == []
    assert r.links() == []
    assert isinstance(r.text, str)


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body><a href='/x'>unclosed <div><p><a href='/y'",
        b"<<<>>><a href=/z>z</a></b></i></table>",
        b"\x00<html><a href='/nul'>x</a>",
        b"<a href='/x'>" + b"\xff\xfe\xfa" * 50,
        "<html><title>ü</title><a href='/u'>x</a>".encode("utf-16"),
        "<html><title>ü</title><a href='/u'>x</a>".encode("utf-16-le"),
        b"<?xml version='1.0' encoding='ISO-8859-1'?><html><a href='/xh'>\xe9</a></html>",
        b"<html>" + b"<div>" * 5000 + b"<a href='/deep'>d</a>",
    ],
)
def test_broken_or_odd_html_never_raises(body: bytes) -> None:
    for ct in ("text/html", "text/html; charset=utf-8", None):
        headers = {"content-type": ct} if ct else {}
        r = Response("http://h/", 200, headers, body)
        links = r.links()
        assert all(u.startswith("http://h/") for u in links)
        r.css("a::attr(href)").getall()
        r.xpath("//title/text()").get()


def test_utf16_page_is_parsed() -> None:
    body = "<html><title>ü</title><a href='/u'>x</a>".encode("utf-16")
    r = Response("http://h/", 200, {"Content-Type": "text/html"}, body)
    assert r.css("title::text").get() == "ü"
    assert r.links() == ["http://h/u"]


def test_latin1_page_parsed_with_its_charset() -> None:
    body = "<meta charset=iso-8859-1><title>déjà</title>".encode("latin-1")
    r = Response("http://h/", 200, {"Content-Type": "text/html"}, body)
    assert r.encoding == "cp1252"
    assert r.css("title::text").get() == "déjà"


def test_header_charset_beats_meta_in_the_tree() -> None:
    body = "<meta charset=iso-8859-1><title>déjà</title>".encode()
    assert html(body).css("title::text").get() == "déjà"


def test_xml_response() -> None:
    body = b"<?xml version='1.0'?><urlset><url><loc>http://h/a</loc></url></urlset>"
    r = Response("http://h/sitemap.xml", 200, {"Content-Type": "application/xml"}, body)
    assert r.xpath("//loc/text()").getall() == ["http://h/a"]
    assert r.links() == []


def test_headers_case_insensitive_from_any_shape() -> None:
    hd = HTTPHeaderDict()
    hd.add("Set-Cookie", "a=1")
    hd.add("set-cookie", "b=2")
    for headers in (hd, {"SET-COOKIE": "a=1, b=2"}, [("Set-Cookie", "a=1"), ("set-cookie", "b=2")]):
        r = Response("http://h/", 200, headers, b"")
        assert r.headers["set-cookie"] == "a=1, b=2"
        assert "Set-Cookie" in r.headers
    assert Response("http://h/", 200, [(b"X", b"y")], b"").headers["x"] == "y"
    # whatever a server sent is accepted, never validated into an exception
    odd = Response("http://h/", 200, {"Bad Name": "a\r\nb", "N": 5}, b"")
    assert odd.headers["bad name"] == "a\r\nb" and odd.headers["n"] == "5"


def test_meta_defaults_to_request_meta_and_is_never_none() -> None:
    req = Request("http://h/", meta={"k": 1})
    r = Response("http://h/", 200, {}, b"", request=req, depth=2)
    assert r.meta == {"k": 1} and r.request is req and r.depth == 2
    r.meta["new"] = True
    assert req.meta == {"k": 1}  # the request value is not changed through the response
    assert Response("http://h/", 200, {}, b"").meta == {}
    assert Response("http://h/", 200, {}, b"", request=req, meta={"m": 2}).meta == {"m": 2}


def test_follow_resolves_and_passes_keywords() -> None:
    r = html(PAGE)
    spider = Shop()
    req = r.follow("x.html#f", callback=spider.parse_item, priority=5, meta={"a": 1})
    assert req.url == "http://site.example/docs/x.html#f"  # <base href> applies
    assert req.callback == "parse_item" and req.priority == 5 and req.meta == {"a": 1}
    plain = Response("http://h/a/b", 200, {}, b"binary\x00")
    assert plain.follow("../c").url == "http://h/c"
    with pytest.raises(TypeError):
        r.follow(None)  # type: ignore[arg-type]


def test_text_and_encoding_are_cached() -> None:
    r = html("é".encode())
    assert r.text is r.text and r.encoding == "utf-8"
    assert repr(r) == "<Response 200 http://site.example/dir/page.html>"


def big_page(n_links: int = 150, size: int = 40_000) -> bytes:
    parts = ["<!doctype html><html><head><meta charset=utf-8><title>T</title></head><body>"]
    for i in range(n_links):
        href = (f"/s/{i}.html", f"http://127.0.0.2:8000/p/{i}?q#f", f"../r/{i}", f"i-{i}")[i % 4]
        parts.append(f"<p>{'lorem ipsum dolor sit amet ' * 6}<a href='{href}'>l {i}</a></p>\n")
    text = "".join(parts)
    text += "<div>filler</div>\n" * ((size - len(text)) // 18)
    return (text + "</body></html>").encode()


def test_parse_plus_links_is_cheap() -> None:
    body = big_page()
    assert 39_000 < len(body) < 41_000
    assert len(html(body).links()) == 150
    runs = 50
    start = time.perf_counter()
    for _ in range(runs):
        html(body, url="http://127.0.0.1:8000/a/b.html").links()
    per_page = (time.perf_counter() - start) / runs
    # Well under 2 ms on the target machine (about 0.4 ms); generous against CI noise.
    assert per_page < 0.01, per_page


# --- Spider ---------------------------------------------------------------------------------


def test_spider_kwargs_become_attributes() -> None:
    s = Shop(category="books", start_urls="http://a.example/, http://b.example/")
    assert s.category == "books"  # type: ignore[attr-defined]
    assert s.start_urls == ["http://a.example/", "http://b.example/"]
    assert list(s.start_requests()) == ["http://a.example/", "http://b.example/"]
    assert Shop.start_urls == ["http://shop.example/"]
    with pytest.raises(ValueError, match="method"):
        Shop(parse="x")
    with pytest.raises(ValueError):
        Shop(_private=1)


def test_default_parse_raises_clearly() -> None:
    class Bare(Spider):
        name = "bare"

    with pytest.raises(NotImplementedError, match=r"Bare\.parse"):
        Bare().parse(html(b""))
    Bare().closed("finished")  # the default hook does nothing


def _declared_attributes() -> dict[str, bool]:
    """Spider's public annotated class attributes, each with whether a docstring follows it."""
    tree = ast.parse(inspect.getsource(spider_module))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Spider"]
    declared: dict[str, bool] = {}
    for node, after in zip(cls.body, [*cls.body[1:], None], strict=True):
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and not target.id.startswith("_"):
            declared[target.id] = (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            )
    return declared


def _documented() -> dict[str, str]:
    """The first two cells of each row of docs/spiders.md's "The Spider class" tables."""
    text = (Path(__file__).parents[2] / "docs" / "spiders.md").read_text()
    section = text.split("## The `Spider` class", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]*) \|", section, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_spider_contract_is_declared_documented_and_in_step() -> None:
    declared = _declared_attributes()
    assert set(declared) == set(Spider.__annotations__) - {"_allowed"}
    assert [name for name, has_doc in declared.items() if not has_doc] == []
    # What the engine, the workers and the CLI read (they use plain attribute access).
    assert {
        "name", "start_urls", "allowed_domains", "custom_settings", "user_agent",
        "recrawl_after", "parse_unchanged", "sitemap_urls", "sitemap_callback",
        "handle_httpstatus_list",
    } <= set(declared)  # fmt: skip
    documented = _documented()
    attributes = {name: cell for name, cell in documented.items() if "(" not in name}
    assert set(attributes) == set(declared)
    for name, cell in attributes.items():
        assert cell.startswith("`") and cell.endswith("`"), name
        assert ast.literal_eval(cell.strip("`")) == getattr(Spider, name), name
    methods = [name.partition("(")[0] for name in documented if "(" in name]
    assert methods and all(callable(getattr(Spider, m, None)) for m in methods)


@pytest.mark.parametrize(
    ("allowed", "starts", "host", "ok"),
    [
        (["example.com"], [], "example.com", True),
        (["example.com"], [], "www.example.com", True),
        (["example.com"], [], "a.b.example.com:8080", True),
        (["example.com"], [], "EXAMPLE.COM.", True),
        (["example.com"], [], "notexample.com", False),
        (["example.com"], [], "example.com.evil.org", False),
        (["example.com:8000"], [], "example.com", True),
        (["https://example.com/path"], [], "sub.example.com", True),
        (None, ["http://127.0.0.1:8000/"], "127.0.0.1:9000", True),
        (None, ["http://127.0.0.1:8000/"], "127.0.0.2:8000", False),
        (None, ["http://[::1]:8000/"], "[::1]:8001", True),
        (None, [], "anything.org", True),
        ([], [], "anything.org", True),
    ],
)
def test_allows(allowed: list[str] | None, starts: list[str], host: str, ok: bool) -> None:
    class S(Spider):
        name = "s"
        allowed_domains = allowed
        start_urls = starts

    assert S().allows(host) is ok


def test_allows_uses_start_urls_given_as_arguments() -> None:
    s = Shop(start_urls=["http://127.0.0.3:81/"])
    assert s.allows("127.0.0.3") and not s.allows("shop.example")


def test_iter_results() -> None:
    req = Request("http://h/")
    out = list(iter_results(iter([{"a": 1}, "http://h/x", req, None])))
    assert out == [{"a": 1}, "http://h/x", req]
    assert list(iter_results(None)) == []
    assert list(iter_results({"a": 1})) == [{"a": 1}]
    assert list(iter_results("http://h/")) == ["http://h/"]


@pytest.mark.parametrize("bad", [[b"bytes"], [42], [{1: "x"}], [object()], 5, b"http://h/"])
def test_iter_results_rejects_other_types(bad: Any) -> None:
    with pytest.raises(TypeError):
        list(iter_results(bad))


def test_iter_results_lets_callback_errors_through() -> None:
    def gen() -> Any:
        yield {"a": 1}
        raise KeyError("boom")

    it = iter_results(gen())
    assert next(it) == {"a": 1}
    with pytest.raises(KeyError):
        next(it)
