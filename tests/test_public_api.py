"""The public names are a contract: guard them."""

from __future__ import annotations

import importlib

import pytest

import crawler

HTTP_NAMES = {
    "HTTPConnectionPool", "HTTPSConnectionPool", "ConnectionPool", "PoolManager",
    "connection_from_url", "make_headers", "encode_multipart_formdata", "HTTPResponse", "Retry",
    "Timeout",
    # the exception tree
    "HTTPError", "PoolError", "EmptyPoolError", "ClosedPoolError", "HostChangedError",
    "MaxRetryError", "TimeoutError", "ConnectTimeoutError", "ReadTimeoutError", "SSLError",
    "ProtocolError", "NewConnectionError", "DecodeError", "LocationParseError",
}  # fmt: skip


def test_crawler_all() -> None:
    assert sorted(crawler.__all__) == ["Request", "Response", "Settings", "Spider", "__version__"]
    for name in crawler.__all__:
        assert hasattr(crawler, name), name
    assert crawler.Spider.__module__ == "crawler.spider"
    assert crawler.Settings.__module__ == "crawler.settings"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from crawler import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(crawler.__all__)


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("crawler.spider", {"Request", "Response", "Spider", "iter_results"}),
        ("crawler.loader", {"SpiderLoadError", "SpiderNotFound", "discover", "load_spider"}),
        ("crawler.progress", {"Progress", "StatusAwareHandler", "format_summary"}),
        ("crawler.cli", {"cli", "main", "build_settings"}),
    ],
)
def test_module_all_lists_the_contract(module: str, names: set[str]) -> None:
    mod = importlib.import_module(module)
    assert names <= set(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_http_all_has_the_issue_2_names() -> None:
    http = importlib.import_module("crawler.http")
    exported = set(getattr(http, "__all__", ()))
    assert exported >= HTTP_NAMES, sorted(HTTP_NAMES - exported)
    for name in exported:
        assert hasattr(http, name), name
    # the exception tree mixes in the built-ins callers catch
    assert issubclass(http.TimeoutError, TimeoutError)
    assert issubclass(http.LocationParseError, ValueError)
    assert issubclass(http.MaxRetryError, http.HTTPError)
