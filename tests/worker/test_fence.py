"""The worker's lease fence (crawler.worker.fence): no request is sent past ``Job.not_after``.

JobRunner in-process against a loopback site that records every request it receives, so
"not sent" is checked where it matters: on the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from crawler.messages import ROBOTS_CALLBACK, Job
from crawler.settings import Settings
from crawler.spider import Response, Spider
from crawler.urls import fingerprint, url_host
from crawler.worker.runner import JobRunner
from tests.kit.site import Site


class PageSpider(Spider):
    name = "pages"

    def parse(self, response: Response) -> Any:
        yield {"url": response.url}


@pytest.fixture
def host(site: Site) -> str:
    def slow(path: str) -> str:
        time.sleep(1.5)
        return "<html>slow</html>"

    return site.add_host("127.0.0.2", {"/": "<html>home</html>", "/slow": slow})


@pytest.fixture
def runner() -> Iterator[JobRunner]:
    worker = JobRunner(PageSpider(), Settings(timeout=5, per_host=1, robots=False))
    try:
        yield worker
    finally:
        worker.close()


def job(host: str, path: str, **kw: Any) -> Job:
    url = f"http://{host}{path}"
    return Job(fp=fingerprint(url), url=url, host=url_host(url), **kw)


@pytest.mark.timeout(30)
def test_a_job_past_its_deadline_is_not_sent(site: Site, host: str, runner: JobRunner) -> None:
    out = runner.process(job(host, "/", not_after=time.monotonic() - 0.001))
    assert (out.state, out.page, out.failures, out.stats) == ("lease_lost", None, (), {})
    robots = job(host, "/robots.txt", callback=ROBOTS_CALLBACK, not_after=time.monotonic())
    assert runner.process(robots).state == "lease_lost"
    assert site.requests == []


@pytest.mark.timeout(30)
def test_a_job_before_its_deadline_is_fetched(site: Site, host: str, runner: JobRunner) -> None:
    out = runner.process(job(host, "/", not_after=time.monotonic() + 30))
    assert out.state == "done" and out.page is not None and out.page.status == 200
    assert list(site.hits.elements()) == [(host, "/")]


@pytest.mark.timeout(30)
def test_waiting_for_a_pool_slot_ends_at_the_deadline_unsent(
    site: Site, host: str, runner: JobRunner
) -> None:
    # per_host=1: the slow request holds the host's only slot for 1.5 s.
    first = threading.Thread(target=runner.process, args=(job(host, "/slow"),))
    first.start()
    deadline = time.monotonic() + 5
    while not site.requests:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    began = time.monotonic()
    out = runner.process(job(host, "/", not_after=began + 0.3))
    waited = time.monotonic() - began
    first.join()
    assert out.state == "lease_lost"
    assert 0.25 <= waited < 1.2, waited  # gave up at the deadline, not when the slot freed
    assert [path for _h, path, _hd, _t in site.requests] == ["/slow"]
    # Without a deadline the same wait ends when the slot is free, and the request goes out.
    assert runner.process(job(host, "/")).state == "done"
    assert [path for _h, path, _hd, _t in site.requests] == ["/slow", "/"]
