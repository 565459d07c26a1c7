"""The worker's half of lease fencing: no request goes on the wire past ``Job.not_after``.

How this works. A node of a shared run (``crawler.engine.nodes``) may start requests to a
host only until its local lease deadline, which falls before the server's lease expiry; the
host may change owners a grace (longer than a whole request) after that expiry. The parent
stops dispatching at the deadline, but a Job it sent earlier can still wait in this worker:
in the local queue behind busy fetch threads, or for a slot of the host's ``block=True``
pool, or in a process that was stopped (``SIGSTOP``, a frozen VM) and resumed after the host
was taken over. So the deadline travels with the Job and is checked here, right before each
request is sent:

- :func:`past` before every send (the first one, and each proxy rotation of ``_open``): a
  Job past its deadline is answered ``lease_lost`` unsent;
- :func:`slot_wait` bounds the wait for a pool slot by the deadline, so a fetch thread never
  takes a slot after it (the pool raises ``EmptyPoolError``, answered ``lease_lost`` too).

Once a request has its slot, the pool's whole-response deadline (``Timeout.total``, started
right after the slot is taken) refuses to send after it, and it is shorter than the grace: a
process stopped between the check and the send does not send to a host after a new owner
started. What is left open is a few instructions wide: a stop between taking the slot and
starting that clock, or a thread that was already waiting for a slot when the process was
stopped and, on resume, gets one freed at that moment before the pool looks at its timeout
again (the engine never sends a worker more than its share of a host's slots, so in practice
no thread waits for one).

``time.monotonic()`` is CLOCK_MONOTONIC on Linux: one clock for every process of the
machine, which the parent's deadline is measured on. Retries and redirect hops are Jobs of
their own, dispatched (and given a deadline) again by whoever holds the host then.
"""

from __future__ import annotations

import time

from crawler.messages import Job

__all__ = ["past", "slot_wait"]


def past(job: Job) -> bool:
    """Has ``job``'s deadline passed? Never for a Job without one (SQLite)."""
    return job.not_after is not None and time.monotonic() >= job.not_after


def slot_wait(job: Job) -> float | None:
    """How long a fetch may wait for a pool slot: unbounded without a deadline, else at most
    what is left of it (never negative: the pool then raises at once if no slot is free)."""
    if job.not_after is None:
        return None
    return max(0.0, job.not_after - time.monotonic())
