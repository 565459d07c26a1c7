"""The ``crawler`` command: parse arguments, build settings, call the library, map errors.

No crawling logic lives here. Exit codes are the table in :mod:`crawler.errors` (and
docs/cli.md). ``run`` passes the engine's own exit code through; every command lets a
:class:`~crawler.errors.CrawlerError` propagate, and :class:`_Command` turns it into that
error's ``exit_code`` and its one-line message, whatever the error: the tree is the mapping.

What ``run`` prints (all on stderr): log records at INFO and up (WARNING and up with
``--quiet``), progress (a status line on a terminal, an INFO line every 10 s elsewhere, none
with ``--quiet``) and, always, one summary line at the end. ``--log-file`` gets DEBUG and up
from the library, which includes the engine's own progress and summary lines.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from crawler import __version__, http
from crawler.errors import (
    EXIT_LOCKED,
    EXIT_USAGE,
    CrawlerError,
    ServerError,
    SettingsError,
    SpiderLoadError,
)
from crawler.loader import discover, load_spider, spider_file
from crawler.progress import Progress, StatusAwareHandler, format_summary
from crawler.settings import (
    DEFAULT_USER_AGENT,
    Settings,
    parse_duration,
    resolve_settings,
)
from crawler.spider import Spider
from crawler.store.changes import FORMATS, format_changes, read_changes
from crawler.store.export import export_table
from crawler.store.history import format_run, format_runs, read_every_run, read_runs

__all__ = ["build_settings", "cli", "default_db", "main", "parse_pairs"]


class _Command(click.Command):
    """A command that ends with the exit code and the one-line message of a ``CrawlerError``.

    A configuration error is a usage error (click prints the usage and exits 2); 75 is "try
    again later", not a failure, so the lock's own line is printed without ``Error:``; anything
    else is ``Error: message`` and the error's code.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrawlerError as exc:
            if exc.exit_code == EXIT_USAGE:
                raise click.UsageError(str(exc), ctx) from None
            click.echo(str(exc) if exc.exit_code == EXIT_LOCKED else f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


class _Group(click.Group):
    command_class = _Command


DATA_DIR = Path("data")


# --db (or CRAWLER_DB): a SQLite file, or a postgresql:// URL (crawler.store.open_store).
_DB_HELP = "SQLite file or postgresql:// URL (env CRAWLER_DB) [data/NAME.db]"


def default_db(name: str) -> Path:
    """Where a spider's database lives unless ``--db`` says otherwise: ``data/NAME.db``."""
    return DATA_DIR / f"{name}.db"


def _history_db(name: str | None, db_path: str | None) -> str | Path:
    if db_path:
        return db_path  # a str: a postgresql:// URL must keep its //
    if not name:
        raise click.UsageError("give a spider NAME or --db PATH")
    return default_db(name)


def parse_pairs(values: Iterable[str], option: str) -> dict[str, str]:
    """``["k=v", ...]`` from repeated ``-a``/``-s`` options; a usage error when malformed."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise click.UsageError(f"{option} expects NAME=VALUE, got {value!r}")
        pairs[key] = rest
    return pairs


def build_settings(
    spider_cls: type[Spider],
    overrides: Mapping[str, object] = {},
    options: Mapping[str, object | None] = {},
) -> Settings:
    """Defaults < the spider's attributes and ``custom_settings`` < ``-s`` < explicit options.

    ``options`` holds the values of the options that mirror settings (``--workers``...);
    ``None`` means the option was not given.
    """
    # Spider attributes that double as settings; None means the spider leaves it to them.
    mirrored = {"user_agent": spider_cls.user_agent, "recrawl_after": spider_cls.recrawl_after}
    spider_layer = {k: v for k, v in mirrored.items() if v is not None}
    custom = spider_cls.custom_settings or {}
    given = {k: v for k, v in options.items() if v is not None}
    return resolve_settings(None, spider_layer, custom, overrides, given)


def _setup_logging(quiet: bool, log_file: str | None, progress: Progress | None) -> None:
    logger = logging.getLogger("crawler")
    for handler in [h for h in logger.handlers if getattr(h, "_crawler_cli", False)]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG if log_file else logging.INFO)
    logger.propagate = False
    console = StatusAwareHandler(progress, sys.stderr)
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        )
        # The engine logs its own progress line (DEBUG) every 10 s: the file needs no second one.
        file_handler.addFilter(lambda record: record.name != "crawler.progress")
        handlers.append(file_handler)
    for handler in handlers:
        handler._crawler_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def _settings_epilog() -> str:
    lines = ["\b", "Settings for -s NAME=VALUE (default: meaning):"]
    for name, default, doc in Settings.describe():
        lines.append(f"  {name} ({default!r}): {doc}")
    return "\n".join(lines)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crawler")
def cli() -> None:
    """A multiprocess web crawler: spiders in, SQLite out."""


@cli.command(epilog=_settings_epilog())
@click.argument("target", metavar="NAME_OR_FILE")
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False), envvar="CRAWLER_DB", help=_DB_HELP
)
@click.option("-a", "spider_args", multiple=True, metavar="NAME=VALUE", help="spider argument")
@click.option("-s", "set_args", multiple=True, metavar="NAME=VALUE", help="setting (see below)")
@click.option("--workers", type=click.IntRange(min=0), help="worker processes (0: one per CPU)")
@click.option("--max-pages", type=click.IntRange(min=0), help="stop after N pages")
@click.option("--max-runtime", metavar="DURATION", help="stop after e.g. 30s, 15m, 2h")
@click.option("--recrawl-after", metavar="DURATION", help="revisit pages older than this")
@click.option("--fresh", is_flag=True, help="ignore what the database holds; start over")
@click.option("--quiet", "-q", is_flag=True, help="only warnings, errors and the summary")
@click.option("--log-file", type=click.Path(dir_okay=False), help="write the full log here")
@click.option("--spiders-dir", default="spiders", show_default=True, help="where spiders live")
def run(
    target: str,
    db_path: str | None,
    spider_args: Sequence[str],
    set_args: Sequence[str],
    workers: int | None,
    max_pages: int | None,
    max_runtime: str | None,
    recrawl_after: str | None,
    fresh: bool,
    quiet: bool,
    log_file: str | None,
    spiders_dir: str,
) -> None:
    """Crawl with the spider named NAME (in --spiders-dir) or defined in FILE.py."""
    kwargs = parse_pairs(spider_args, "-a")
    overrides = parse_pairs(set_args, "-s")
    options = {
        "workers": workers,
        "max_pages": max_pages,
        "max_runtime": max_runtime,
        "recrawl_after": recrawl_after,
    }
    # Usage errors first, before importing any spider code.
    resolve_settings(None, overrides, {k: v for k, v in options.items() if v is not None})
    spider_cls = load_spider(target, path=spiders_dir)
    try:
        settings = build_settings(spider_cls, overrides, options)
    except SettingsError as exc:  # e.g. a bad value in the spider's custom_settings: whose?
        raise SettingsError(f"{spider_cls.name}: {exc}") from exc
    # --quiet: no status line and no periodic progress logs; the summary is still printed.
    progress = Progress(sys.stderr) if not quiet else None
    _setup_logging(quiet, log_file, progress if progress and progress.tty else None)
    path = db_path or default_db(spider_cls.name)  # a str: a URL must keep its //

    from crawler import engine

    try:
        result = engine.crawl(
            spider_cls,
            settings=settings,
            db_path=path,
            spider_kwargs=kwargs,
            fresh=fresh,
            on_progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()
    click.echo(
        format_summary(spider_cls.name, result.finish_reason, result.exit_code, result.stats),
        err=True,
    )
    sys.exit(result.exit_code)


@cli.command("list")
@click.option("--spiders-dir", default="spiders", show_default=True, help="where spiders live")
def list_spiders(spiders_dir: str) -> None:
    """List the spiders in --spiders-dir, and the modules that failed to import."""
    spiders, errors = discover(spiders_dir)
    rows = [(name, spiders[name].__qualname__, spider_file(spiders[name])) for name in spiders]
    widths = [max((len(row[i]) for row in rows), default=0) for i in (0, 1)]
    for name, qualname, file in sorted(rows):
        click.echo(f"{name:<{widths[0]}}  {qualname:<{widths[1]}}  {file}")
    for file, message in errors:
        click.echo(f"failed: {file}: {message}", err=True)
    if not spiders:
        if errors:
            raise SpiderLoadError(f"no spiders could be loaded from {spiders_dir}/")
        click.echo(f"no spiders in {spiders_dir}/", err=True)


def _read_history(name: str | None, db_path: str | None) -> list[dict[str, Any]]:
    """The runs asked for: of NAME, of --db, or (neither given) of every database in data/."""
    if name is None and db_path is None:
        return read_every_run(DATA_DIR)
    return read_runs(_history_db(name, db_path), spider=name)


@cli.command()
@click.argument("name", required=False)
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False), envvar="CRAWLER_DB", help=_DB_HELP
)
def runs(name: str | None, db_path: str | None) -> None:
    """List the runs of spider NAME (or every run in --db), newest first.

    With neither, the runs of every spider database under data/, in one table.
    """
    rows = _read_history(name, db_path)
    if not rows:
        where = f" of {name}" if name else "" if db_path else f" in {DATA_DIR}/"
        click.echo(f"no runs{where}", err=True)
        return
    click.echo(format_runs(rows))


@cli.command()
@click.argument("name", required=False)
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False), envvar="CRAWLER_DB", help=_DB_HELP
)
@click.option("--run", "run_id", type=int, metavar="ID", help="this run [the latest]")
def stats(name: str | None, db_path: str | None, run_id: int | None) -> None:
    """Show one run of spider NAME in detail: the latest, or --run ID.

    With neither NAME nor --db, the latest run of any spider database under data/.
    """
    if run_id is not None and name is None and db_path is None:
        raise click.UsageError(
            "--run ID needs a spider NAME or --db PATH (run ids are per database)"
        )
    rows = _read_history(name, db_path)
    if run_id is not None:
        rows = [row for row in rows if row["id"] == run_id]
    if not rows:
        which = f"run {run_id}" if run_id is not None else "runs"
        where = f" of {name}" if name else "" if db_path else f" in {DATA_DIR}/"
        raise click.ClickException(f"no {which}{where}")
    click.echo(format_run(rows[-1]))


@cli.command()
@click.argument("name", required=False)
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False), envvar="CRAWLER_DB", help=_DB_HELP
)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option("--table", default="items", show_default=True, help="items, pages, errors, runs...")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="file [stdout]")
@click.option(
    "--blobs", type=click.Choice(["base64", "skip"]), default="base64", show_default=True,
    help="BLOB columns (pages.body) as base64 text, or left out",
)  # fmt: skip
def export(
    name: str | None, db_path: str | None, fmt: str, table: str, output: str | None, blobs: str
) -> None:
    """Write a table of spider NAME's database as JSON Lines or CSV.

    With -o the file is written under a temporary name and renamed: never half-written.
    """
    path = _history_db(name, db_path)
    try:
        count = export_table(
            path, table, fmt, output, blobs=blobs,  # type: ignore[arg-type]
            stream=None if output else sys.stdout,
        )  # fmt: skip
    except BrokenPipeError:  # `crawler export news | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    if output:
        click.echo(f"{count} rows of {table} written to {output}", err=True)


@cli.command()
@click.argument("name")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="SQLite file [data/NAME.db]")
@click.option("--since-run", type=int, metavar="N", help="changes of the runs after run N")
@click.option("--since", metavar="DURATION", help="changes of the runs started e.g. 2d ago")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def changes(
    name: str, db_path: str | None, since_run: int | None, since: str | None, fmt: str
) -> None:
    """What spider NAME's items did: new, changed (old -> new) and removed.

    The latest run's changes, or those of the runs after --since-run N, or of the runs
    started within --since (e.g. 2d). Needs a spider with item_key (docs/changes.md).
    """
    if since_run is not None and since is not None:
        raise click.UsageError("give --since-run or --since, not both")
    ago = None
    if since is not None:
        try:
            ago = parse_duration(since)
        except SettingsError as exc:
            raise click.UsageError(f"--since: {exc}") from None
    path = _history_db(name, db_path)
    rows = read_changes(path, name, since_run=since_run, since=ago)
    click.echo(format_changes(rows, fmt), nl=False)
    if not rows and fmt == "table":
        click.echo("no changes", err=True)


def _parse_header_options(values: Iterable[str]) -> dict[str, str]:
    headers = {"User-Agent": DEFAULT_USER_AGENT}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise click.UsageError(f"-H expects 'Name: value', got {value!r}")
        headers[name.strip()] = rest.strip()
    return headers


@cli.command()
@click.argument("url")
@click.option("-H", "--header", "header_args", multiple=True, metavar="'NAME: VALUE'")
@click.option("--timeout", default="30", show_default=True, metavar="SECONDS")
@click.option("--include/--no-include", default=True, help="print status line and headers")
@click.option("--max-redirects", type=click.IntRange(min=0), default=10, show_default=True)
def fetch(
    url: str, header_args: Sequence[str], timeout: str, include: bool, max_redirects: int
) -> None:
    """Fetch one URL through the connection pool; print status, headers and body."""
    headers = _parse_header_options(header_args)
    seconds = parse_duration(timeout)
    # sys.stdout.buffer, not click.get_binary_stream (deprecated in click 8.5); CliRunner's
    # stand-in stdout has a .buffer too, so tests capture the bytes.
    out = sys.stdout.buffer
    # The pool's default retries (a few, no backoff) and at most --max-redirects hops.
    retries = http.Retry(3, redirect=max_redirects)
    try:
        pool = http.connection_from_url(url, timeout=seconds)
        try:
            response = pool.urlopen(
                "GET", _path_and_query(url), headers=headers, retries=retries, redirect=True,
                preload_content=False,
            )  # fmt: skip
            if include:
                version = f"HTTP/{response.version // 10}.{response.version % 10}"
                head = [f"{version} {response.status} {response.reason or ''}".rstrip()]
                head += [f"{k}: {v}" for k, v in response.headers.iteritems()]
                out.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace"))
            for chunk in response.stream(64 * 1024):
                out.write(chunk)
            out.flush()
            response.release_conn()
        finally:
            pool.close()
    except http.HTTPError as exc:
        reason = getattr(exc, "reason", None)
        raise click.ClickException(f"{url}: {reason or exc}") from None


def _path_and_query(url: str) -> str:
    return http.parse_url(url).request_uri


@cli.command()
@click.option("--pages", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--hosts", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, help="0: one per CPU")
@click.option("--per-host", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--server",
    type=click.Choice(["auto", "nginx", "python"]),
    default="auto",
    show_default=True,
    help="auto: nginx when installed, else a Python server",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="keep the crawl's database here (default: a temporary file)",
)
def bench(
    pages: int, hosts: int, workers: int, per_host: int, server: str, db_path: Path | None
) -> None:
    """Serve a generated site on loopback, crawl it with the real engine, print pages/s.

    Exits 0 when every generated page was stored exactly once with its item, else 1.
    """
    from crawler.bench import run_bench

    try:
        report = run_bench(
            pages=pages,
            hosts=hosts,
            workers=workers or None,
            per_host=per_host,
            server=server,
            db_path=db_path,
        )
    except ServerError as exc:  # say which server could not start
        raise ServerError(f"bench server: {exc}") from exc
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(0 if report.get("ok") else 1)


# --- writing spiders fast: shell, parse, reparse (the library side: crawler.devtools) -------


def _dev_spider(
    name: str | None, spiders_dir: str, spider_args: Sequence[str], set_args: Sequence[str]
) -> tuple[Spider, Settings]:
    """The spider (a bare ``Spider`` without a name) and its settings, as ``run`` builds them."""
    kwargs = parse_pairs(spider_args, "-a")
    overrides = parse_pairs(set_args, "-s")
    spider_cls = load_spider(name, path=spiders_dir) if name else Spider
    try:
        settings = build_settings(spider_cls, overrides)
    except SettingsError as exc:
        raise SettingsError(f"{spider_cls.name or 'shell'}: {exc}") from exc
    return spider_cls(**kwargs), settings


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


_spider_option = click.option(
    "--spiders-dir", default="spiders", show_default=True, help="where spiders live"
)
_a_option = click.option(
    "-a", "spider_args", multiple=True, metavar="NAME=VALUE", help="spider argument"
)
_s_option = click.option("-s", "set_args", multiple=True, metavar="NAME=VALUE", help="setting")


@cli.command()
@click.argument("url")
@click.option("--spider", "spider_name", metavar="NAME", help="fetch with this spider's settings")
@click.option("-c", "code", metavar="CODE", help="run CODE instead of an interactive shell")
@_a_option
@_s_option
@_spider_option
def shell(
    url: str,
    spider_name: str | None,
    code: str | None,
    spider_args: Sequence[str],
    set_args: Sequence[str],
    spiders_dir: str,
) -> None:
    """Fetch URL and open a Python shell with response, request, spider, fetch(url), view().

    Never starts a crawl and writes no database. IPython is used when installed.
    """
    from crawler import devtools

    spider, settings = _dev_spider(spider_name, spiders_dir, spider_args, set_args)
    # Cookies: the spider's cookie jar plugs in as Fetcher(settings, extra_headers=...).
    fetcher = devtools.Fetcher(settings)
    try:
        namespace = devtools.shell_namespace(spider, fetcher, url, echo=_echo_err)
        ok = devtools.interact(namespace, code)
    finally:
        fetcher.close()
    sys.exit(0 if ok else 1)


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


@cli.command("parse")
@click.argument("url")
@click.option("--spider", "spider_name", metavar="NAME", required=True)
@click.option("--callback", metavar="METHOD", help="the callback to run [parse]")
@click.option("--depth", type=click.IntRange(min=1), default=1, show_default=True,
              help="levels of pages to run callbacks on (1: URL only)")  # fmt: skip
@_a_option
@_s_option
@_spider_option
def parse_command(
    url: str,
    spider_name: str,
    callback: str | None,
    depth: int,
    spider_args: Sequence[str],
    set_args: Sequence[str],
    spiders_dir: str,
) -> None:
    """Run a callback on URL and print the items and requests it yields; writes nothing.

    Exits 1, with the traceback, when the callback raises.
    """
    from crawler import devtools

    spider, settings = _dev_spider(spider_name, spiders_dir, spider_args, set_args)
    fetcher = devtools.Fetcher(settings)
    try:
        results = devtools.parse_page(spider, fetcher, url, callback=callback, depth=depth)
    finally:
        fetcher.close()
    failed = False
    for result in results:
        click.echo(f"# {result.url} (callback {result.callback}, depth {result.depth})")
        if result.skipped:
            click.echo(f"{result.url}: {result.skipped}", err=True)
        for item in result.items:
            click.echo(f"item {_json(item)}")
        for req in result.requests:
            via = f" -> {req.callback}" if req.callback else ""
            click.echo(f"request {req.method} {req.url}{via}")
        for error in result.errors:
            failed = True
            click.echo(f"Error: {result.url}: {error.message}", err=True)
            if error.traceback:
                click.echo(error.traceback.rstrip(), err=True)
    sys.exit(1 if failed else 0)


@cli.command()
@click.argument("name")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="SQLite file [data/NAME.db]")
@click.option("--run", "run_id", type=int, metavar="N", help="the run whose bodies [the latest]")
@click.option("--write", is_flag=True, help="store the new items as a new run")
@_a_option
@_s_option
@_spider_option
def reparse(
    name: str,
    db_path: str | None,
    run_id: int | None,
    write: bool,
    spider_args: Sequence[str],
    set_args: Sequence[str],
    spiders_dir: str,
) -> None:
    """Run spider NAME's current callbacks over the bodies a run stored, offline; print the
    items added, removed and changed. Exits 1 when a callback raised."""
    from crawler import devtools

    spider, settings = _dev_spider(name, spiders_dir, spider_args, set_args)
    path = db_path or default_db(spider.name)
    report = devtools.reparse(spider, settings, path, run_id=run_id, write=write)
    for change in report.changes:
        if change.kind == "changed":
            fields = ", ".join(
                f"{k}: {_json(old)} -> {_json(new)}" for k, (old, new) in change.fields().items()
            )
            click.echo(f"changed {change.page_url} {fields}")
        else:
            click.echo(f"{change.kind} {change.page_url} {_json(change.new or change.old)}")
    for error in report.errors:
        click.echo(f"Error: {error.url}: {error.message}", err=True)
        if error.traceback:
            click.echo(error.traceback.rstrip(), err=True)
    counts = {k: sum(c.kind == k for c in report.changes) for k in ("added", "removed", "changed")}
    line = (
        f"reparse of run {report.run_id}: {report.pages} pages, {report.items} items;"
        f" {counts['added']} added, {counts['removed']} removed, {counts['changed']} changed"
    )
    if report.written_run is not None:
        line += f"; stored as run {report.written_run}"
    click.echo(line, err=True)
    sys.exit(1 if report.errors else 0)


def main(argv: Sequence[str] | None = None) -> Any:
    """The console script ``crawler``."""
    return cli.main(args=list(argv) if argv is not None else None, prog_name="crawler")
