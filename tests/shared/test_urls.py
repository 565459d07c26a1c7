"""Pure units of crawler.urls (shared by both sides): canonical URLs, hosts, fingerprints.

(Which worker owns a host and the politeness clocks are the engine's: tests/engine/.)
"""

from __future__ import annotations

import random

import pytest

import crawler.urls as frontier
from crawler.errors import InvalidURL
from crawler.urls import canonicalize_url, fingerprint, url_host
from tests.kit.processes import python_output

CANONICAL = [
    # case, default ports, empty path
    ("HTTP://Example.COM", "http://example.com/"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:443/a", "http://example.com:443/a"),
    ("https://example.com:080/", "https://example.com:80/"),
    ("http://example.com:/a", "http://example.com/a"),
    ("http://Example.com./a", "http://example.com/a"),
    ("http://example.com/A/B", "http://example.com/A/B"),
    # fragments, empty query, query order and reserved characters kept
    ("http://a.com/x#frag", "http://a.com/x"),
    ("http://a.com/x?#frag", "http://a.com/x"),
    ("http://a.com/x?", "http://a.com/x"),
    ("http://a.com/x?b=2&a=1&b=1", "http://a.com/x?b=2&a=1&b=1"),
    ("http://a.com/x?a=1/2?3;b=c+d", "http://a.com/x?a=1/2?3;b=c+d"),
    ("http://a.com/p:q@r!$&'()*+,;=", "http://a.com/p:q@r!$&'()*+,;="),
    # dot segments
    ("http://a.com/a/./b/../c", "http://a.com/a/c"),
    ("http://a.com/../../x", "http://a.com/x"),
    ("http://a.com/a/b/..", "http://a.com/a/"),
    ("http://a.com/a/.", "http://a.com/a/"),
    ("http://a.com/a/%2E%2E/b", "http://a.com/b"),
    ("http://a.com/.well-known/x", "http://a.com/.well-known/x"),
    ("http://a.com/a//b", "http://a.com/a//b"),
    # percent-encoding
    ("http://a.com/%7euser/%41", "http://a.com/~user/A"),
    ("http://a.com/a%2fb%3a", "http://a.com/a%2Fb%3A"),
    ("http://a.com/100%", "http://a.com/100%25"),
    ("http://a.com/%zz?q=%", "http://a.com/%25zz?q=%25"),
    ("http://a.com/a b?c d", "http://a.com/a%20b?c%20d"),
    ('http://a.com/a"<>`{}|\\^', "http://a.com/a%22%3C%3E%60%7B%7D%7C%5C%5E"),
    ("http://a.com/?q=[x]", "http://a.com/?q=%5Bx%5D"),
    # non-ASCII: UTF-8 in path and query, IDNA in the host
    ("http://a.com/päth?q=ü", "http://a.com/p%C3%A4th?q=%C3%BC"),
    ("http://a.com/%c3%a4", "http://a.com/%C3%A4"),
    ("http://bücher.de/", "http://xn--bcher-kva.de/"),
    ("http://BÜCHER.de/", "http://xn--bcher-kva.de/"),
    ("http://例え.jp", "http://xn--r8jz45g.jp/"),
    # whitespace around the URL (as in href attributes), userinfo kept, IP literals
    ("  http://a.com/x\n", "http://a.com/x"),
    ("http://User:P%61ss@A.com/", "http://User:Pass@a.com/"),
    ("http://@a.com/", "http://a.com/"),
    ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("http://[2001:DB8::1]/", "http://[2001:db8::1]/"),
    ("http://my_host-1.local/", "http://my_host-1.local/"),
]


@pytest.mark.parametrize(("url", "expected"), CANONICAL)
def test_canonicalize(url: str, expected: str) -> None:
    assert canonicalize_url(url) == expected
    # Idempotent, and the fast path agrees with the slow path on canonical input.
    assert canonicalize_url(expected) == expected
    assert frontier._canonicalize_slow(expected) == expected


RELATIVE = [
    ("/x/y", "http://a.com/p/q", "http://a.com/x/y"),
    ("/x y#f", "http://a.com:81/p", "http://a.com:81/x%20y"),
    ("z.html", "http://a.com/p/q?x", "http://a.com/p/z.html"),
    ("z.html#top", "http://a.com/p/", "http://a.com/p/z.html"),
    ("../z", "http://a.com/p/q/r", "http://a.com/p/z"),
    ("a/../b", "http://a.com/p/q", "http://a.com/p/b"),
    ("?page=2", "http://a.com/p/q?page=1", "http://a.com/p/q?page=2"),
    ("#frag", "http://a.com/p", "http://a.com/p"),
    ("//b.com/x", "https://a.com/p", "https://b.com/x"),
    ("HTTPS://B.com", "http://a.com/p", "https://b.com/"),
    ("http://b.com/x", "http://a.com/", "http://b.com/x"),
    ("", "http://a.com/p#x", "http://a.com/p"),
    ("x", "HTTP://A.com", "http://a.com/x"),
]


@pytest.mark.parametrize(("url", "base", "expected"), RELATIVE)
def test_canonicalize_relative(url: str, base: str, expected: str) -> None:
    assert canonicalize_url(url, base) == expected


INVALID = [
    ("ftp://a.com/x", "unsupported scheme 'ftp'"),
    ("mailto:x@a.com", "unsupported scheme 'mailto'"),
    ("javascript:void(0)", "unsupported scheme 'javascript'"),
    ("file:///etc/passwd", "unsupported scheme 'file'"),
    ("http:///x", "no host"),
    ("http://", "no host"),
    ("x.html", "relative URL without a base"),
    ("http://a.com:99999/", "port out of range"),
    ("http://a.com:0/", "port out of range"),
    ("http://a.com:8x/", "invalid port"),
    ("http://a.com/x\r\nSet-Cookie: y", "control character"),
    ("http://a.com/\x00", "control character"),
    ("http://a\tb.com/", "control character"),
    ("http://a..com/", "invalid host"),
    ("http://a com/", "invalid host"),
    ("http://a.com:80:80/", "invalid port"),
    ("http://" + "a" * 64 + ".com/", "invalid host"),
    ("http://" + ("a" * 60 + ".") * 5 + "com/", "host too long"),
    ("http://[::1/", "malformed URL"),
]


@pytest.mark.parametrize(("url", "reason"), INVALID)
def test_invalid(url: str, reason: str) -> None:
    with pytest.raises(InvalidURL) as info:
        canonicalize_url(url)
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)


