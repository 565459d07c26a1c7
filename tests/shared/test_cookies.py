"""The cookie jar (crawler.engine.cookiejars): RFC 6265 rules through http.cookiejar, the
public-suffix refusal, sessions, and the rows the store keeps."""

from __future__ import annotations

import time

import pytest

from crawler.engine.cookiejars import CookieJars


def test_cookie_shared_across_hosts_of_one_site() -> None:
    jars = CookieJars()
    jars.absorb("https://www.example.com/login", ["sid=abc; Domain=example.com; Path=/"])
    assert jars.header("https://shop.example.com/cart") == "sid=abc"
    assert jars.header("https://www.example.com/") == "sid=abc"
    assert jars.header("https://example.org/") is None


def test_host_only_cookie_stays_on_its_host() -> None:
    jars = CookieJars()
    jars.absorb("https://www.example.com/", ["a=1"])
    assert jars.header("https://www.example.com/x") == "a=1"
    assert jars.header("https://shop.example.com/") is None


@pytest.mark.parametrize("domain", [".co.uk", "co.uk", "github.io", "com"])
def test_public_suffix_domain_is_refused(domain: str) -> None:
    jars = CookieJars()
    host = "www.shop.co.uk" if "co.uk" in domain else "www.example.github.io"
    if domain == "com":
        host = "www.example.com"
    jars.absorb(f"https://{host}/", [f"evil=1; Domain={domain}"])
    assert jars.cookies() == []
    assert jars.header(f"https://{host}/") is None


def test_registrable_domain_under_public_suffix_is_accepted() -> None:
    jars = CookieJars()
    jars.absorb("https://www.shop.co.uk/", ["ok=1; Domain=shop.co.uk"])
    assert jars.header("https://pay.shop.co.uk/") == "ok=1"


def test_path_secure_and_expiry() -> None:
    jars = CookieJars()
    jars.absorb(
        "https://example.com/account/",
        [
            "p=1; Path=/account",
            "s=2; Path=/; Secure",
            "old=3; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "h=4; Path=/; HttpOnly; SameSite=Lax",
        ],
    )
    assert jars.header("https://example.com/account/x") == "p=1; s=2; h=4"
    assert jars.header("http://example.com/") == "h=4"  # no Secure cookie over http
    assert jars.header("https://example.com/other") == "s=2; h=4"
    (h,) = [c for c in jars.cookies() if c.name == "h"]
    assert h.has_nonstandard_attr("HttpOnly")
    assert h.get_nonstandard_attr("SameSite") == "Lax"


def test_later_set_cookie_replaces_earlier() -> None:
    jars = CookieJars()
    jars.absorb("http://example.com/", ["a=1", "a=2"])
    assert jars.header("http://example.com/") == "a=2"
    jars.absorb("http://example.com/", ["a=; Max-Age=0"])
    assert jars.header("http://example.com/") is None


def test_sessions_are_separate_jars() -> None:
    jars = CookieJars()
    jars.absorb("http://example.com/", ["who=buyer"], session="buyer")
    jars.absorb("http://example.com/", ["who=seller"], session="seller")
    assert jars.header("http://example.com/", "buyer") == "who=buyer"
    assert jars.header("http://example.com/", "seller") == "who=seller"
    assert jars.header("http://example.com/") is None
    jars.clear("buyer")
    assert jars.header("http://example.com/", "buyer") is None
    assert jars.has_live("seller") and not jars.has_live("buyer")


def test_request_cookies_added_to_one_header() -> None:
    jars = CookieJars()
    jars.absorb("http://example.com/", ["a=1", "b=2"])
    assert jars.header("http://example.com/", extra={"b": "9", "c": "3"}) == "a=1; b=9; c=3"
    assert jars.header("http://example.com/") == "a=1; b=2"  # the jar is unchanged
    assert CookieJars().header("http://x.test/", extra={"k": "v"}) == "k=v"


def test_rows_round_trip_and_drop_expired() -> None:
    jars = CookieJars()
    soon = time.time() + 100
    jars.absorb(
        "https://www.example.com/",
        ["sid=abc; Domain=example.com; Secure; HttpOnly", "short=1; Max-Age=50"],
    )
    jars.absorb("https://www.example.com/", ["b=2"], session="buyer")
    assert jars.dirty
    rows = jars.rows()
    assert not jars.dirty
    assert {(r["session"], r["name"]) for r in rows} == {("", "sid"), ("", "short"), ("buyer", "b")}
    again = CookieJars()
    assert again.load(rows, now=soon) == 2  # "short" expired meanwhile
    assert again.header("https://shop.example.com/") == "sid=abc"
    assert again.header("http://shop.example.com/") is None  # Secure survived the trip
    assert again.header("https://www.example.com/", "buyer") == "b=2"
    assert again.cookies()[0].has_nonstandard_attr("HttpOnly")


def test_repr_shows_no_values() -> None:
    jars = CookieJars()
    jars.absorb("http://example.com/", ["secret=hunter2"])
    assert "hunter2" not in repr(jars)
    assert "1" in repr(jars)


def test_request_cookies_and_session_are_checked() -> None:
    from crawler.spider import Request

    req = Request("http://example.com/", cookies={"a": "1"}, session="buyer")
    assert req.cookies == (("a", "1"),)
    assert req.session == "buyer"
    assert "1" not in repr(req) and "a=" not in repr(req)
    assert req.replace(url="http://example.com/x").cookies == (("a", "1"),)
    with pytest.raises(ValueError, match="'bad'") as info:
        Request("http://example.com/", cookies={"bad": "x;y=secret"})
    assert "secret" not in str(info.value)
    with pytest.raises(ValueError):
        Request("http://example.com/", cookies={"no name": "1"})
    with pytest.raises(ValueError):
        Request("http://example.com/", session="")
