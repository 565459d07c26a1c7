"""A server that slows down and then refuses work as more requests to a host run at once.

``LoadServer(addresses, slow_hosts=...)`` answers every path with a page (``pages``, else
``ok``). For a host in ``slow_hosts`` (an address, as in the Host header without the port)
the answer depends on how many requests to that host are being handled at once, this one
included: up to ``fast_up_to`` it takes ``base_latency``; beyond that ``slow_latency``; beyond
``refuse_above`` it is a 503. Other hosts always take ``base_latency``. Per host it records
the most requests handled at once (``max_active``), the level each request met on arrival
(``levels``) and the 503s sent (``refused``), which is what the autothrottle tests assert on.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

from tests.kit.servers import LOOPBACK, Connection, LoopbackServer

__all__ = ["LoadServer"]


class LoadServer(LoopbackServer):
    """Latency grows sharply beyond ``fast_up_to`` requests at once; 503 beyond ``refuse_above``."""

    def __init__(
        self,
        addresses: tuple[str, ...] = (LOOPBACK,),
        *,
        slow_hosts: tuple[str, ...] = (),
        pages: dict[str, bytes] | None = None,
        base_latency: float = 0.02,
        slow_latency: float = 0.5,
        fast_up_to: int = 3,
        refuse_above: int = 5,
        lifetime: float = 120.0,
    ) -> None:
        super().__init__(addresses, lifetime=lifetime)
        self.slow_hosts = set(slow_hosts)
        self.pages = pages or {}
        self.base_latency = base_latency
        self.slow_latency = slow_latency
        self.fast_up_to = fast_up_to
        self.refuse_above = refuse_above
        self.active: Counter[str] = Counter()
        self.max_active: Counter[str] = Counter()
        self.levels: defaultdict[str, list[int]] = defaultdict(list)
        self.refused: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def handle(self, conn: Connection) -> None:
        while (arrival := conn.read_request()) is not None:
            name = (arrival.header("host") or "").rsplit(":", 1)[0]
            with self._count_lock:
                self.arrivals.append(arrival)
                self.active[name] += 1
                level = self.active[name]
                self.levels[name].append(level)
                self.max_active[name] = max(self.max_active[name], level)
            try:
                if name in self.slow_hosts and level > self.refuse_above:
                    with self._count_lock:
                        self.refused[name] += 1
                    status, body = 503, b"busy"
                else:
                    slow = name in self.slow_hosts and level > self.fast_up_to
                    conn.wait(self.slow_latency if slow else self.base_latency)
                    status, body = 200, self.pages.get(arrival.path, b"ok")
            finally:
                with self._count_lock:
                    self.active[name] -= 1
            if not conn.respond(status, body, [("Content-Type", "text/html")]):
                return
