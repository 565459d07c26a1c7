"""The ``crawler`` command through click's CliRunner, real loopback servers and a subprocess."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from crawler import Spider
from crawler.cli import build_settings
from crawler.settings import DEFAULT_USER_AGENT
from tests.kit.project import REPO, invoke, make_project, subprocess_env
from tests.kit.site import Site

SPIDER = """
from crawler import Spider

class {cls}(Spider):
    name = "{name}"
    custom_settings = {custom}

    def parse(self, response):
        yield {{"url": response.url, "title": response.css("title::text").get()}}
        yield from response.links()
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project folder as the working directory: a spider and a broken module."""
    spiders = {
        "site.py": SPIDER.format(cls="SiteSpider", name="site", custom="{}"),
        "broken.py": "raise ImportError('no such thing')\n",
    }
    monkeypatch.chdir(make_project(tmp_path, spiders))
    return tmp_path


def html(title: str, *links: str) -> str:
    anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
    return f"<html><head><title>{title}</title></head><body>{anchors}</body></html>"


# --- list -----------------------------------------------------------------------------------


def test_list_shows_spiders_and_reports_broken_modules(project: Path) -> None:
    result = invoke("list")
    assert result.exit_code == 0
    assert result.stdout.split()[:2] == ["site", "SiteSpider"]
    assert str(project / "spiders" / "site.py") in result.stdout
    assert "failed:" in result.stderr and "broken.py:1: ImportError: no such thing" in result.stderr


def test_list_other_folder_and_missing_or_empty_folder(project: Path) -> None:
    (project / "other").mkdir()
    result = invoke("list", "--spiders-dir", "other")
    assert result.exit_code == 0 and "no spiders in other/" in result.stderr
    result = invoke("list", "--spiders-dir", "missing")
    assert result.exit_code == 3 and "no such folder" in result.stderr


def test_list_as_a_real_subprocess(project: Path) -> None:
    env = subprocess_env()
    proc = subprocess.run(
        [sys.executable, "-m", "crawler", "list"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("site ")
    assert "broken.py" in proc.stderr


# --- run: usage and start-up errors (no crawl needed) ---------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "per_host"], "-s expects NAME=VALUE"),
        (["-s", "=3"], "-s expects NAME=VALUE"),
        (["-s", "no_such_setting=1"], "unknown setting 'no_such_setting'"),
        (["-s", "per_host=many"], "not an integer"),
        (["-s", "per_host=0"], "per_host must be at least 1"),
        (["-a", "novalue"], "-a expects NAME=VALUE"),
        (["--max-runtime", "soon"], "not a duration"),
        (["--recrawl-after", "-1h"], "not a duration"),
        (["--workers", "-1"], "-1"),
    ],
)
def test_run_usage_errors_exit_2(project: Path, args: list[str], message: str) -> None:
    result = invoke("run", "site", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_usage_errors_come_before_loading_the_spider(project: Path) -> None:
    result = invoke("run", "nope", "-s", "bogus=1")
    assert result.exit_code == 2


def test_run_unknown_spider_exits_3_with_one_line(project: Path) -> None:
    result = invoke("run", "nope")
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no spider named 'nope'" in lines[0] and "found: site" in lines[0]
    assert "failed to import" in lines[0]


def test_run_broken_file_exits_3(project: Path) -> None:
    result = invoke("run", "spiders/broken.py")
    assert result.exit_code == 3
    assert "ImportError: no such thing" in result.stderr
    result = invoke("run", "missing.py")
    assert result.exit_code == 3 and "no such spider file" in result.stderr


def test_bad_custom_settings_are_a_configuration_error(project: Path) -> None:
    (project / "spiders" / "bad.py").write_text(
        SPIDER.format(cls="Bad", name="bad", custom='{"delay": "soonish"}')
    )
    result = invoke("run", "bad")
    assert result.exit_code == 2 and "delay" in result.stderr


# --- settings precedence --------------------------------------------------------------------


class Layered(Spider):
    name = "layered"
    user_agent = "layered-bot/1"
    custom_settings = {"per_host": 4, "delay": "2s", "max_pages": 10}


def test_build_settings_precedence() -> None:
    assert build_settings(Spider).user_agent == DEFAULT_USER_AGENT
    s = build_settings(Layered)
    assert (s.per_host, s.delay, s.max_pages, s.user_agent) == (4, 2.0, 10, "layered-bot/1")
    s = build_settings(Layered, {"per_host": "3", "max_pages": "20", "user_agent": "cli/1"})
    assert (s.per_host, s.max_pages, s.user_agent, s.delay) == (3, 20, "cli/1", 2.0)
    s = build_settings(
        Layered, {"max_pages": "20"}, {"max_pages": 30, "workers": None, "max_runtime": "15m"}
    )
    assert (s.max_pages, s.workers, s.max_runtime) == (30, 0, 900.0)


def test_recrawl_after_spider_attribute_is_a_setting() -> None:
    class Recrawl(Spider):
        name = "recrawl"
        recrawl_after = "1d"

    assert build_settings(Recrawl).recrawl_after == 86400.0
    assert build_settings(Recrawl, {}, {"recrawl_after": "2h"}).recrawl_after == 7200.0


# --- run: real crawls -----------------------------------------------------------------------


def serve_site(site: Site) -> str:
    """Three linked pages (and a link the crawl must skip) on 127.0.0.1; the start URL."""
    host = site.add_host(
        "127.0.0.1",
        {
            "/robots.txt": (404, {}, ""),
            "/": html("Home", "/a", "/b", "mailto:x@y"),
            "/a": html("A", "/b", "/"),
            "/b": html("B"),
        },
    )
    return f"http://{host}/"


def items(db: Path) -> dict[str, str]:
    rows = sqlite_utils.Database(db).table("items").rows
    return {row["url"]: row["title"] for row in rows}


@pytest.mark.slow
def test_run_by_name_crawls_into_the_default_db(project: Path, site: Site) -> None:
    start = serve_site(site)
    result = invoke("run", "site", "-s", f"start_urls={start}", "--workers", "1")
    # start_urls is not a setting: that is a usage error; spider arguments go through -a
    assert result.exit_code == 2
    result = invoke("run", "site", "-a", f"start_urls={start}", "--workers", "1", "-q")
    assert result.exit_code == 0, result.output
    db = project / "data" / "site.db"
    assert items(db) == {start: "Home", start + "a": "A", start + "b": "B"}
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("site: finished (exit 0): 3 pages, 3 items, 0 errors in ")
    assert "INFO" not in result.stderr  # --quiet
    run = next(iter(sqlite_utils.Database(db).table("runs").rows))
    assert run["exit_code"] == 0


@pytest.mark.slow
def test_run_file_with_db_option_log_file_and_page_limit(
    project: Path, site: Site, tmp_path: Path
) -> None:
    start = serve_site(site)
    file = project / "elsewhere" / "one.py"
    file.parent.mkdir()
    file.write_text(SPIDER.format(cls="One", name="one", custom='{"robots": False}'))
    db = tmp_path / "out" / "one.db"
    log = tmp_path / "logs" / "one.log"
    result = invoke(
        "run", str(file), "--db", str(db), "-a", f"start_urls={start}", "--max-pages", "1",
        "--workers", "1", "--log-file", str(log),
    )  # fmt: skip
    assert result.exit_code == 4, result.output  # stopped by a limit with work left
    assert list(items(db)) == [start]
    assert "exit 4" in result.stderr.strip().splitlines()[-1]
    assert log.read_text().strip(), "the log file gets the full log"
    assert not (project / "data").exists()


@pytest.mark.slow
def test_run_as_a_real_subprocess(project: Path, site: Site) -> None:
    start = serve_site(site)
    env = subprocess_env()
    proc = subprocess.run(
        [sys.executable, "-m", "crawler", "run", "site", "-a", f"start_urls={start}",
         "--workers", "1", "-s", "robots=false"],
        cwd=project, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr  # not a terminal
    assert "site: finished (exit 0): 3 pages" in proc.stderr
    assert len(items(project / "data" / "site.db")) == 3


# --- fetch ----------------------------------------------------------------------------------


def test_fetch_prints_status_headers_and_body(site: Site) -> None:
    host = site.add_host("127.0.0.1", {"/path?q=1": (201, {"X-Reply": "yes"}, '{"seen": 1}')})
    result = invoke("fetch", f"http://{host}/path?q=1", "-H", "X-Test: hello")
    assert result.exit_code == 0, result.output
    head, _, body = result.stdout_bytes.decode().partition("\r\n\r\n")
    assert re.fullmatch(r"HTTP/1\.[01] 201 Created", head.splitlines()[0])
    assert "X-Reply: yes" in head.splitlines()
    assert json.loads(body) == {"seen": 1}
    [(_, path, headers, _)] = site.requests
    assert path == "/path?q=1"
    assert (headers["x-test"], headers["user-agent"]) == ("hello", DEFAULT_USER_AGENT)


def test_fetch_no_include_follows_redirects_and_keeps_binary(site: Site) -> None:
    payload = bytes(range(256))
    host = site.add_host(
        "127.0.0.1",
        {
            "/old": (302, {"Location": "/new"}, ""),
            "/new": (200, {"Content-Type": "image/png"}, payload),
        },
    )
    result = invoke("fetch", "--no-include", f"http://{host}/old")
    assert result.exit_code == 0
    assert result.stdout_bytes == payload


def test_fetch_user_agent_can_be_replaced(site: Site) -> None:
    host = site.add_host("127.0.0.1", {"/": (200, {"Content-Type": "text/plain"}, "ok")})
    result = invoke("fetch", "--no-include", f"http://{host}/", "-H", "User-Agent: me/2")
    assert result.stdout == "ok"
    [(_, _, headers, _)] = site.requests
    assert headers["user-agent"] == "me/2"


def test_fetch_errors_are_one_line_exit_1() -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = invoke("fetch", f"http://127.0.0.1:{port}/", "--timeout", "2s")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "refused" in result.stderr.lower() or "connect" in result.stderr.lower()


def test_fetch_too_many_redirects(site: Site) -> None:
    host = site.add_host("127.0.0.1", {"/loop": (302, {"Location": "/loop"}, "")})
    result = invoke("fetch", f"http://{host}/loop", "--max-redirects", "2")
    assert result.exit_code == 1 and "redirect" in result.stderr


@pytest.mark.parametrize(
    "args", [["-H", "no colon"], ["--timeout", "later"], ["--max-redirects", "-1"]]
)
def test_fetch_usage_errors(args: list[str]) -> None:
    assert invoke("fetch", "http://127.0.0.1:9/", *args).exit_code == 2


def test_fetch_malformed_url_exit_1() -> None:
    result = invoke("fetch", "http://exa mple/")
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")


# --- bench, help, version -------------------------------------------------------------------


@pytest.mark.slow
def test_bench_delegates_to_benchsite() -> None:
    result = invoke("bench", "--pages", "30", "--hosts", "2", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "pages/s" in result.output


def test_help_lists_commands_and_settings() -> None:
    result = invoke("--help")
    for command in ("run", "list", "fetch", "bench"):
        assert command in result.stdout
    run_help = invoke("run", "--help").stdout
    assert "max_body_size" in run_help and "--max-runtime" in run_help
    assert invoke("--version").stdout.strip().endswith("0.1.0")


def test_python_dash_m_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crawler", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "fetch" in proc.stdout


def test_spider_demo_example_is_listed() -> None:
    root = REPO
    result = invoke("list", "--spiders-dir", str(root / "spiders"))
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"demo", "catalog"} <= set(names)


def test_demo_spider_needs_a_start_url() -> None:
    from crawler.loader import load_spider

    root = REPO
    demo = load_spider("demo", path=root / "spiders")
    with pytest.raises(ValueError, match="start_url"):
        list(demo().start_requests())
    spider = demo(start_url="http://127.0.0.1:8000/")
    assert list(spider.start_requests()) == ["http://127.0.0.1:8000/"]
    assert spider.allows("127.0.0.1") and not spider.allows("example.org")


def test_docs_cli_lists_every_setting_and_exit_code() -> None:
    from crawler.settings import Settings

    text = (REPO / "docs" / "cli.md").read_text()
    for name, _, _ in Settings.describe():
        assert f"| `{name}` |" in text, name
    for code in (0, 1, 2, 3, 4, 75, 130, 143):
        assert f"| {code} |" in text, code
