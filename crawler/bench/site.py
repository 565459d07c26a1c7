"""A deterministic generated web site for benchmarks: static HTML files over several hosts.

How it works: page ``n`` (0-based) lives on host ``n % hosts`` at ``/p/<n>.html``, and pages
``0 .. hosts-1`` are the start pages (one per host). Every other page ``n`` gets a *parent*
drawn from the pages before it, and the parent always links to it, so every page is reachable
from the start pages by induction; the remaining links of a page are drawn at random. Links to
a page on the same host are relative (``/p/7.html`` or ``7.html``), links across hosts are
absolute (``http://127.0.0.3:41234/p/8.html``), so the files hold the servers' origins and the
origins must be chosen before the site is written (see :func:`pick_origins`).

Text comes from a pool of paragraphs made once per seed, so writing 5,000 pages of 20-60 KB
takes a second or two rather than a minute of per-word random draws. ``random.Random(seed)``
is stable across runs and platforms, so the same seed and origins give the same bytes.

``extra_links`` adds, per page, that many distinct links to URLs the server does not have
(``/x/<n>-<k>.html``): the memory benchmark uses them to make a crawl *discover* far more URLs
than it fetches.
"""

from __future__ import annotations

import html
import os
import random
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SiteInfo",
    "generate_site",
    "loopback_aliases_work",
    "named_origins",
    "pick_origins",
    "worker_split",
]

NAV_HOSTS = 32
_SYLLABLE_TEXT = "ka ro mi te lu sa no vi da pe gor len tis mar qu el bra fin ost ul ne ta cor vel"
_SYLLABLES = (*_SYLLABLE_TEXT.split(), "dun", "rai", "sho", "pli", "ax", "om")


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """What :func:`generate_site` wrote: where, for which origins, and how much."""

    root: Path
    origins: tuple[str, ...]  # "http://127.0.0.2:41234", one per host; host i serves root/h<i>
    pages: int
    seed: int
    total_bytes: int
    total_links: int
    extra_links: int = 0

    def __post_init__(self) -> None:
        if self.pages < len(self.origins) or not self.origins:
            raise ValueError("a site needs at least one page per host")

    @property
    def hosts(self) -> int:
        return len(self.origins)

    def host_dir(self, host: int) -> Path:
        return self.root / f"h{host}"

    def url(self, page: int) -> str:
        return f"{self.origins[page % self.hosts]}/p/{page}.html"

    def path(self, page: int) -> Path:
        return self.host_dir(page % self.hosts) / "p" / f"{page}.html"

    @property
    def start_urls(self) -> tuple[str, ...]:
        return tuple(self.url(h) for h in range(self.hosts))

    def urls(self) -> Iterator[str]:
        return (self.url(n) for n in range(self.pages))

    @property
    def discoverable(self) -> int:
        """URLs a full crawl would discover: the pages plus the unserved extra links."""
        return self.pages * (1 + self.extra_links)


def loopback_aliases_work() -> bool:
    """Whether 127.0.0.2 can be bound (Linux: all of 127/8; macOS: only 127.0.0.1 by default)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def pick_origins(hosts: int, balance_over: int = 0) -> tuple[str, ...]:
    """One origin per host, each a distinct politeness key for the crawler.

    With ``balance_over=N`` the ports are drawn again until the hosts spread evenly over N
    worker processes (``crawler.urls.owner_of``): with 4 hosts and 2 workers a random draw
    puts 3 or 4 hosts on one worker about two times in three, and a benchmark would then
    measure the luck of the draw rather than the engine.

    Where the loopback aliases work (Linux) every host gets its own address, 127.0.0.1 ..
    127.0.0.N, so per-IP and per-hostname limits (Scrapy's download slots are per hostname,
    without the port) see N hosts too. Elsewhere all hosts share 127.0.0.1 on distinct ports.
    Ports are free ports asked of the kernel; a server binds them a moment later.
    """
    if hosts < 1:
        raise ValueError("hosts must be at least 1")
    if hosts > 1 and not loopback_aliases_work():
        addresses = ["127.0.0.1"] * hosts
    else:
        if hosts > 254:
            raise ValueError("at most 254 hosts")
        addresses = [f"127.0.0.{i + 1}" for i in range(hosts)]
    for _attempt in range(1000):
        origins = _draw(addresses)
        if balance_over <= 1 or _balanced(origins, balance_over):
            break
    return origins


def named_origins(hosts: int, domain: str = "wide.test") -> tuple[str, ...]:
    """``hosts`` origins named ``h<i>.<domain>`` on one free loopback port: a broad crawl's
    thousands of hosts, served by name (``crawler.bench.server``) and dialled through the
    crawler's ``resolve`` setting (``{"*.<domain>": "127.0.0.1"}``)."""
    if hosts < 1:
        raise ValueError("hosts must be at least 1")
    port = _free_port("127.0.0.1")
    return tuple(f"http://h{i}.{domain}:{port}" for i in range(hosts))


