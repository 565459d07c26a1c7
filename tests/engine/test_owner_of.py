"""Routing in the engine: ``owner_of`` picks the worker that owns a host, the same in every
process (each host's connections and politeness stay in one worker)."""

from __future__ import annotations

from crawler.engine.dispatch import owner_of
from tests.kit.processes import python_output


def test_owner_of() -> None:
    assert owner_of("a.com", 4) == 1
    assert owner_of("127.0.0.2:8080", 3) == owner_of("127.0.0.2:8080", 3)
    assert {owner_of(f"h{i}.com", 4) for i in range(100)} == {0, 1, 2, 3}
    assert owner_of("anything", 1) == 0


def test_owner_of_stable_across_processes() -> None:
    out = python_output("from crawler.engine.dispatch import owner_of; print(owner_of('a.com', 7))")
    assert out == [str(owner_of("a.com", 7))]
