"""Pure units of crawler.urls (shared by both sides): canonical URLs, hosts, fingerprints,
and admit(), the one rule for every path that accepts a URL.

(Which worker owns a host and the politeness clocks are the engine's: tests/engine/.)
"""

from __future__ import annotations

import random

import pytest

import crawler.urls as frontier
from crawler.errors import InvalidURL
from crawler.urls import (
    Admitted,
    Refusal,
    Refused,
    admit,
    canonicalize_url,
    fingerprint,
    url_host,
)
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


def test_fast_path_agrees_with_the_slow_path_on_hosts_ports_and_escapes() -> None:
    rng = random.Random(13)
    host_chars = "ab0-_.A"
    ports = ["", ":", ":80", ":443", ":8080", ":0", ":65536", ":007"]
    tails = ["", "x", "%41", "%7e", "%7E", "%2f", "%2F", "%e9", "%zz", "a%", "/./b", "?", "?q=%3D"]
    for _ in range(4000):
        host = "".join(rng.choice(host_chars) for _ in range(rng.randrange(1, 9)))
        url = f"{rng.choice(('http', 'https'))}://{host}{rng.choice(ports)}/"
        url += "".join(rng.choice(tails) for _ in range(rng.randrange(3)))
        try:
            slow = frontier._canonicalize_slow(url)
        except InvalidURL:
            with pytest.raises(InvalidURL):
                canonicalize_url(url)
            continue
        assert canonicalize_url(url) == slow, url
        assert canonicalize_url(slow) == slow, url


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


ADMITTED = [
    # (url, base, canonical, host): fast path, slow path, relative, userinfo, port
    ("http://a.com/x", None, "http://a.com/x", "a.com"),
    ("HTTP://A.com:80/a/./b#f", None, "http://a.com/a/b", "a.com"),
    ("https://a.com:8443/x?y", None, "https://a.com:8443/x?y", "a.com:8443"),
    ("http://u:p@a.com:81/", None, "http://u:p@a.com:81/", "a.com:81"),
    ("http://[::1]:8080/", None, "http://[::1]:8080/", "[::1]:8080"),
    ("/x y#f", "http://a.com:81/p", "http://a.com:81/x%20y", "a.com:81"),
    ("z.html", "http://a.com/p/q?x", "http://a.com/p/z.html", "a.com"),
    ("//b.com/x", "https://a.com/p", "https://b.com/x", "b.com"),
    ("http://bücher.de/", None, "http://xn--bcher-kva.de/", "xn--bcher-kva.de"),
]


@pytest.mark.parametrize(("url", "base", "canonical", "host"), ADMITTED)
def test_admit(url: str, base: str | None, canonical: str, host: str) -> None:
    got = admit(url, base=base, max_url_length=2083)
    assert got == Admitted(canonical, host, fingerprint(canonical))
    assert isinstance(got, Admitted)
    assert got.host == url_host(got.url)  # the fast path's host is url_host's


@pytest.mark.parametrize(
    ("method", "body"), [("GET", None), ("POST", b"x=1"), ("HEAD", None), ("get", b"")]
)
def test_admit_fingerprints_method_and_body(method: str, body: bytes | None) -> None:
    got = admit("http://a.com/", method=method, body=body, max_url_length=100)
    assert isinstance(got, Admitted)
    assert got.fp == fingerprint("http://a.com/", method, body)


@pytest.mark.parametrize(("url", "reason"), INVALID)
def test_admit_refuses_invalid(url: str, reason: str) -> None:
    got = admit(url, max_url_length=2083, allows=lambda host: pytest.fail("asked"))
    assert isinstance(got, Refused)
    assert got.reason is Refusal.INVALID
    assert reason in got.detail
    with pytest.raises(InvalidURL) as info:
        canonicalize_url(url)
    assert got.detail == str(info.value)  # the errors row carries InvalidURL's message
    assert got.url is None


@pytest.mark.parametrize(
    ("url", "max_len", "admitted"),
    [
        ("http://a.com/xyz", 16, True),  # exactly the limit
        ("http://a.com/xyzw", 16, False),  # one over
        ("http://a.com/xyz#" + "f" * 50, 16, True),  # the limit is on the canonical form
        ("HTTP://A.COM:80/./xyz", 16, True),
        ("http://a.com/ xyz", 16, False),  # the space becomes %20
    ],
)
def test_admit_length_is_checked_on_the_canonical_form(
    url: str, max_len: int, admitted: bool
) -> None:
    canonical = canonicalize_url(url)
    if admitted:
        got = admit(url, max_url_length=max_len)
        assert got == Admitted(canonical, url_host(canonical), fingerprint(canonical))
    else:
        # Refused before the offsite filter is asked.
        got = admit(url, max_url_length=max_len, allows=lambda host: pytest.fail("asked"))
        assert got == Refused(Refusal.TOO_LONG, "longer than max_url_length", canonical)


def test_admit_offsite_filter() -> None:
    asked: list[str] = []

    def allows(host: str) -> bool:
        asked.append(host)
        return host == "a.com"

    assert isinstance(admit("http://a.com/x", max_url_length=100, allows=allows), Admitted)
    got = admit("http://B.com:81/x", max_url_length=100, allows=allows)
    assert got == Refused(Refusal.OFFSITE, "host not allowed", None)
    assert asked == ["a.com", "b.com:81"]  # the canonical host, port included
    assert isinstance(admit("http://b.com:81/x", max_url_length=100), Admitted)  # no filter


def test_admit_seen_refuses_a_repeat_within_one_response() -> None:
    seen: set[int] = set()
    first = admit("/a#top", base="http://h.com/", max_url_length=100, seen=seen)
    assert isinstance(first, Admitted)
    assert seen == {first.fp}
    again = admit("HTTP://H.com:80/a", max_url_length=100, seen=seen)  # the same canonical URL
    assert again == Refused(Refusal.DUPLICATE, "already admitted", None)
    # A refusal for another reason adds nothing to seen; no seen, no duplicates.
    invalid = admit("ftp://h.com/", max_url_length=100, seen=seen)
    assert isinstance(invalid, Refused)
    assert invalid.reason is Refusal.INVALID
    assert admit("http://h.com/a", max_url_length=100) == first
    assert seen == {first.fp}


def test_admit_agrees_with_the_chain() -> None:
    """admit() is canonicalize_url, url_host and fingerprint, whichever path canonicalizes."""
    rng = random.Random(11)
    alphabet = "aA0-._~%2F3e:/?=&@!# \u00e9"
    for _ in range(3000):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        url = rng.choice(["http://h.com/", "HTTPS://u@H.com:443/", "/", ""]) + tail
        got = admit(url, base="http://b.com/d/p", max_url_length=2083)
        try:
            canonical = canonicalize_url(url, "http://b.com/d/p")
        except InvalidURL:
            assert isinstance(got, Refused)
            assert got.reason is Refusal.INVALID
            continue
        assert got == Admitted(canonical, url_host(canonical), fingerprint(canonical))


def test_public_api() -> None:
    assert set(frontier.__all__) == {
        "Admitted",
        "Refusal",
        "Refused",
        "admit",
        "canonicalize_url",
        "fingerprint",
        "url_host",
    }
