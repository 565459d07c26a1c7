"""A dead proxy in the job runner, against real loopback servers: one that accepts a connection
and closes it (or resets it) without an answer is the proxy's failure, like a refused one. The
request moves to the next proxy (a bounded number of times), the dead one is cooled down after
``FAILS_TO_COOL`` failures in a row, and its credentials appear in no Outcome."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from crawler.http import MaxRetryError, ProtocolError, ProxyError
from crawler.http.connection import StaleConnectionError
from crawler.messages import Job
from crawler.settings import Settings
from crawler.spider import Response, Spider
from crawler.urls import fingerprint, url_host
from crawler.worker.proxies import FAILS_TO_COOL, MAX_ROTATIONS, ProxyRotation, proxy_failed
from crawler.worker.runner import JobRunner
from tests.kit.proxies import http_proxy
from tests.kit.servers import MisbehavingServer
from tests.kit.site import Site

pytestmark = pytest.mark.timeout(60)

NOW = 1_000_000.0
SECRET = "deadpw-77"


class ItemSpider(Spider):
    name = "items"

    def parse(self, response: Response) -> Any:
        yield {"url": response.url}


class DroppingProxy:
    """Accepts every connection, reads the request, then closes it (``reset``: with an RST)."""

    def __init__(self, reset: bool = False) -> None:
        self.reset = reset
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, password: str = SECRET) -> str:
        return f"http://ann:{password}@127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with sock:
                sock.settimeout(2)
                with contextlib.suppress(OSError):
                    sock.recv(65536)
                    if self.reset:  # close with an RST rather than a FIN
                        linger = struct.pack("ii", 1, 0)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)

    def __enter__(self) -> DroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._listener.close()


@pytest.fixture(scope="module")
def origin() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as s:
        yield s


@contextlib.contextmanager
def runner(proxies: list[str], **settings: Any) -> Iterator[JobRunner]:
    base = Settings(timeout=2, retries=0, proxy=proxies).replace(**settings)
    worker = JobRunner(ItemSpider(), base, clock=lambda: NOW, rand=lambda: 0.5)
    try:
        yield worker
    finally:
        worker.close()


def job(url: str) -> Job:
    return Job(fp=fingerprint(url), url=url, host=url_host(url))


def ordered(first: str, second: str, host: str) -> list[str]:
    """The two proxies in the order that makes ``first`` the host's own."""
    pair = [first, second]
    return pair if ProxyRotation(tuple(pair)).pick(host, 0.0) == first else pair[::-1]


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_a_proxy_that_drops_connections_is_rotated_out_then_cooled(
    origin: MisbehavingServer, reset: bool
) -> None:
    url = origin.url("/ok")
    with DroppingProxy(reset) as dead, http_proxy() as live:
        proxies = ordered(dead.url(), live.url(), url_host(url))
        with runner(proxies) as worker:
            for n in range(FAILS_TO_COOL + 2):
                out = worker.process(job(origin.url(f"/ok?n={n}")))
                assert out.state == "done" and out.page is not None, out
                assert out.page.status == 200
            # The dead proxy was tried until it was cooled down, then left alone.
            assert dead.connections == FAILS_TO_COOL
            assert live.seen  # every page came through the live one
            assert worker.proxies.cooling(NOW) == [f"http://***@127.0.0.1:{dead.port}"]


def test_every_proxy_dead_is_a_bounded_proxy_failure_without_credentials(
    origin: MisbehavingServer,
) -> None:
    with DroppingProxy() as a, DroppingProxy(reset=True) as b, DroppingProxy() as c:
        proxies = [a.url(), b.url(), c.url()]
        url = origin.url("/ok")
        with runner(proxies, retries=1) as worker:
            out = worker.process(job(url))
            assert out.state == "retry" and out.retry_error == "proxy", out
            with runner(proxies, retries=0) as last:
                out = last.process(job(url))
        tries = a.connections + b.connections + c.connections
    # One request tries its own proxy and at most MAX_ROTATIONS more, per attempt.
    assert tries == 2 * (1 + MAX_ROTATIONS)
    assert out.state == "failed"
    [failure] = out.failures
    assert failure.kind == "proxy"
    assert "dropped the connection" in failure.message
    assert SECRET not in repr(out)


def test_a_request_through_its_own_dead_proxy_is_not_rotated(origin: MisbehavingServer) -> None:
    with DroppingProxy() as dead, http_proxy() as live:
        url = origin.url("/ok")
        with runner([live.url(), dead.url()]) as worker:
            own = Job(
                fp=fingerprint(url),
                url=url,
                host=url_host(url),
                meta={"proxy": f"http://127.0.0.1:{dead.port}"},
            )
            out = worker.process(own)
        assert out.state == "failed" and out.failures[0].kind == "proxy", out
        assert (dead.connections, live.seen) == (1, [])
        assert SECRET not in repr(out)


# --- which errors are the proxy's (pure) ---------------------------------------------------

HTTP_PROXY, SOCKS = "http://u:pw@127.0.0.1:1", "socks5h://127.0.0.1:2"


def _reset() -> ProtocolError:
    error = ProtocolError("connection lost while reading the response: reset")
    error.__cause__ = ConnectionResetError(104, "reset")
    return error


@pytest.mark.parametrize(
    ("exc", "proxy", "url", "blamed"),
    [
        (ProxyError("refused"), HTTP_PROXY, "http://a.test/", True),
        (ProxyError("refused"), SOCKS, "https://a.test/", True),
        (MaxRetryError(None, "u", ProxyError("x")), HTTP_PROXY, "https://a.test/", True),
        (StaleConnectionError("closed"), HTTP_PROXY, "http://a.test/", True),
        (MaxRetryError(None, "u", StaleConnectionError("c")), HTTP_PROXY, "HTTP://a.test/", True),
        (_reset(), HTTP_PROXY, "http://a.test/", True),
        # Behind a tunnel or a SOCKS stream the bytes are the target's.
        (StaleConnectionError("closed"), HTTP_PROXY, "https://a.test/", False),
        (StaleConnectionError("closed"), SOCKS, "http://a.test/", False),
        # A malformed answer, or a timeout, is not told apart from the target's.
        (ProtocolError("bad status line"), HTTP_PROXY, "http://a.test/", False),
        (TimeoutError("slow"), HTTP_PROXY, "http://a.test/", False),
    ],
)
def test_proxy_failed(exc: BaseException, proxy: str, url: str, blamed: bool) -> None:
    found = proxy_failed(exc, proxy, url)
    assert (found is not None) == blamed
    if found is not None:
        assert isinstance(found, ProxyError)
        assert "pw" not in str(found)


def test_an_https_site_behind_a_dead_proxy_goes_through_the_next_ones_tunnel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dead proxy breaks the CONNECT exchange; the live one tunnels, and TLS is checked
    # against the site's name (the proxy resolves it: resolve pins do not apply through an
    # HTTP proxy, so the site is "localhost" here), not the proxy's.
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    with Site() as site, DroppingProxy() as dead, http_proxy() as live:
        host = site.add_host("127.0.0.1", {"/": "<p>secure</p>"}, tls=server_ctx)
        port = host.rpartition(":")[2]
        url = f"https://localhost:{port}/"
        proxies = ordered(dead.url(), live.url(), url_host(url))
        with runner(proxies) as worker:
            out = worker.process(job(url))
        assert out.state == "done" and out.page is not None, out.failures
        assert out.page.status == 200
        assert dead.connections == 1
        assert [(s.method, s.target) for s in live.seen] == [("CONNECT", f"localhost:{port}")]
        assert site.hits == {(host, "/"): 1}
