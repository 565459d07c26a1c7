"""The one exception tree of :mod:`crawler`, and the exit-code table. No imports from crawler.

::

    CrawlerError(Exception)              exit 1 unless a subclass says otherwise
    ├── ConfigurationError               exit 2: what the user asked for cannot be done
    │   └── SettingsError (+ ValueError) a setting is unknown, or its value is not valid
    ├── CouldNotStart                    exit 3: the run could not start (or go on)
    │   ├── SpiderLoadError              a spider module could not be imported, or is ambiguous
    │   │   └── SpiderNotFound (+ LookupError)  no spider by that name, no such file
    │   ├── SpiderStartError             .spider .stage: its __init__ or start_requests raised
    │   ├── StorageError                 the database cannot be opened, is not SQLite, stays
    │   │                                locked by another writer, or fails mid-write
    │   └── LockFileError (+ OSError)    the run lock file cannot be created (folder, rights)
    ├── LockedError (+ RuntimeError)     exit 75: .path .holder_pid .since, another run holds it
    ├── HistoryError                     the runs table cannot be read (no such database, ...)
    │   └── NotACrawlDatabase            a SQLite file without a runs table
    ├── ExportError                      no such database or table, bad format, unwritable output
    ├── RobotsDisallowed                 ``crawler shell``/``parse``: robots.txt keeps it off a URL
    ├── ServerError (+ RuntimeError)     the ``crawler bench`` site server could not be started
    ├── InvalidURL (+ ValueError)        .url .reason: malformed, or not http(s)
    ├── SitemapError (+ ValueError)      a body that is not a sitemap we can read
    └── FormNotFound (+ ValueError)      Response.form(): no form (or submit button) matches

``InvalidURL`` and ``SitemapError`` do not end a run: the code that meets one records an
``errors`` row and goes on. The others end a command, and ``crawler.cli`` turns any of them
into its ``exit_code`` and its message on one line. The connection pool keeps its own tree
(:mod:`crawler.http.exceptions`, rooted at ``HTTPError``): ``crawler/http/`` imports nothing
from outside itself.

Exit codes, the one table (docs/cli.md shows the same; a test compares them)::

    0    EXIT_FINISHED         finished
    1    EXIT_THRESHOLD        finished, but max_error_rate, min_items or a quality gate failed
    1    EXIT_WORKERS          stopped: workers kept dying
    1    EXIT_FAILED           a command failed (fetch, export, runs, stats, bench)
    2    EXIT_USAGE            usage or configuration error
    3    EXIT_COULD_NOT_START  could not start: spider, start requests, database, lock file
    4    EXIT_LIMIT            stopped by a limit with work left; the next run resumes
    75   EXIT_LOCKED           another run holds the database's lock (EX_TEMPFAIL: try later)
    130  EXIT_SIGINT           interrupted by SIGINT; state saved
    143  EXIT_SIGTERM          interrupted by SIGTERM; state saved
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_COULD_NOT_START",
    "EXIT_FAILED",
    "EXIT_FINISHED",
    "EXIT_LIMIT",
    "EXIT_LOCKED",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_THRESHOLD",
    "EXIT_USAGE",
    "EXIT_WORKERS",
    "ConfigurationError",
    "CouldNotStart",
    "CrawlerError",
    "ExportError",
    "FormNotFound",
    "HistoryError",
    "InvalidURL",
    "LockFileError",
    "LockedError",
    "NotACrawlDatabase",
    "RobotsDisallowed",
    "ServerError",
    "SettingsError",
    "SitemapError",
    "SpiderLoadError",
    "SpiderNotFound",
    "SpiderStartError",
    "StorageError",
]

EXIT_FINISHED = 0
EXIT_THRESHOLD = 1
EXIT_WORKERS = 1
EXIT_FAILED = 1
EXIT_USAGE = 2  # what click's UsageError exits with
EXIT_COULD_NOT_START = 3
EXIT_LIMIT = 4
EXIT_LOCKED = 75  # EX_TEMPFAIL: "try again later", what cron users expect from a busy run
EXIT_SIGINT = 130  # 128 + the signal number, as a shell reports it
EXIT_SIGTERM = 143


class CrawlerError(Exception):
    """Base of every error raised by :mod:`crawler` outside the connection pool."""

    #: What ``crawler`` exits with when this error ends a command.
    exit_code: int = EXIT_FAILED


# --- 2: configuration -------------------------------------------------------------------------


class ConfigurationError(CrawlerError):
    """What was asked for (options, settings) cannot be done as given: a usage error."""

    exit_code = EXIT_USAGE


class SettingsError(ConfigurationError, ValueError):
    """A setting name is unknown or its value is not valid."""


# --- 3: could not start -----------------------------------------------------------------------


class CouldNotStart(CrawlerError):
    """The run could not start: the spider, its start requests, the database or the lock file.

    A database that fails mid-run ends the run with this code too: it cannot go on, and the
    next run resumes from what was committed.
    """

    exit_code = EXIT_COULD_NOT_START


class SpiderLoadError(CouldNotStart):
    """A spider could not be loaded."""


class SpiderNotFound(SpiderLoadError, LookupError):
    """No spider matches what was asked for."""


class SpiderStartError(CouldNotStart):
    """The spider's ``__init__`` or ``start_requests`` raised: the run could not start.

    The message is one line (``name: start_requests raised ValueError: ...``); the original
    exception is the ``__cause__`` and its traceback goes to the log at DEBUG.
    """

    def __init__(self, spider: str, stage: str, exc: BaseException) -> None:
        self.spider = spider
        self.stage = stage
        text = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        super().__init__(f"{spider}: {stage} raised {detail}")


class StorageError(CouldNotStart):
    """The crawl database cannot be opened or written (the message says why)."""


class LockFileError(CouldNotStart, OSError):
    """The lock file next to the database cannot be created or opened."""


# --- 75: locked -------------------------------------------------------------------------------


class LockedError(CrawlerError, RuntimeError):
    """Another live process holds the run lock of this database."""

    exit_code = EXIT_LOCKED

    def __init__(self, path: Path | str, holder_pid: int | None, since: float | None) -> None:
        self.path = path  # a str: a postgresql:// database (its lock lives in the server)
        self.holder_pid = holder_pid
        self.since = since
        who = f"pid {holder_pid}" if holder_pid is not None else "another process"
        when = ""
        if since is not None:
            when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since))
        super().__init__(f"another run ({who}{when}) holds the lock {path}")

    def __reduce__(self) -> Any:
        return (type(self), (self.path, self.holder_pid, self.since))


# --- 1: a command failed ----------------------------------------------------------------------


class HistoryError(CrawlerError):
    """The run history cannot be read (the message says why)."""


class NotACrawlDatabase(HistoryError):
    """A SQLite file with no ``runs`` table: ``crawler runs`` over ``data/`` passes it over."""


class ExportError(CrawlerError):
    """The export cannot be made: no such database or table, bad format, unwritable output."""


class RobotsDisallowed(CrawlerError):
    """``crawler shell``/``parse``: robots.txt keeps the spider off the URL asked for."""


class ServerError(CrawlerError, RuntimeError):
    """The site server of ``crawler bench`` could not be started."""


# --- values that are recorded, not raised out of a run ----------------------------------------


class InvalidURL(CrawlerError, ValueError):
    """A URL that cannot be crawled: malformed, or not http(s). ``reason`` says why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{reason}: {url[:200]!r}")
        self.url = url
        self.reason = reason


class SitemapError(CrawlerError, ValueError):
    """The body is not a sitemap we can read: malformed XML, wrong root, too large, bad gzip."""


class FormNotFound(CrawlerError, ValueError):
    """``Response.form()``: the page has no form matching the query, or no such button."""
