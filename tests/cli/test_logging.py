"""What ``crawler run`` prints off a terminal (cron): each line once, and the log file."""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path

import pytest
from click.testing import Result

import crawler.cli
import crawler.engine.loop
from crawler.progress import Progress
from tests.kit.project import invoke, make_project
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

SPIDER = """
from crawler import Spider

class Slow(Spider):
    name = "slow"
    custom_settings = {"robots": False, "workers": 1, "timeout": 5, "retries": 0}

    def parse(self, response):
        yield {"url": response.url}
        yield from response.links()
"""
PROGRESS = re.compile(r"\d+ pages \([\d.]+/s\), \d+ items, \d+ errors, \d+ queued, \d+ in flight")


@pytest.fixture
def start(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A slow chain of 8 pages; progress is reported every 0.2 s instead of every 10 s."""
    monkeypatch.chdir(make_project(tmp_path, {"slow.py": SPIDER}))
    monkeypatch.setattr(crawler.engine.loop, "LOG_EVERY", 0.2)
    monkeypatch.setattr(crawler.cli, "Progress", functools.partial(Progress, log_every=0.2))

    def serve(path: str) -> tuple[int, dict[str, str], str]:
        time.sleep(0.15)
        i = int(path.strip("/p") or 0)
        return 200, {}, f'<a href="/p{i + 1}">next</a>' if i < 7 else "end"

    host = site.add_host("127.0.0.2", {"*": serve})
    return f"http://{host}/p0"


def run_slow(*args: str) -> Result:
    """``crawler run slow ARGS...`` in this process."""
    return invoke("run", "slow", *args)


@pytest.mark.timeout(60)
def test_off_a_terminal_each_line_once_and_the_full_log_in_the_file(
    start: str, tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "slow.log"
    result = run_slow("-a", f"start_urls={start}", "--log-file", str(log))
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "\x1b" not in err and "\r" not in err
    lines = err.strip().splitlines()
    progress = [line for line in lines if PROGRESS.search(line)]
    assert progress and all(line.startswith("INFO: ") for line in progress)
    # One summary line, the last one; the engine's own is DEBUG (log file only).
    assert [line for line in lines if "(exit 0)" in line] == [lines[-1]]
    assert lines[-1].startswith("slow: finished (exit 0): 8 pages, 8 items, 0 errors in ")
    text = log.read_text()
    assert re.search(r"DEBUG crawler: slow: finished \(exit 0\): 8 pages", text)
    engine_lines = re.findall(r"DEBUG crawler: " + PROGRESS.pattern, text)
    # Were the engine's lines on stderr too, there would be about twice as many there.
    assert 0 < len(progress) <= len(engine_lines) + 1
    assert "crawler.progress" not in text  # the file gets the engine's progress line only


@pytest.mark.timeout(60)
def test_quiet_prints_only_the_summary(start: str) -> None:
    result = run_slow("-a", f"start_urls={start}", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("slow: finished (exit 0): 8 pages")
