"""crawler.engine.inflight: the one in-flight table as a pure unit, then as dispatch uses it
(worker handles on real pipes without a process, a real Store under tmp_path)."""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiprocess
import pytest

from crawler.engine.dispatch import Dispatcher, owner_of, slot_shares
from crawler.engine.inflight import InFlight
from crawler.engine.politeness import Politeness, PolitenessPolicy
from crawler.engine.workers import WorkerHandle, close_pipes
from crawler.messages import NewRequest
from crawler.store import Store
from crawler.urls import Admitted, admit
from tests.kit.reads import HostReadsLogged


def test_empty() -> None:
    table = InFlight()
    assert len(table) == 0
    assert not table
    assert table.count(0) == 0
    assert table.finish(1) is None
    assert table.take_worker(0) == {}
    assert table.take_all() == []
    assert repr(table) == "<InFlight 0 jobs>"


def test_start_finish_and_counts() -> None:
    table = InFlight()
    table.start(10, 0, "a.com")
    table.start(11, 0, "b.com")
    table.start(20, 1, "c.com:8080")
    assert len(table) == 3
    assert 10 in table and 20 in table and 99 not in table
    assert (table.count(0), table.count(1), table.count(2)) == (2, 1, 0)
    assert repr(table) == "<InFlight 3 jobs w0:2 w1:1>"
    assert table.finish(10) == "a.com"
    assert table.finish(10) is None  # answered twice (a late duplicate): nothing to free
    assert table.finish(20) == "c.com:8080"
    assert (len(table), table.count(0), table.count(1)) == (1, 1, 0)
    assert repr(table) == "<InFlight 1 jobs w0:1>"


def test_take_worker_takes_only_that_worker() -> None:
    table = InFlight()
    table.start(1, 0, "a.com")
    table.start(2, 1, "b.com")
    table.start(3, 0, "a.com")
    assert table.take_worker(0) == {1: "a.com", 3: "a.com"}
    assert 1 not in table and 3 not in table
    assert table.finish(1) is None  # an Outcome drained after the death changes nothing
    assert (len(table), table.count(0), table.count(1)) == (1, 0, 1)
    assert table.take_worker(0) == {}
    table.start(4, 0, "a.com")  # the replacement worker has the same index
    assert table.count(0) == 1


def test_take_all() -> None:
    table = InFlight()
    for fp in range(5):
        table.start(fp, fp % 2, f"h{fp}.com")
    assert sorted(table.take_all()) == [0, 1, 2, 3, 4]
    assert (len(table), table.count(0), table.count(1)) == (0, 0, 0)


def test_a_fingerprint_started_again_moves() -> None:
    table = InFlight()
    table.start(1, 0, "a.com")
    table.start(1, 1, "a.com")
    assert (len(table), table.count(0), table.count(1)) == (1, 0, 1)
    assert table.take_worker(0) == {}
    assert table.finish(1) == "a.com"


def test_random_operations_keep_both_views_in_agreement() -> None:
    """Against a plain dict model: whatever the order, counts and lookups agree."""
    rng = random.Random(3)
    table = InFlight()
    model: dict[int, tuple[int, str]] = {}
    for _ in range(5000):
        op = rng.random()
        if op < 0.5:
            fp, worker = rng.randrange(200), rng.randrange(4)
            host = f"h{rng.randrange(10)}.com"
            table.start(fp, worker, host)
            model[fp] = (worker, host)
        elif op < 0.9:
            fp = rng.randrange(200)
            entry = model.pop(fp, None)
            assert table.finish(fp) == (entry[1] if entry else None)
        elif op < 0.99:
            worker = rng.randrange(4)
            held = {fp: host for fp, (w, host) in model.items() if w == worker}
            assert table.take_worker(worker) == held
            for fp in held:
                del model[fp]
        else:
            assert sorted(table.take_all()) == sorted(model)
            model.clear()
        assert len(table) == len(model)
        for worker in range(4):
            assert table.count(worker) == sum(1 for w, _ in model.values() if w == worker)


@dataclass
class Workers:
    """Two worker handles on real pipes, with no process: the "worker" ends stay here."""

    handles: list[WorkerHandle]
    job_ends: list[Any]  # where each worker would read its Jobs
    result_ends: list[Any]  # where each worker would send its Outcomes


@pytest.fixture
def workers() -> Iterator[Workers]:
    table = InFlight()
    made = Workers([], [], [])
    for index in range(2):
        results, result_send = multiprocess.Pipe(duplex=False)
        job_recv, jobs = multiprocess.Pipe(duplex=False)
        made.handles.append(WorkerHandle(index, None, jobs, results, table))
        made.job_ends.append(job_recv)
        made.result_ends.append(result_send)
    yield made
    for handle in made.handles:
        close_pipes(handle)
    for conn in made.job_ends + made.result_ends:
        conn.close()


def _request(url: str) -> NewRequest:
    admitted = admit(url, max_url_length=2083)
    assert isinstance(admitted, Admitted)
    return NewRequest(admitted.fp, admitted.url, admitted.host)


