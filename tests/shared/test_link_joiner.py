"""``LinkJoiner.join_all``: each distinct href joined once, the same URLs as joining every one."""

from __future__ import annotations

from crawler.markup import LinkJoiner

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
