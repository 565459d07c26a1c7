"""The public names are a contract: guard them."""

from __future__ import annotations

import importlib
import subprocess
import sys

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
ERRORS_NAMES = {
    "CrawlerError", "ConfigurationError", "CouldNotStart", "SettingsError", "SpiderLoadError",
    "SpiderNotFound", "SpiderStartError", "StorageError", "LockFileError", "LockedError",
    "HistoryError", "NotACrawlDatabase", "ExportError", "ServerError", "InvalidURL",
    "SitemapError", "EXIT_FINISHED", "EXIT_THRESHOLD", "EXIT_WORKERS", "EXIT_FAILED",
    "EXIT_USAGE", "EXIT_COULD_NOT_START", "EXIT_LIMIT", "EXIT_LOCKED", "EXIT_SIGINT",
    "EXIT_SIGTERM",
}  # fmt: skip


def test_crawler_all() -> None:
    assert sorted(crawler.__all__) == [
        "CrawlerError", "Request", "Response", "RunResult", "Settings", "Spider", "__version__",
        "crawl",
    ]  # fmt: skip
    for name in crawler.__all__:
        assert hasattr(crawler, name), name
    assert crawler.Spider.__module__ == "crawler.spider"
    assert crawler.Settings.__module__ == "crawler.settings"
    assert crawler.CrawlerError.__module__ == "crawler.errors"
    assert crawler.crawl.__module__ == "crawler.engine.loop"
    assert crawler.RunResult.__module__ == "crawler.engine.loop"
    with pytest.raises(AttributeError, match="no_such_name"):
        crawler.no_such_name  # noqa: B018


def test_import_crawler_leaves_the_engine_for_later() -> None:
    # crawler.settings reads crawler.__version__ while crawler/__init__ runs: the import order
    # there matters, and `import crawler` must not load the parent's loop (crawl is lazy).
    code = "import sys, crawler; print('crawler.engine' in sys.modules, crawler.crawl.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "crawl"]


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from crawler import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(crawler.__all__)


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("crawler.spider", {"Request", "Response", "Spider", "iter_results"}),
        ("crawler.loader", {"discover", "load_spider"}),
        ("crawler.errors", ERRORS_NAMES),
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
