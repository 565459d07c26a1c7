"""crawler.sitemap: the parser fed with bytes (XML, gzip, text, hostile input)."""

from __future__ import annotations

import gzip
import re
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawler.errors import SitemapError
from crawler.sitemap import MAX_SITEMAP_URLS, Sitemap, SitemapEntry, parse_lastmod, parse_sitemap

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*entries: str, ns: str = NS) -> bytes:
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    return f"{head}<urlset {ns}>{''.join(entries)}</urlset>".encode()


def url(loc: str, lastmod: str | None = None) -> str:
    mod = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
    return f"<url><loc>{loc}</loc>{mod}<changefreq>daily</changefreq><priority>0.5</priority></url>"


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_urlset_with_lastmod() -> None:
    sm = parse_sitemap(
        urlset(
            url("http://example.com/", "2024-05-01"),
            url(" http://example.com/a?x=1&amp;y=2 ", "2024-05-01T10:20:30+02:00"),
            url("http://example.com/b"),
        )
    )
    assert sm == Sitemap(
        "urlset",
        (
            SitemapEntry("http://example.com/", ts(2024, 5, 1)),
            SitemapEntry("http://example.com/a?x=1&y=2", ts(2024, 5, 1, 8, 20, 30)),
            SitemapEntry("http://example.com/b", None),
        ),
    )
    assert sm.urls[0] == "http://example.com/"


def test_sitemap_index() -> None:
    body = (
        f"<sitemapindex {NS}>"
        "<sitemap><loc>http://example.com/s1.xml.gz</loc><lastmod>2024-01-02</lastmod></sitemap>"
        "<sitemap><loc>http://example.com/s2.xml</loc></sitemap>"
        "</sitemapindex>"
    ).encode()
    sm = parse_sitemap(body)
    assert sm.kind == "index"
    assert sm.entries == (
        SitemapEntry("http://example.com/s1.xml.gz", ts(2024, 1, 2)),
        SitemapEntry("http://example.com/s2.xml"),
    )


@pytest.mark.parametrize("ns", ["", 'xmlns="http://www.google.com/schemas/sitemap/0.84"'])
def test_namespace_is_not_required(ns: str) -> None:
    assert parse_sitemap(urlset(url("http://a/1"), ns=ns)).urls == ("http://a/1",)


def test_gzip_detected_by_magic_bytes() -> None:
    body = urlset(url("http://a/1"), url("http://a/2"))
    assert parse_sitemap(gzip.compress(body)).urls == ("http://a/1", "http://a/2")


def test_gzip_with_several_members() -> None:
    text = gzip.compress(b"http://a/1\n") + gzip.compress(b"http://a/2\n")
    assert parse_sitemap(text).urls == ("http://a/1", "http://a/2")


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    inflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    bomb = b"".join(inflater.compress(zeros) for _ in range(1024)) + inflater.flush()  # 1 GiB
    assert len(bomb) < 2 * 1024 * 1024
    with pytest.raises(SitemapError, match="inflates past 1000000 bytes"):
        parse_sitemap(bomb, max_size=1_000_000)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "bad gzip"),
        (gzip.compress(b"http://a/1\n" * 100)[:-20], "truncated gzip"),
    ],
)
def test_bad_gzip(body: bytes, message: str) -> None:
    with pytest.raises(SitemapError, match=message):
        parse_sitemap(body)


def test_plain_body_over_the_size_limit() -> None:
    with pytest.raises(SitemapError, match="larger than 100 bytes"):
        parse_sitemap(urlset(*(url(f"http://a/{i}") for i in range(10))), max_size=100)


def test_text_sitemap() -> None:
    body = b"\xef\xbb\xbfhttp://a/1\r\n\n  https://a/2  \nftp://a/3\nnot a url\nhttp://a/ b\n"
    sm = parse_sitemap(body)
    assert sm.kind == "text"
    assert sm.urls == ("http://a/1", "https://a/2")
    assert sm.skipped == 3


def test_max_urls_truncates() -> None:
    sm = parse_sitemap(urlset(*(url(f"http://a/{i}") for i in range(10))), max_urls=3)
    assert sm.urls == ("http://a/0", "http://a/1", "http://a/2")
    assert sm.truncated
    text = parse_sitemap(b"".join(b"http://a/%d\n" % i for i in range(10)), max_urls=4)
    assert len(text.entries) == 4 and text.truncated


def test_default_limit_is_the_protocols() -> None:
    n = MAX_SITEMAP_URLS + 5
    sm = parse_sitemap(gzip.compress(b"".join(b"http://a/%d\n" % i for i in range(n))))
    assert len(sm.entries) == MAX_SITEMAP_URLS and sm.truncated


def test_unusable_entries_are_skipped_and_counted() -> None:
    sm = parse_sitemap(
        urlset(url("http://a/1"), url(""), url("javascript:alert(1)"), "<url></url>")
    )
    assert sm.urls == ("http://a/1",) and sm.skipped == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<urlset><url><loc>http://a/1</loc></url>", "malformed"),
        (b"<urlset><url><loc>http://a/1</url></urlset>", "malformed"),
        (b"<html><body>Not found</body></html>", "root element is <html>"),
        (b"<?xml version='1.0'?>", "malformed"),
        (b"", "empty"),
        (b"  \n ", "empty"),
        (b"\x00\x01\x02<", "malformed|empty|not a sitemap"),
    ],
)
def test_malformed_input_is_a_clear_error(body: bytes, message: str) -> None:
    try:
        sm = parse_sitemap(body)
    except SitemapError as exc:
        assert re.search(message, str(exc))
    else:  # binary junk may read as a text sitemap with nothing usable in it
        assert sm.kind == "text" and sm.entries == ()


def test_entities_are_not_expanded() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
        b'<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
        b"<urlset><url><loc>http://x/&d;</loc></url></urlset>"
    )
    [entry] = parse_sitemap(bomb).entries
    assert "aaaa" not in entry.loc


def test_external_entities_are_not_loaded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY s SYSTEM "{secret.as_uri()}">]>'
        "<urlset><url><loc>http://x/&s;</loc></url></urlset>"
    ).encode()
    sm = parse_sitemap(body)
    assert all("TOPSECRET" not in e.loc for e in sm.entries)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", ts(2024, 1, 1)),
        ("2024-05", ts(2024, 5, 1)),
        ("2024-05-01", ts(2024, 5, 1)),
        ("2024-05-01T10:20Z", ts(2024, 5, 1, 10, 20)),
        ("2024-05-01T10:20:30Z", ts(2024, 5, 1, 10, 20, 30)),
        ("2024-05-01T10:20:30.5+01:00", ts(2024, 5, 1, 9, 20, 30) + 0.5),
        ("2024-05-01T10:20:30-0130", ts(2024, 5, 1, 11, 50, 30)),
        ("2024-05-01T10:20:30", ts(2024, 5, 1, 10, 20, 30)),  # no zone: UTC
        ("  2024-05-01 ", ts(2024, 5, 1)),
        ("2024-13-01", None),
        ("2024-02-30", None),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_lastmod(value: str | None, expected: float | None) -> None:
    assert parse_lastmod(value) == expected


def test_negative_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        parse_sitemap(b"http://a/", max_urls=-1)


def test_entry_needs_a_loc() -> None:
    with pytest.raises(ValueError):
        SitemapEntry("")
