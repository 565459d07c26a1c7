"""A worker process's life: it ignores SIGINT/SIGTERM, finishes its work on "stop", and never
outlives its parent (the job pipe's EOF ends it at once, in-flight fetch and all).

``worker_main`` runs in a forked child here, driven through its two pipes as the engine
drives it; the test process plays the parent.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from typing import Any

import multiprocess
import pytest

from crawler.messages import Job
from crawler.settings import Settings
from crawler.spider import Spider
from crawler.urls import fingerprint, url_host
from crawler.worker.process import STOP, worker_main
from tests.kit.servers import MisbehavingServer

SETTINGS = Settings(timeout=20, robots=False, sitemaps=False)


class PlainSpider(Spider):
    name = "plain"

    def parse(self, response: Any) -> Any:
        return ()


def start_worker() -> tuple[Any, Any, Any]:
    ctx = multiprocess.get_context("fork")
    job_recv, job_send = ctx.Pipe(duplex=False)
    result_recv, result_send = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=worker_main,
        args=(0, PlainSpider, {}, SETTINGS, job_recv, result_send, 2),
        kwargs={"foreign_conns": [job_send, result_recv], "parent_pid": os.getpid()},
        daemon=True,
    )
    process.start()
    job_recv.close()
    result_send.close()
    return process, job_send, result_recv


def send_job(job_send: Any, url: str) -> None:
    job = Job(fingerprint(url), url, url_host(url))
    job_send.send_bytes(pickle.dumps(("jobs", [job])))


def wait_for_arrival(server: MisbehavingServer, path: str) -> None:
    deadline = time.monotonic() + 10
    while server.count(path) == 0:
        assert time.monotonic() < deadline, f"{path} never reached the server"
        time.sleep(0.01)


@pytest.mark.timeout(30)
def test_job_pipe_eof_ends_the_worker_at_once(server: MisbehavingServer) -> None:
    process, job_send, result_recv = start_worker()
    try:
        send_job(job_send, server.url("/never-answer?hold=30"))
        wait_for_arrival(server, "/never-answer")
        began = time.monotonic()
        job_send.close()  # what the parent's death looks like from the worker
        process.join(5)
        assert process.exitcode == 0
        assert time.monotonic() - began < 2  # not after the 20 s read timeout
        with pytest.raises(EOFError):  # it sent nothing: nobody is left to tell
            result_recv.recv_bytes()
    finally:
        if process.is_alive():
            process.kill()
            process.join(5)
        result_recv.close()


@pytest.mark.timeout(30)
def test_sigterm_is_ignored_and_stop_finishes_in_flight_work(server: MisbehavingServer) -> None:
    process, job_send, result_recv = start_worker()
    try:
        url = server.url("/ok?delay=1")
        send_job(job_send, url)
        wait_for_arrival(server, "/ok")
        os.kill(process.pid, signal.SIGTERM)
        os.kill(process.pid, signal.SIGINT)
        job_send.send_bytes(pickle.dumps(STOP))
        assert result_recv.poll(10)
        (outcome,) = pickle.loads(result_recv.recv_bytes())
        assert (outcome.url, outcome.state, outcome.page.status) == (url, "done", 200)
        process.join(5)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
            process.join(5)
        job_send.close()
        result_recv.close()
