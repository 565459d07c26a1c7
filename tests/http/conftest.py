"""Fixtures for the pool's loopback tests: a fresh misbehaving server per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kit.servers import ConcurrencyServer, MisbehavingServer


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
