"""A small well-behaved web site: one threaded HTTP/1.1 server per 127.0.0.x address.

``Site`` (the ``site`` fixture in tests/conftest.py) serves each host's own routes and records
every hit: ``hits`` counts them; ``requests`` keeps each one's host, path, request headers
(lower-case names) and arrival time, in arrival order; ``methods`` and ``bodies`` the method and
body of each, in the same order. A route is a body (str: HTML), a ``(status, headers, body)``
triple, or a callable taking the request path (with query) and returning such a triple; the
``"*"`` route answers any path without a route of its own. A 200 route that sends ``ETag`` or
``Last-Modified`` answers a matching ``If-None-Match`` / ``If-Modified-Since`` with 304 and no
body. ``add_host(..., tls=context)`` serves HTTPS.

This is built on ``http.server``, so it can only speak correct HTTP: for servers that break the
protocol on purpose, use tests/kit/servers.py.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Reply", "Route", "Site"]

Reply = tuple[int, dict[str, str], bytes | str]
Route = str | Reply | Callable[[str], Reply]


def _not_modified(request: Any, reply: dict[str, str]) -> bool:
    """A route that sends ETag / Last-Modified answers a matching conditional GET with 304."""
    etag, modified = reply.get("ETag"), reply.get("Last-Modified")
    if etag and request.get("If-None-Match"):
        return bool(request.get("If-None-Match") == etag)
    return bool(modified and request.get("If-Modified-Since") == modified)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5
    server: _HostServer

    def do_GET(self) -> None:
        body = b""
        if self.headers.get("Content-Length"):
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.site.hit(
            self.server.host,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            method=self.command,
            body=body,
        )
        status, headers, body = self.server.reply(self.path)
        data = body.encode() if isinstance(body, str) else body
        if status == 200 and _not_modified(self.headers, headers):
            status, data = 304, b""
        self.send_response(status)
        headers = {"Content-Type": "text/html; charset=utf-8", **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET  # a route answers any method; the method and body are recorded

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HostServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, site: Site, address: str, routes: dict[str, Route], tls: ssl.SSLContext | None
    ) -> None:
        super().__init__((address, 0), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.site = site
        self.routes = routes
        self.host = f"{address}:{self.server_address[1]}"

    def reply(self, path: str) -> Reply:
        route = self.routes.get(path)
        if route is None:
            route = self.routes.get(path.partition("?")[0])
        if route is None:
            fallback = self.routes.get("*")
            if fallback is None:
                return 404, {}, "not found"
            route = fallback
        if callable(route):
            return route(path)
        if isinstance(route, str):
            return 200, {}, route
        return route

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up is not a test failure


class Site:
    """Servers on several loopback addresses; ``url(host_index, path)`` builds absolute URLs."""

    def __init__(self) -> None:
        self.servers: list[_HostServer] = []
        self.threads: list[threading.Thread] = []
        self.hits: Counter[tuple[str, str]] = Counter()
        self.requests: list[tuple[str, str, dict[str, str], float]] = []
        self.methods: list[str] = []
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()

    def add_host(
        self, address: str, routes: dict[str, Route], tls: ssl.SSLContext | None = None
    ) -> str:
        """Serve ``routes`` on ``address`` (a new port); with ``tls``, over HTTPS."""
        server = _HostServer(self, address, routes, tls)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        self.servers.append(server)
        self.threads.append(thread)
        return server.host

    def hit(
        self,
        host: str,
        path: str,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        body: bytes = b"",
    ) -> None:
        with self._lock:
            self.hits[(host, path)] += 1
            self.requests.append((host, path, headers or {}, time.time()))
            self.methods.append(method)
            self.bodies.append(body)

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for thread in self.threads:
            thread.join(2)

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
