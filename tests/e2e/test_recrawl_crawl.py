"""Incremental recrawl in real crawls: conditional requests, unchanged pages, recrawl_after
(on both backends: ``crawl_db``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from tests.kit.crawl import TitleSpider, page, rows
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

FAST = Settings(workers=2, timeout=5, retries=1, robots=False)
N = 6


class StaleAfterNoTime(TitleSpider):
    recrawl_after = "0s"  # a spider attribute: every stored page is due


class ParseUnchanged(TitleSpider):
    parse_unchanged = True


def build(site: Site, validators: bool) -> tuple[str, dict[str, Any]]:
    """A home page linking to /p0../pN-1; with validators every page sends ETag and
    Last-Modified (the fixture answers a matching conditional GET with 304)."""
    routes: dict[str, Any] = {}
    titles = {"/": "home", **{f"/p{i}": f"p{i}" for i in range(N)}}

    def route(path: str) -> Any:
        title = titles[path]
        headers = {}
        if validators:
            headers = {"ETag": f'"{title}"', "Last-Modified": "Wed, 01 May 2024 10:00:00 GMT"}
        links = [f"/p{i}" for i in range(N)] if path == "/" else ["/"]
        return 200, headers, page(title, links)

    for path in titles:
        routes[path] = route
    host = site.add_host("127.0.0.2", routes)
    return f"http://{host}/", titles


def run_requests(site: Site, since: int) -> list[tuple[str, dict[str, str]]]:
    return [(path, headers) for _h, path, headers, _t in site.requests[since:]]


@pytest.mark.timeout(60)
def test_second_run_on_an_unchanged_site_sends_only_conditional_requests(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    start, titles = build(site, validators=True)
    db = crawl_db("c")
    kwargs = {"start_urls": start}
    first = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs=kwargs)
    assert first.exit_code == 0 and first.stats["pages"] == N + 1
    before = rows(db, "SELECT page_url, title, run_id FROM items ORDER BY page_url")
    bodies = rows(db, "SELECT url, body FROM pages ORDER BY url")
    mark = len(site.requests)

    second = crawl(
        TitleSpider, settings=FAST.replace(recrawl_after=0), db_path=db, spider_kwargs=kwargs
    )

    assert second.exit_code == 0, second
    sent = run_requests(site, mark)
    assert len(sent) == N + 1
    for path, headers in sent:
        assert headers.get("if-none-match") == f'"{titles[path]}"', (path, headers)
        assert headers.get("if-modified-since") == "Wed, 01 May 2024 10:00:00 GMT"
    # Every answer was a 304 (no body downloaded); pages and items are what run 1 stored.
    assert second.stats["by_status"] == {"304": N + 1}
    assert second.stats["unchanged"] == N + 1
    assert second.stats["items"] == 0
    assert rows(db, "SELECT page_url, title, run_id FROM items ORDER BY page_url") == before
    assert rows(db, "SELECT url, body FROM pages ORDER BY url") == bodies
    assert {r for (r,) in rows(db, "SELECT run_id FROM pages")} == {second.run_id}


@pytest.mark.timeout(60)
def test_body_hash_unchanged_and_changed_page_reparsed(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    start, titles = build(site, validators=False)
    db = crawl_db("h")
    kwargs = {"start_urls": start}
    first = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs=kwargs)
    assert first.exit_code == 0
    titles["/p1"] = "p1 changed"
    mark = len(site.requests)

    second = crawl(StaleAfterNoTime, settings=FAST, db_path=db, spider_kwargs=kwargs)

    assert second.exit_code == 0, second
    sent = run_requests(site, mark)
    assert sorted(path for path, _ in sent) == sorted(titles)  # every page was due
    assert not any("if-none-match" in h or "if-modified-since" in h for _, h in sent)
    assert second.stats["unchanged"] == N  # same body hash: no callback
    items = {
        url: (title, run)
        for url, title, run in rows(db, "SELECT page_url, title, run_id FROM items")
    }
    assert items[start + "p1"] == ("p1 changed", second.run_id)
    assert items[start + "p2"] == ("p2", first.run_id)
    assert len(items) == N + 1


@pytest.mark.timeout(60)
def test_what_a_new_run_fetches(site: Site, crawl_db: Callable[[str], Path | str]) -> None:
    start, _ = build(site, validators=True)
    db = crawl_db("w")
    kwargs = {"start_urls": start}
    # Interrupted: max_pages leaves work queued.
    first = crawl(TitleSpider, settings=FAST.replace(max_pages=3), db_path=db, spider_kwargs=kwargs)
    assert (first.exit_code, first.finish_reason) == (4, "max_pages")
    done_first = {u for (u,) in rows(db, "SELECT url FROM pages")}
    mark = len(site.requests)

    # Resumes: what was never fetched, plus the start URL (conditionally); nothing else.
    second = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs=kwargs)
    assert second.exit_code == 0, second
    sent = run_requests(site, mark)
    refetched = {start.rstrip("/") + p for p, _ in sent} & done_first
    assert refetched == {start}, refetched
    assert [h.get("if-none-match") for p, h in sent if p == "/"] == ['"home"']
    assert rows(db, "SELECT count(*) FROM pages") == [(N + 1,)]

    # Default recrawl_after (never): only the start URL again.
    mark = len(site.requests)
    third = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs=kwargs)
    assert [p for p, _ in run_requests(site, mark)] == ["/"]
    assert third.stats["unchanged"] == 1

    # recrawl_after makes old pages due; fresh ignores history (no validators at all).
    mark = len(site.requests)
    crawl(TitleSpider, settings=FAST.replace(recrawl_after=0), db_path=db, spider_kwargs=kwargs)
    assert len(run_requests(site, mark)) == N + 1
    mark = len(site.requests)
    fresh = crawl(ParseUnchanged, settings=FAST, db_path=db, spider_kwargs=kwargs, fresh=True)
    assert fresh.stats["items"] == N + 1
    assert not any("if-none-match" in h for _, h in run_requests(site, mark))


@pytest.mark.timeout(60)
def test_parse_unchanged_runs_the_callback_again(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    start, _ = build(site, validators=True)
    db = crawl_db("p")
    kwargs = {"start_urls": start}
    crawl(ParseUnchanged, settings=FAST, db_path=db, spider_kwargs=kwargs)
    mark = len(site.requests)
    second = crawl(ParseUnchanged, settings=FAST, db_path=db, spider_kwargs=kwargs)
    # Only the start URL is due; it is fetched in full (no validators) and parsed again.
    assert [(p, "if-none-match" in h) for p, h in run_requests(site, mark)] == [("/", False)]
    assert second.stats["items"] == 1
    assert rows(db, "SELECT run_id FROM items WHERE page_url = ?", start) == [(second.run_id,)]


def test_sitemap_lastmod_newer_than_the_last_fetch_queues_the_page_again(tmp_path: Path) -> None:
    from crawler.messages import NewRequest, Outcome, Page
    from crawler.store import Store
    from crawler.urls import fingerprint

    url, host = "http://127.0.0.2/p", "127.0.0.2"
    fp = fingerprint(url)
    with Store(tmp_path / "s.db") as store:
        store.add([NewRequest(fp, url, host)])
        store.take(host, 1, 1000.0)
        fetched = Page(
            url, 200, "{}", "text/html", 2, b"ok", "h", '"e"', None, None, 0, 1000.0, 1.0
        )
        store.record([Outcome(fp, url, host, "done", page=fetched)], run_id=None)
        store.add([NewRequest(fp, url, host, lastmod=900.0)])  # older: nothing to do
        assert store.counts()["done"] == 1 and not store.has_queued()
        store.add([NewRequest(fp, url, host, lastmod=2000.0)])  # changed since: due again
        assert store.counts()["queued"] == 1
        (job,) = store.take(host, 1, 3000.0)
        assert (job.etag, job.content_hash) == ('"e"', "h")  # still asked conditionally