def _draw(addresses: list[str]) -> tuple[str, ...]:
    origins: list[str] = []
    taken: set[int] = set()
    for address in addresses:
        port = _free_port(address)
        while port in taken:  # the same address asked twice may, rarely, get the same port
            port = _free_port(address)
        taken.add(port)
        origins.append(f"http://{address}:{port}")
    return tuple(origins)


def _balanced(origins: Sequence[str], workers: int) -> bool:
    load = worker_split(origins, workers)
    return max(load) - min(load) <= 1


def worker_split(origins: Sequence[str], workers: int) -> list[int]:
    """How many of the hosts each of ``workers`` worker processes owns."""
    from crawler.engine.dispatch import owner_of
    from crawler.urls import url_host

    load = [0] * workers
    for origin in origins:
        load[owner_of(url_host(origin + "/"), workers)] += 1
    return load


class _Text:
    """Paragraphs and titles from a per-seed pool of made-up words."""

    def __init__(self, rng: random.Random) -> None:
        words = {
            "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(900)
        }
        self.words = sorted(words)
        self.paragraphs = [self._paragraph(rng) for _ in range(400)]

    def _sentence(self, rng: random.Random) -> str:
        words = rng.choices(self.words, k=rng.randint(6, 18))
        return " ".join(words).capitalize() + rng.choice((".", ".", ".", "?", "!"))

    def _paragraph(self, rng: random.Random) -> str:
        return " ".join(self._sentence(rng) for _ in range(rng.randint(3, 9)))

    def title(self, rng: random.Random) -> str:
        return " ".join(rng.choices(self.words, k=rng.randint(2, 5))).title()


def _href(site_origins: Sequence[str], page: int, target: int, rng: random.Random) -> str:
    hosts = len(site_origins)
    if target % hosts != page % hosts:
        return f"{site_origins[target % hosts]}/p/{target}.html"
    # Same host: mix root-relative and document-relative forms; both resolve to /p/<n>.html.
    return f"/p/{target}.html" if rng.random() < 0.5 else f"{target}.html"


def _render(
    *,
    page: int,
    title: str,
    origins: Sequence[str],
    links: list[int],
    extra: list[str],
    titles: list[str],
    text: _Text,
    target_size: int,
    rng: random.Random,
) -> bytes:
    host = page % len(origins)
    esc = html.escape
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="stylesheet" href="/static/site.css">\n</head>\n<body>\n'
        '<a class="skip" href="#main">Skip to content</a>\n'
        f'<header><nav><ul>\n<li><a href="/p/{host}.html">Home</a></li>\n'
    )
    # The nav links to every host's start page (the first NAV_HOSTS of a broad site): the
    # same few URLs on every page, as real navigation does, which exercises the crawler's
    # duplicate filtering.
    nav = "".join(
        f'<li><a href="{origins[h]}/p/{h}.html">Site {h}</a></li>\n'
        for h in range(min(len(origins), NAV_HOSTS))
        if h != host
    )
    parts = [head, nav, f'</ul></nav></header>\n<main id="main">\n<h1>{esc(title)}</h1>\n']
    anchors = [f'<a href="{_href(origins, page, t, rng)}">{esc(titles[t])}</a>' for t in links] + [
        f'<a href="{u}">More {i}</a>' for i, u in enumerate(extra)
    ]
    rng.shuffle(anchors)
    footer = (
        "</main>\n<footer><p>Generated page "
        f'{page} of a benchmark site. <a href="#top">Back to top</a></p></footer>\n'
        "</body>\n</html>\n"
    )
    emitted = sum(map(len, parts)) + len(footer)
    reserved = sum(len(a) + 10 for a in anchors)  # room the anchors will take wherever they go
    # Spread the links: some inline at the end of paragraphs, the rest as "related" lists.
    blocks: list[str] = []
    i = 0
    while emitted + reserved < target_size or i < len(anchors):
        if emitted + reserved >= target_size:
            rest = anchors[i:]
            blocks.append('<ul class="related">\n' + "".join(f"<li>{a}</li>\n" for a in rest))
            blocks.append("</ul>\n")
            break
        block = f"<p>{rng.choice(text.paragraphs)}"
        if i < len(anchors) and rng.random() < 0.5:
            block += f" See {anchors[i]}."
            reserved -= len(anchors[i]) + 10
            i += 1
        block += "</p>\n"
        if i < len(anchors) and rng.random() < 0.4:
            chunk = anchors[i : i + rng.randint(3, 12)]
            i += len(chunk)
            reserved -= sum(len(a) + 10 for a in chunk)
            items = "".join(f"<li>{a}</li>\n" for a in chunk)
            block += f'<ul class="related">\n{items}</ul>\n'
        blocks.append(block)
        emitted += len(block)
    parts.extend(blocks)
    parts.append(footer)
    return "".join(parts).encode("utf-8")


