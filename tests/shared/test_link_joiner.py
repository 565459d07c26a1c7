"""``LinkJoiner.join_all``: each distinct href joined once, the same URLs as joining every one."""

from __future__ import annotations

import lxml.etree

from crawler.markup import LinkJoiner, link_hrefs, make_parser

HREFS = [
    "os.html#os.open",
    "os.html#os.close",
    "os.html",
    "  os.html#x  ",
    "#top",
    "",
    "?q=1#frag",
    "/abs/path.html#a",
    "/abs/path.html#b",
    "../up.html#s",
    "./here.html",
    "//other.example/x#y",
    "http://Other.example/y#z",
    "mailto:someone@example.com",
    "javascript:void(0)",
    "http://[::1/broken",
    "a\nb.html#frag",
    "/a/./b/../c.html#f",
]


def test_join_all_matches_join_on_every_href() -> None:
    joiner = LinkJoiner("http://127.0.0.1:8000/library/index.html#here")
    expected: dict[str, None] = {}
    for href in HREFS:
        try:
            url = joiner.join(href)
        except ValueError:
            continue
        if url is not None:
            expected[url] = None
    got = joiner.join_all(HREFS)
    assert got == list(expected)
    assert "http://127.0.0.1:8000/library/os.html" in got
    assert not any("#" in url for url in got)
    assert len(got) == len(set(got))


def test_join_all_cache_is_per_directory() -> None:
    # The same relative hrefs on pages of other directories (and a base with dot segments,
    # which is never cached) still resolve against their own page.
    for base, expected in (
        ("http://127.0.0.1:8000/library/index.html", "http://127.0.0.1:8000/library/os.html"),
        ("http://127.0.0.1:8000/howto/index.html", "http://127.0.0.1:8000/howto/os.html"),
        ("http://127.0.0.1:8000/library/index.html", "http://127.0.0.1:8000/library/os.html"),
        ("http://127.0.0.1:8000/a/./b/index.html", "http://127.0.0.1:8000/a/b/os.html"),
        ("https://127.0.0.1:8000/library/index.html", "https://127.0.0.1:8000/library/os.html"),
    ):
        joiner = LinkJoiner(base)
        got = joiner.join_all(["os.html#x", "?q", "", "/top.html"])
        origin = base[: base.index("/", 8)]
        assert got == [expected, base + "?q", base, origin + "/top.html"]


def test_link_hrefs_in_document_order_with_and_without_area() -> None:
    parser = make_parser("html")
    plain = lxml.etree.fromstring(b"<p><a href='1'>x</a><a>no href</a><a href='2'>y</a>", parser)
    assert link_hrefs(plain) == ["1", "2"]
    mixed = lxml.etree.fromstring(
        b"<p><a href='1'>x</a><map><area href='2'></map><a href='3'>y</a></p>", parser
    )
    assert link_hrefs(mixed) == ["1", "2", "3"]
