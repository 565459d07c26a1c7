"""The in-flight table: every Job the parent has sent and not yet heard back about.

One table, made by the engine and read by dispatch (a worker's free room; which host's slot to
give back), by the worker handles (``busy``) and by the loop (is anything still out, what a
dead worker held, what a shutdown abandons). A Job is held by exactly one worker, under its
fingerprint. The table keeps two maps (fingerprint -> worker, and worker -> its fingerprints
and their hosts) so every question is one lookup; only the methods here change them, each
change to both at once, so they cannot drift apart. No I/O: requeueing, politeness slots and
logging are the caller's.
"""

from __future__ import annotations

__all__ = ["InFlight"]


class InFlight:
    """Fingerprint -> (worker index, host) of every Job sent and not answered yet."""

    __slots__ = ("_by_worker", "_worker_of")

    def __init__(self) -> None:
        self._worker_of: dict[int, int] = {}  # fp -> worker index
        self._by_worker: dict[int, dict[int, str]] = {}  # worker index -> {fp: host}

    def __repr__(self) -> str:
        per_worker = " ".join(
            f"w{index}:{len(held)}" for index, held in sorted(self._by_worker.items()) if held
        )
        return f"<InFlight {len(self._worker_of)} jobs{' ' + per_worker if per_worker else ''}>"

    def __len__(self) -> int:
        return len(self._worker_of)

    def __contains__(self, fp: object) -> bool:
        return fp in self._worker_of

    def start(self, fp: int, worker: int, host: str) -> None:
        """``fp`` was sent to ``worker``; the Job is for ``host``."""
        previous = self._worker_of.get(fp)
        if previous is not None:  # never expected (the Store hands a fingerprint out once)
            del self._by_worker[previous][fp]
        self._worker_of[fp] = worker
        held = self._by_worker.get(worker)
        if held is None:
            held = self._by_worker[worker] = {}
        held[fp] = host

    def fps(self) -> list[int]:
        """Every fingerprint in flight."""
        return list(self._worker_of)

    def worker_of(self, fp: int) -> int | None:
        """The worker holding ``fp``, or None if it is not in flight."""
        return self._worker_of.get(fp)

    def finish(self, fp: int) -> str | None:
        """``fp`` is answered: forget it; its host, or None if it was not in flight."""
        worker = self._worker_of.pop(fp, None)
        if worker is None:
            return None
        return self._by_worker[worker].pop(fp)

    def take_worker(self, worker: int) -> dict[int, str]:
        """Forget everything ``worker`` holds (it died); its fingerprints and their hosts."""
        held = self._by_worker.pop(worker, {})
        for fp in held:
            del self._worker_of[fp]
        return held

    def take_all(self) -> list[int]:
        """Forget everything in flight (the run is giving up on it); the fingerprints."""
        fps = list(self._worker_of)
        self._worker_of.clear()
        self._by_worker.clear()
        return fps

    def count(self, worker: int) -> int:
        """How many Jobs ``worker`` holds."""
        held = self._by_worker.get(worker)
        return len(held) if held is not None else 0