def generate_site(
    root: Path,
    pages: int,
    hosts: int,
    seed: int,
    min_kb: int = 20,
    max_kb: int = 60,
    min_links: int = 50,
    max_links: int = 200,
    *,
    origins: Sequence[str] | None = None,
    extra_links: int = 0,
) -> SiteInfo:
    """Write the site under ``root`` (``root/h<i>/p/<n>.html``) and describe it.

    ``origins`` defaults to ``http://127.0.0.<i+1>:8000``, which keeps the files independent of
    which ports happen to be free; servers need the real origins, see :func:`pick_origins`.
    Each page carries between ``min_links`` and ``max_links`` distinct links to other pages
    (fewer when the site is smaller than that), plus the nav links and ``extra_links``.
    """
    if hosts < 1 or pages < hosts:
        raise ValueError("need hosts >= 1 and at least one page per host")
    if not 0 < min_kb <= max_kb or not 0 <= min_links <= max_links:
        raise ValueError("need 0 < min_kb <= max_kb and 0 <= min_links <= max_links")
    origins = (
        tuple(origins)
        if origins is not None
        else tuple(f"http://127.0.0.{i + 1}:8000" for i in range(hosts))
    )
    if len(origins) != hosts:
        raise ValueError(f"{hosts} hosts but {len(origins)} origins")
    rng = random.Random(seed)
    text = _Text(rng)
    titles = [f"{text.title(rng)} ({n})" for n in range(pages)]
    children: list[list[int]] = [[] for _ in range(pages)]
    for n in range(hosts, pages):
        children[rng.randrange(n)].append(n)

    root.mkdir(parents=True, exist_ok=True)
    for h in range(hosts):
        (root / f"h{h}" / "p").mkdir(parents=True, exist_ok=True)
    total_bytes = total_links = 0
    limit = pages - 1
    for n in range(pages):
        want = min(rng.randint(min_links, max_links), limit)
        targets = set(children[n])
        while len(targets) < want:
            t = rng.randrange(pages)
            if t != n:
                targets.add(t)
        links = sorted(targets)
        extra = [f"/x/{n}-{k}.html" for k in range(extra_links)]
        # Leave room for the last paragraph so the page stays under max_kb.
        target_size = rng.randint(min_kb * 1024, max(min_kb * 1024, max_kb * 1024 - 2500))
        body = _render(
            page=n,
            title=titles[n],
            origins=origins,
            links=links,
            extra=extra,
            titles=titles,
            text=text,
            target_size=target_size,
            rng=rng,
        )
        path = root / f"h{n % hosts}" / "p" / f"{n}.html"
        path.write_bytes(body)
        total_bytes += len(body)
        total_links += len(links) + len(extra)
    # Everything in the tree must be readable by a server running as another user (nginx's
    # workers drop to "nobody" when started as root).
    for dirpath, _dirs, _files in os.walk(root):
        os.chmod(dirpath, 0o755)
    return SiteInfo(
        root=root,
        origins=origins,
        pages=pages,
        seed=seed,
        total_bytes=total_bytes,
        total_links=total_links,
        extra_links=extra_links,
    )
