"""HTTPS: verified by default, hostname checked, SNI sent, client certificates, explicit opt-out.

The certificates come from a throwaway trustme CA that no system trust store holds.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from crawler.http import (
    HTTPSConnectionPool,
    MaxRetryError,
    PoolManager,
    ProtocolError,
    SSLError,
    connection_from_url,
)
from tests.kit.pools import assert_cause
from tests.kit.servers import MisbehavingServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def tls_server(context: ssl.SSLContext) -> MisbehavingServer:
    return MisbehavingServer(lifetime=60.0, tls_context=context)


@pytest.fixture
def https_server(ca: trustme.CA) -> Iterator[MisbehavingServer]:
    with tls_server(server_context(ca, "localhost", "127.0.0.1")) as srv:
        yield srv
    assert srv.errors == []


def test_verified_by_default_rejects_an_unknown_ca(https_server: MisbehavingServer) -> None:
    with HTTPSConnectionPool("127.0.0.1", https_server.port, maxsize=1, block=True) as pool:
        with pytest.raises((SSLError, MaxRetryError)) as excinfo:
            pool.urlopen("GET", "/ok", retries=0, timeout=5)
        assert_cause(excinfo.value, SSLError)
        assert https_server.count() == 0
        assert pool.num_in_use == 0


def test_ca_certs_makes_it_trusted(https_server: MisbehavingServer, ca_file: str) -> None:
    with HTTPSConnectionPool(
        "127.0.0.1", https_server.port, ca_certs=ca_file, maxsize=1, block=True, timeout=5
    ) as pool:
        for _ in range(3):
            response = pool.urlopen("GET", "/ok")
            assert (response.status, response.data) == (200, b"ok")
        assert (pool.num_connections, pool.num_requests, pool.num_in_use) == (1, 3, 0)


def test_connection_from_url_picks_https(https_server: MisbehavingServer, ca_file: str) -> None:
    pool = connection_from_url(https_server.url("/"), ca_certs=ca_file, timeout=5)
    with pool:
        assert isinstance(pool, HTTPSConnectionPool)
        assert pool.urlopen("GET", "/ok").data == b"ok"


def test_hostname_mismatch_is_an_ssl_error(ca: trustme.CA, ca_file: str) -> None:
    with tls_server(server_context(ca, "other.example")) as srv:
        pool = HTTPSConnectionPool("127.0.0.1", srv.port, ca_certs=ca_file, timeout=5)
        with pool:
            with pytest.raises((SSLError, MaxRetryError)) as excinfo:
                pool.urlopen("GET", "/ok", retries=1)
            assert_cause(excinfo.value, SSLError)
            assert srv.count() == 0
            assert pool.num_in_use == 0


def test_cert_none_turns_verification_off(https_server: MisbehavingServer) -> None:
    with HTTPSConnectionPool(
        "127.0.0.1", https_server.port, cert_reqs="CERT_NONE", timeout=5
    ) as pool:
        assert pool.urlopen("GET", "/ok").data == b"ok"


def test_sni_is_sent(ca: trustme.CA, ca_file: str) -> None:
    context = server_context(ca, "localhost")
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    with tls_server(context) as srv:
        with HTTPSConnectionPool("localhost", srv.port, ca_certs=ca_file, timeout=5) as pool:
            assert pool.urlopen("GET", "/ok").data == b"ok"
        assert names == ["localhost"]
        assert srv.requests_to("/ok")[0].header("host") == f"localhost:{srv.port}"


@pytest.fixture
def client_cert_server(ca: trustme.CA) -> Iterator[MisbehavingServer]:
    context = server_context(ca, "127.0.0.1")
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    with tls_server(context) as srv:
        yield srv


def test_client_certificate_is_sent(
    client_cert_server: MisbehavingServer, ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    client = ca.issue_cert("client@crawler.test")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    with HTTPSConnectionPool(
        "127.0.0.1",
        client_cert_server.port,
        ca_certs=ca_file,
        cert_file=str(cert_file),
        key_file=str(key_file),
        timeout=5,
    ) as pool:
        assert pool.urlopen("GET", "/ok").data == b"ok"
    assert client_cert_server.count("/ok") == 1


def test_missing_client_certificate_is_refused(
    client_cert_server: MisbehavingServer, ca_file: str
) -> None:
    with HTTPSConnectionPool(
        "127.0.0.1", client_cert_server.port, ca_certs=ca_file, maxsize=1, block=True, timeout=5
    ) as pool:
        with pytest.raises((SSLError, ProtocolError, MaxRetryError)) as excinfo:
            pool.urlopen("GET", "/ok", retries=0)
        # TLS 1.3 reports the server's refusal only on the first read.
        assert_cause(excinfo.value, (SSLError, ProtocolError))
        assert client_cert_server.count("/ok") == 0
        assert pool.num_in_use == 0


def test_pool_manager_verifies_and_accepts_ca_certs(
    https_server: MisbehavingServer, ca_file: str
) -> None:
    with PoolManager(timeout=5) as manager:
        with pytest.raises((SSLError, MaxRetryError)) as excinfo:
            manager.urlopen("GET", https_server.url("/ok"), retries=0)
        assert_cause(excinfo.value, SSLError)
    with PoolManager(ca_certs=ca_file, timeout=5) as manager:
        assert manager.urlopen("GET", https_server.url("/ok")).data == b"ok"
