"""The proxy rotation rules (crawler/worker/proxies.py): pure, time injected, no sleeping."""

from __future__ import annotations

import pytest

from crawler.errors import SettingsError
from crawler.settings import Settings, resolve_settings
from crawler.spider import Request
from crawler.worker.proxies import COOL_DOWN, FAILS_TO_COOL, ProxyRotation

A, B, C = "http://u:pw@127.0.0.1:1", "http://127.0.0.1:2", "socks5h://127.0.0.1:3"


def test_each_host_keeps_one_proxy_and_hosts_spread() -> None:
    rot = ProxyRotation((A, B, C))
    hosts = [f"h{i}.test" for i in range(30)]
    picks = {h: rot.pick(h, 0.0) for h in hosts}
    assert all(rot.pick(h, 5.0) == picks[h] for h in hosts)  # stable
    assert set(picks.values()) == {A, B, C}  # spread over all of them


def test_a_proxy_failing_in_a_row_cools_down_then_returns() -> None:
    rot = ProxyRotation((A, B))
    host = next(h for h in (f"h{i}" for i in range(50)) if rot.pick(h, 0.0) == A)
    for _ in range(FAILS_TO_COOL - 1):
        rot.failed(A, 10.0)
    assert rot.pick(host, 10.0) == A  # not yet
    rot.failed(A, 10.0)
    assert rot.pick(host, 10.0) == B
    assert rot.cooling(10.0) == ["http://***@127.0.0.1:1"]  # redacted
    assert rot.pick(host, 10.0 + COOL_DOWN) == A  # cooled down
    rot.failed(A, 100.0)
    rot.succeeded(A)  # a success resets the count
    for _ in range(FAILS_TO_COOL - 1):
        rot.failed(A, 100.0)
    assert rot.pick(host, 100.0) == A


def test_skip_and_all_cooling() -> None:
    rot = ProxyRotation((A, B))
    host = next(h for h in (f"h{i}" for i in range(50)) if rot.pick(h, 0.0) == A)
    assert rot.pick(host, 0.0, skip=(A,)) == B
    for proxy in (A, B):
        for _ in range(FAILS_TO_COOL):
            rot.failed(proxy, 0.0)
    assert rot.pick(host, 1.0) == A  # every one cooling: still a proxy, never none
    assert ProxyRotation(()).pick(host, 0.0) is None


def test_request_proxy_gets_the_settings_credentials() -> None:
    rot = ProxyRotation((A, B))
    assert rot.full_url("http://127.0.0.1:1") == A
    assert rot.full_url("http://127.0.0.1:9") == "http://127.0.0.1:9"


def test_proxy_and_resolve_settings_convert_and_redact() -> None:
    s = resolve_settings(None, {"proxy": f"{A},{C}", "resolve": "Shop.test=127.0.0.2"})
    assert s.proxy == (A, C)
    assert s.resolve == (("shop.test", "127.0.0.2"),)
    assert s.as_dict()["proxy"] == ["http://***@127.0.0.1:1", C]
    assert Settings(proxy=(A,)).replace(workers=1).proxy == (A,)  # kept through replace
    with pytest.raises(SettingsError):
        resolve_settings(None, {"proxy": "ftp://x"})
    with pytest.raises(SettingsError):
        resolve_settings(None, {"resolve": {"a:notaport": "127.0.0.1"}})
    with pytest.raises(SettingsError) as excinfo:
        resolve_settings(None, {"proxy": "gopher://u:topsecret@h"})
    assert "topsecret" not in str(excinfo.value)


def test_an_https_proxy_url_is_refused_at_settings_time_with_a_clear_error() -> None:
    # TLS to the proxy itself (and so TLS inside TLS for https targets) is not supported:
    # the crawl refuses to start rather than failing on every request.
    with pytest.raises(SettingsError) as excinfo:
        resolve_settings(None, {"proxy": ["http://127.0.0.1:1", "https://u:topsecret@p:443"]})
    message = str(excinfo.value)
    assert "https:// proxies" in message and "not supported" in message
    assert "topsecret" not in message
    with pytest.raises(ValueError, match="https:// proxies") as excinfo2:
        Request("https://example.test/", proxy="https://u:topsecret@p:443")
    assert "topsecret" not in str(excinfo2.value)
