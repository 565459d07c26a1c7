"""Decoding a body a read at a time: what a read inflates is bounded by what it asked for.

Correctness: every coding read in small and large steps, by ``read1``, ``stream`` and whole,
comes back equal. Memory: a bomb streamed with ``read(65536)`` never holds much more than a
few reads' worth, all the way to the ``BodyTooLargeError`` at the cap.
"""

from __future__ import annotations

import functools
import gzip
import random
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import brotli
import pytest
import zstandard
from pytest_httpserver import HTTPServer

from crawler.http import BodyTooLargeError, HTTPConnectionPool, HTTPResponse
from crawler.http._decoding import make_decoder
from tests.kit.pools import assert_healthy
from tests.kit.servers import MisbehavingServer, gzip_bomb, nested_bomb

CAP = 50 * 2**20
PEAK = 20 * 2**20


@functools.cache
def plain() -> bytes:
    """About 3 MB of text that compresses a few times, like a page, not like zeros."""
    rng = random.Random(1)
    words = [
        bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(2000)
    ]
    return b" ".join(rng.choice(words) for _ in range(500_000))


def _deflate(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return compressor.compress(data) + compressor.flush()


def _halves(data: bytes, encode: Callable[[bytes], bytes]) -> bytes:
    middle = len(data) // 2
    return encode(data[:middle]) + encode(data[middle:])


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


ENCODINGS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzip.compress),
    "gzip-multi-member": ("gzip", lambda d: _halves(d, gzip.compress)),
    "deflate-zlib": ("deflate", lambda d: _deflate(d, 15)),
    "deflate-raw": ("deflate", lambda d: _deflate(d, -15)),
    "br": ("br", lambda d: brotli.compress(d, quality=5)),
    "zstd": ("zstd", _zstd),
    "zstd-frames": ("zstd", lambda d: _halves(d, _zstd)),
    "deflate,gzip": ("deflate, gzip", lambda d: gzip.compress(_deflate(d, 15))),
}


@functools.cache
def encoded(name: str) -> bytes:
    return ENCODINGS[name][1](plain())


def _read_all(response: HTTPResponse, amt: int) -> Iterator[bytes]:
    while chunk := response.read(amt):
        assert len(chunk) <= amt
        yield chunk


def _read1_all(response: HTTPResponse, amt: int) -> Iterator[bytes]:
    while chunk := response.read1(amt):
        assert len(chunk) <= amt
        yield chunk


READS: dict[str, Callable[[HTTPResponse], Iterator[bytes]]] = {
    "read(1000)": lambda r: _read_all(r, 1000),
    "read(4096)": lambda r: _read_all(r, 4096),
    "read(65536)": lambda r: _read_all(r, 65536),
    "read1(4096)": lambda r: _read1_all(r, 4096),
    "read1()": lambda r: _read1_all(r, 2**16),
    "stream()": lambda r: r.stream(),
    "read()": lambda r: iter([r.read()]),
    "data": lambda r: iter([r.data]),
}


@pytest.mark.parametrize("how", list(READS))
@pytest.mark.parametrize("name", list(ENCODINGS))
def test_every_way_of_reading_gives_the_body(httpserver: HTTPServer, name: str, how: str) -> None:
    httpserver.expect_request("/d").respond_with_data(
        encoded(name), headers={"Content-Encoding": ENCODINGS[name][0]}
    )
    with HTTPConnectionPool(httpserver.host, httpserver.port) as pool:
        response = pool.urlopen("GET", "/d", preload_content=False)
        assert b"".join(READS[how](response)) == plain()
        assert response.read(10) == b""
        assert response.tell() == len(plain())
        assert pool.num_in_use == 0


def test_small_reads_then_the_rest(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/d").respond_with_data(
        encoded("gzip-multi-member"), headers={"Content-Encoding": "gzip"}
    )
    with HTTPConnectionPool(httpserver.host, httpserver.port) as pool:
        response = pool.urlopen("GET", "/d", preload_content=False)
        head = response.read(1000) + response.read1(5000)
        assert head + response.read() == plain()


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_decoder_holds_back_what_it_did_not_decode(name: str) -> None:
    decoder = make_decoder(ENCODINGS[name][0])
    assert decoder is not None
    body = encoded(name)
    parts = []
    for start in range(0, len(body), 50_000):
        parts.append(decoder.decompress(body[start : start + 50_000], 10_000))
        while decoder.pending:
            parts.append(decoder.flush(10_000))
    assert max(map(len, parts)) < 10_000 + 2**17
    assert b"".join(parts) == plain()


# -- bombs: memory per read ------------------------------------------------------------------


def _stream_bomb(pool: HTTPConnectionPool, path: str) -> tuple[int, int]:
    """Read ``path`` with read(65536) up to the cap: (bytes received, peak traced memory)."""
    response = pool.urlopen("GET", path, preload_content=False)
    received = 0
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLargeError):
            while chunk := response.read(65536):
                assert len(chunk) <= 65536
                received += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"{path}: {received} bytes received, {peak / 2**20:.1f} MiB peak traced")
    return received, peak


@pytest.mark.parametrize("path", ["/gzip-bomb", "/nested-bomb"])
def test_bomb_read_in_steps_stays_small(path: str) -> None:
    gzip_bomb(), nested_bomb()  # built before memory is traced
    with MisbehavingServer(lifetime=60.0) as server:
        with HTTPConnectionPool(server.host, server.port, maxsize=1, max_decoded_size=CAP) as pool:
            received, peak = _stream_bomb(pool, path)
            assert CAP - 65536 <= received <= CAP
            assert peak < PEAK, f"{peak / 2**20:.1f} MiB traced while streaming {path}"
            assert_healthy(pool)
        assert server.errors == []


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_other_bombs_read_in_steps_stay_small(httpserver: HTTPServer, coding: str) -> None:
    zeros = bytes(CAP + 2**20)
    body = brotli.compress(zeros, quality=5) if coding == "br" else _zstd(zeros)
    del zeros
    httpserver.expect_request("/bomb").respond_with_data(body, headers={"Content-Encoding": coding})
    with HTTPConnectionPool(httpserver.host, httpserver.port, max_decoded_size=CAP) as pool:
        received, peak = _stream_bomb(pool, "/bomb")
        # zstd decodes in input slices, so its last step may overshoot by a few blocks.
        assert CAP - 2**22 <= received <= CAP
        assert peak < PEAK, f"{peak / 2**20:.1f} MiB traced while streaming {coding}"
        assert pool.num_in_use == 0


def test_whole_read_still_decodes_up_to_the_cap(httpserver: HTTPServer) -> None:
    body = gzip.compress(bytes(3 * 2**20))
    httpserver.expect_request("/z").respond_with_data(body, headers={"Content-Encoding": "gzip"})
    with HTTPConnectionPool(httpserver.host, httpserver.port, max_decoded_size=3 * 2**20) as pool:
        assert pool.request("GET", "/z").data == bytes(3 * 2**20)
        response = pool.urlopen("GET", "/z", preload_content=False)
        assert response.read() == bytes(3 * 2**20)
    with HTTPConnectionPool(
        httpserver.host, httpserver.port, max_decoded_size=3 * 2**20 - 1
    ) as pool:
        with pytest.raises(BodyTooLargeError):
            pool.request("GET", "/z")
        response = pool.urlopen("GET", "/z", preload_content=False)
        with pytest.raises(BodyTooLargeError):
            for _ in response.stream(1000):
                pass
        assert pool.num_in_use == 0
