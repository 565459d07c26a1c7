"""crawler.errors: one tree under CrawlerError, the built-ins callers catch, one exit-code table."""

from __future__ import annotations

import inspect
import pickle
import re
from pathlib import Path

import pytest

import crawler
from crawler import errors
from crawler.errors import (
    EXIT_COULD_NOT_START,
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_USAGE,
    ConfigurationError,
    CouldNotStart,
    CrawlerError,
    ExportError,
    HistoryError,
    InvalidURL,
    LockedError,
    LockFileError,
    NotACrawlDatabase,
    ServerError,
    SettingsError,
    SitemapError,
    SpiderLoadError,
    SpiderNotFound,
    SpiderStartError,
    StorageError,
)

CLASSES = [
    obj
    for name in errors.__all__
    if inspect.isclass(obj := getattr(errors, name)) and issubclass(obj, BaseException)
]
CODES = {name: getattr(errors, name) for name in errors.__all__ if name.startswith("EXIT_")}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_every_exception_is_a_crawler_error_defined_here() -> None:
    assert len(CLASSES) == 18
    for cls in CLASSES:
        assert issubclass(cls, CrawlerError), cls
        assert cls.__module__ == "crawler.errors", cls
    assert crawler.CrawlerError is CrawlerError


def test_every_crawler_error_is_in_all() -> None:
    defined = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    }
    assert defined == {cls.__name__ for cls in CLASSES}


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (SettingsError, ValueError),
        (InvalidURL, ValueError),
        (SitemapError, ValueError),
        (errors.FormNotFound, ValueError),
        (SpiderNotFound, LookupError),
        (LockFileError, OSError),
        (LockedError, RuntimeError),
        (ServerError, RuntimeError),
    ],
)
def test_builtins_mixed_in_where_callers_expect_them(
    cls: type[CrawlerError], builtin: type[Exception]
) -> None:
    assert issubclass(cls, builtin)


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (SettingsError, ConfigurationError),
        (SpiderLoadError, CouldNotStart),
        (SpiderNotFound, SpiderLoadError),
        (SpiderStartError, CouldNotStart),
        (StorageError, CouldNotStart),
        (LockFileError, CouldNotStart),
        (NotACrawlDatabase, HistoryError),
    ],
)
def test_grouping(cls: type[CrawlerError], parent: type[CrawlerError]) -> None:
    assert issubclass(cls, parent)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (CrawlerError, 1),
        (SettingsError, 2),
        (ConfigurationError, 2),
        (SpiderLoadError, 3),
        (SpiderNotFound, 3),
        (SpiderStartError, 3),
        (StorageError, 3),
        (LockFileError, 3),
        (LockedError, 75),
        (HistoryError, 1),
        (ExportError, 1),
        (ServerError, 1),
    ],
)
def test_exit_codes_are_what_docs_cli_says(cls: type[CrawlerError], code: int) -> None:
    assert cls.exit_code == code


def test_the_exit_code_table() -> None:
    assert CODES == {
        "EXIT_FINISHED": 0,
        "EXIT_THRESHOLD": 1,
        "EXIT_WORKERS": 1,
        "EXIT_FAILED": 1,
        "EXIT_USAGE": 2,
        "EXIT_COULD_NOT_START": 3,
        "EXIT_LIMIT": 4,
        "EXIT_LOCKED": 75,
        "EXIT_SIGINT": 130,
        "EXIT_SIGTERM": 143,
    }
    assert (EXIT_FAILED, EXIT_USAGE, EXIT_COULD_NOT_START, EXIT_LOCKED) == (1, 2, 3, 75)
    # Drawn in the module docstring, one line per constant.
    for name, code in CODES.items():
        assert re.search(rf"^    {code} +{name} ", errors.__doc__ or "", re.M), name


def test_docs_cli_exit_code_table_has_exactly_these_codes() -> None:
    section = DOCS.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.M)}
    assert documented == set(CODES.values())


def test_errors_keep_their_attributes_and_messages() -> None:
    cause = ValueError("no start_url given\nsecond line")
    start = SpiderStartError("chain", "__init__", cause)
    assert str(start) == "chain: __init__ raised ValueError: no start_url given"
    assert (start.spider, start.stage) == ("chain", "__init__")
    url = InvalidURL("ftp://x/", "not http(s)")
    assert (str(url), url.url, url.reason) == ("not http(s): 'ftp://x/'", "ftp://x/", "not http(s)")
    locked = pickle.loads(pickle.dumps(LockedError(Path("a.db.lock"), 12, None)))
    assert str(locked) == "another run (pid 12) holds the lock a.db.lock"
    assert locked.exit_code == EXIT_LOCKED


def test_no_module_outside_errors_defines_a_crawler_error() -> None:
    # The one tree: a new error is added to crawler/errors.py (the pool keeps its own tree).
    root = Path(crawler.__file__).parent
    pattern = re.compile(r"^class \w+\((?:[\w.]*Error|[\w.]*Exception)\b", re.M)
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "errors.py"
        and "http" not in path.relative_to(root).parts
        and pattern.search(path.read_text())
    ]
    assert offenders == ["worker/body.py"]  # BodyDeadline: a pool HTTPError, by design
