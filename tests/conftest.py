"""Fixtures every layer may use. The helpers behind them live in tests/kit/ (see its docstring).

``site``: a fresh ``tests.kit.site.Site``, a small well-behaved site on 127.0.0.x addresses.
``server`` / ``concurrency_server``: a fresh ``MisbehavingServer`` / ``ConcurrencyServer``
(tests/kit/servers.py); the test fails if one of the server's threads failed.
All three are stopped after the test.

Also, for every test: the CLI configures the "crawler" logger as a program would (handlers,
level), so that configuration is undone after each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.kit.postgres import PostgresServer
from tests.kit.project import restore_logging
from tests.kit.servers import ConcurrencyServer, MisbehavingServer
from tests.kit.site import Site

# Kept importable from here for modules written before the kit: prefer tests.kit.site.
__all__ = ["Site", "restore_logging"]


@pytest.fixture(autouse=True)
def _restore_crawler_logging() -> Iterator[None]:
    yield from restore_logging()


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as s:
        yield s


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer(lifetime=60.0) as srv:
        yield srv
    assert srv.errors == [], f"server threads failed: {srv.errors!r}"


@pytest.fixture
def concurrency_server() -> Iterator[ConcurrencyServer]:
    with ConcurrencyServer(lifetime=60.0) as srv:
        yield srv
    assert srv.errors == [], f"server threads failed: {srv.errors!r}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (tests/kit/postgres.py); ``postgres.database()``
    gives each test its own database."""
    with PostgresServer() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgres"])
def crawl_db(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Path | str]:
    """The backend-neutral crawl tests run on both: ``crawl_db("name")`` is a SQLite file
    under tmp_path, or a fresh PostgreSQL database's URL (one per name)."""
    made: dict[str, Path | str] = {}

    def make(name: str) -> Path | str:
        if name not in made:
            if request.param == "postgres":
                made[name] = request.getfixturevalue("postgres").database()
            else:
                made[name] = tmp_path / f"{name}.db"
        return made[name]

    return make