def test_dispatch_the_table_the_handles_and_the_host_clocks_agree(
    workers: Workers, tmp_path: Path
) -> None:
    handles = workers.handles
    table = handles[0].in_flight
    politeness = Politeness(PolitenessPolicy(per_host=2))
    dispatcher = Dispatcher(handles, table, politeness, worker_cap=4)
    # Two hosts owned by different workers; each worker holds one of each host's two slots.
    hosts = [f"h{i}.example" for i in range(20)]
    a = next(h for h in hosts if owner_of(h, 2) == 0)
    b = next(h for h in hosts if owner_of(h, 2) == 1)
    assert slot_shares(a, 2, 2) == slot_shares(b, 2, 2) == (1, 1)
    with Store(tmp_path / "c.db", fresh=True) as store:
        store.add([_request(f"http://{a}/{i}") for i in range(3)] + [_request(f"http://{b}/")])
        assert dispatcher.dispatch(store, None, 0.0) == []
        sent = [pickle.loads(conn.recv_bytes()) for conn in workers.job_ends]
    assert all(kind == "jobs" for kind, _ in sent)
    by_worker = [sorted(job.host for job in batch) for _, batch in sent]
    # per_host=2: the third job of a waits; a's two go one to each worker.
    assert sorted(by_worker[0] + by_worker[1]) == sorted([a, a, b])
    assert by_worker[0].count(a) == by_worker[1].count(a) == 1
    assert len(table) == 3
    assert handles[0].busy + handles[1].busy == 3
    assert (politeness.in_flight(a), politeness.in_flight(b)) == (2, 1)

    a_jobs = [job for _, batch in sent for job in batch if job.host == a]
    holder_of_b = 0 if b in by_worker[0] else 1
    first = next(job.fp for job in a_jobs if table.worker_of(job.fp) == holder_of_b)
    second = next(job.fp for job in a_jobs if job.fp != first)
    dispatcher.finished(first, 1.0, ok=True)
    dispatcher.finished(first, 1.0, ok=True)  # a second answer frees nothing more
    assert politeness.in_flight(a) == 1 and len(table) == 2

    b_fp = next(job.fp for _, batch in sent for job in batch if job.host == b)
    assert dispatcher.lost(holder_of_b, 2.0) == [b_fp]  # the worker holding b died
    assert (handles[holder_of_b].busy, politeness.in_flight(b)) == (0, 0)

    assert dispatcher.abandon() == [second]
    assert (len(table), handles[0].busy) == (0, 0)


class ReadsLogged(HostReadsLogged, Store):
    pass


def _sent(workers: Workers) -> list[Any]:
    jobs = []
    for conn in workers.job_ends:
        while conn.poll():
            kind, batch = pickle.loads(conn.recv_bytes())
            assert kind == "jobs"
            jobs.extend(batch)
    return jobs


@pytest.mark.timeout(60)
def test_a_round_reads_a_window_of_a_broad_queue_and_every_host_gets_its_turn(
    workers: Workers, tmp_path: Path
) -> None:
    # 300 hosts with two URLs each; the workers have room for 8 Jobs at a time (4 hosts). A
    # round used to read every queued host (and walk them all in Python): 300 a round, 100k
    # on a broad crawl, most of the engine's time. Now it reads a window from where the last
    # round's ended.
    handles = workers.handles
    dispatcher = Dispatcher(handles, handles[0].in_flight, Politeness(PolitenessPolicy()), 4)
    hosts = [f"h{i:03d}.example" for i in range(300)]
    with ReadsLogged(tmp_path / "w.db", fresh=True) as store:
        store.add([_request(f"http://{h}/{k}") for h in hosts for k in range(2)])
        rounds: list[list[str]] = []
        while sum(map(len, rounds)) < 2 * len(hosts):
            now = float(len(rounds) + 1)
            assert dispatcher.dispatch(store, None, now) == []
            jobs = _sent(workers)
            assert len(jobs) == 8  # the room, always filled
            rounds.append(sorted(job.host for job in jobs))
            for job in jobs:
                dispatcher.finished(job.fp, now, ok=True)
    order = [host for batch in rounds for host in batch]
    assert sorted(order) == sorted(hosts * 2)  # every URL once
    assert max(store.reads) == 64  # a window: 4 hosts per free slot, at least 64
    assert len(rounds) == 75 and len(store.reads) <= 80  # a round's room: mostly one window
    assert rounds[1] == sorted(hosts[64:68] * 2)  # the second round starts after the first's
    assert rounds[5] == sorted(hosts[4:8] * 2)  # round 5 read the last hosts; 6 goes round


@pytest.mark.timeout(60)
def test_a_window_whose_hosts_must_wait_is_followed_by_the_next_in_the_same_round(
    workers: Workers, tmp_path: Path
) -> None:
    handles = workers.handles
    politeness = Politeness(PolitenessPolicy())
    dispatcher = Dispatcher(handles, handles[0].in_flight, politeness, 4)
    hosts = [f"h{i:03d}.example" for i in range(200)]
    for host in hosts[:100]:
        politeness.push(host, 50.0)  # a Retry-After: no start before t=50
    with ReadsLogged(tmp_path / "w.db", fresh=True) as store:
        store.add([_request(f"http://{h}/{k}") for h in hosts for k in range(2)])
        dispatcher.dispatch(store, None, 1.0)
        first = sorted(job.host for job in _sent(workers))
        assert first == [h for h in hosts[100:104] for _ in range(2)]
        assert store.reads == [64, 64]  # a window of waiting hosts, then the next
        # A budget (max_pages) caps the round.
        for job in _sent(workers):
            dispatcher.finished(job.fp, 2.0, ok=True)
        store.reads = []
        dispatcher.abandon()
        dispatcher.dispatch(store, None, 60.0, budget=3)
        assert len(_sent(workers)) == 3
