"""The Python backend of :class:`~crawler.bench.server.SiteServer`, run as its own process.

``python -m crawler.bench.pyserver ROOT ORIGIN...`` loads every file of the site into memory as
a complete ready-to-send response and answers HTTP/1.1 with keep-alive from one asyncio loop
(``crawler.bench.server`` explains why it is not ``http.server``). Kept apart from
``server.py`` so that a process that only starts servers, or only crawls (the benchmark's
measured crawl imports ``crawler.bench`` for its spider), does not import asyncio (about 4 MB
resident, counted again in every forked worker).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from crawler.bench.server import _address

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


def _response(status: int, body: bytes, content_type: bytes, close: bool) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        status,
        _REASONS[status],
        content_type,
        len(body),
    )
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def _load(directory: Path) -> dict[bytes, bytes]:
    files: dict[bytes, bytes] = {}
    for path in directory.rglob("*"):
        if path.is_file():
            target = "/" + path.relative_to(directory).as_posix()
            kind = b"text/html; charset=utf-8" if path.suffix == ".html" else b"text/plain"
            files[target.encode()] = _response(200, path.read_bytes(), kind, close=False)
    return files


_NOT_FOUND = b"<!DOCTYPE html><title>404</title><h1>Not found</h1>\n"


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive for GET and HEAD of in-memory files; bodies are not read."""

    def __init__(self, files: dict[bytes, bytes]) -> None:
        self.files = files
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 65536:
                    self._reply(400, close=True)
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            line, _, fields = head.partition(b"\r\n")
            parts = line.split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                self._reply(400, close=True)
                return
            method, target, version = parts
            lowered = fields.lower()
            close = b"connection: close" in lowered or (
                version == b"HTTP/1.0" and b"connection: keep-alive" not in lowered
            )
            if method not in (b"GET", b"HEAD"):
                self._reply(405, close=True)
                return
            path = target.split(b"?", 1)[0]
            if path.startswith(b"http://"):  # absolute-form target
                path = b"/" + path.split(b"/", 3)[-1]
            found = self.files.get(path)
            if found is None:
                self._reply(404, close=close, head_only=method == b"HEAD")
            else:
                if close:
                    found = found.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
                if method == b"HEAD":
                    found = found[: found.index(b"\r\n\r\n") + 4]
                self.transport.write(found)
            if close:
                self.transport.close()
                return

    def _reply(self, status: int, close: bool, head_only: bool = False) -> None:
        assert self.transport is not None
        data = _response(status, _NOT_FOUND, b"text/html; charset=utf-8", close)
        if head_only:
            data = data[: data.index(b"\r\n\r\n") + 4]
        self.transport.write(data)
        if close:
            self.transport.close()


async def _serve(root: Path, origins: list[str]) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def finish() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, finish)
    servers = []
    for i, origin in enumerate(origins):
        files = _load(root / f"h{i}")
        host, port = _address(origin)
        servers.append(
            await loop.create_server(
                lambda files=files: _Connection(files),  # type: ignore[misc]
                host,
                port,
                reuse_address=True,
                backlog=1024,
            )
        )
    await stop
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a generated benchmark site.")
    parser.add_argument("root", type=Path, help="the site's root (with h0/, h1/, ...)")
    parser.add_argument("origins", nargs="+", help="http://ADDRESS:PORT for host 0, 1, ...")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.root, args.origins))


if __name__ == "__main__":
    main()