def test_fast_path_only_accepts_what_the_slow_path_keeps() -> None:
    rng = random.Random(7)
    alphabet = "aA0-._~%2F3e:/?=&@!# \u00e9"
    for _ in range(3000):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        url = "http://h.com/" + tail
        try:
            slow = frontier._canonicalize_slow(url)
        except InvalidURL:
            continue
        assert canonicalize_url(url) == slow
        assert canonicalize_url(slow) == slow


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://a.com/x", "a.com"),
        ("https://a.com:8443/x?y", "a.com:8443"),
        ("http://u:p@a.com:81/", "a.com:81"),
        ("http://[::1]:8080/", "[::1]:8080"),
    ],
)
def test_url_host(url: str, host: str) -> None:
    assert url_host(url) == host


# Fixed values: a change here re-keys every existing frontier, so it must be deliberate.
FP_CASES = [
    (("http://a.com/",), -8584409293258754742),
    (("http://a.com/", "POST", b"x=1"), -3324064950003639410),
    (("http://a.com/", "HEAD"), 1842565132249121838),
]


@pytest.mark.parametrize(("args", "expected"), FP_CASES)
def test_fingerprint_is_fixed(args: tuple[object, ...], expected: int) -> None:
    assert fingerprint(*args) == expected  # type: ignore[arg-type]
    assert -(2**63) <= expected < 2**63


def test_fingerprint_stable_across_processes() -> None:
    out = python_output("from crawler.urls import fingerprint; print(fingerprint('http://a.com/'))")
    assert out == [str(fingerprint("http://a.com/"))]


def test_fingerprint_method_and_body() -> None:
    url = "http://a.com/"
    assert fingerprint(url, "get") == fingerprint(url, "GET") == fingerprint(url)
    assert fingerprint(url, "POST") != fingerprint(url)
    assert fingerprint(url, "POST", b"a") != fingerprint(url, "POST", b"b")
    assert fingerprint(url, "GET", b"") != fingerprint(url)


def test_public_api() -> None:
    assert set(frontier.__all__) == {"canonicalize_url", "fingerprint", "url_host"}
