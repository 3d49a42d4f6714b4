"""Events run in the process whose relay claimed them, on threads of its own, without a Celery message.

Why: a Celery message per event cost a worker about half its CPU (the consumer's pop, its record of the
message as unacknowledged and its acknowledgement: three Redis round trips, and the consumer thread
competing with the busy pool for the GIL; the profile is in bench/README.md). The store already knows
everything a message would: the claim marks the event queued in `{p}pending`, the run's lease covers a
run whose process dies (`workers.leases`), and the sweeper takes up an event left queued
(`WORKERS_SWEEP_AFTER`). So with `WORKERS_RELAY_DISPATCH=local` (the default with the threads pool) the
relay hands the ids it claims to `LocalRuns`, which runs `process_event` for each on one of
`WORKERS_EVENT_CONCURRENCY` threads. The relay claims only while fewer than its high-water mark are
waiting or running here, so a busy process leaves the inbox to the others: the inbox is the one queue.

What the Celery queue still carries: retries due within `WORKERS_MAX_COUNTDOWN` (countdowns), events the
sweeper or an operator sends again, and every other task. At a warm shutdown the ids not yet started
are handed to it (`hand_over`), so another worker runs them at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from service_base.logs import get_logger

log = get_logger("workers.local_runs")

Run = Callable[[str], object]
HandOver = Callable[[list[str]], None]


class LocalRuns:
    """A bounded set of threads running events by id; `submit` is a relay's publish, `depth` its queue
    length (waiting plus running here)."""

    def __init__(self, run: Run, *, threads: int, hand_over: HandOver) -> None:
        self._run = run
        self._hand_over = hand_over
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="smartcar-event")
        # Reentrant: a future that ends (or is cancelled) while the lock is held calls `_finished` at once.
        self._lock = threading.RLock()
        self._futures: dict[Future[None], str] = {}
        self._stopped = False

    def depth(self) -> int:
        return len(self._futures)

    def submit(self, event_ids: list[str]) -> None:
        with self._lock:
            if self._stopped:  # a relay pass that raced the shutdown: what it claimed goes on Celery
                refused = list(event_ids)
            else:
                refused = []
                for event_id in event_ids:
                    future = self._executor.submit(self._one, event_id)
                    self._futures[future] = event_id
                    future.add_done_callback(self._finished)
        if refused:
            self._hand_over(refused)

    def _one(self, event_id: str) -> None:
        try:
            self._run(event_id)
        except Exception:  # Redis away mid-run, say: the lease or the sweeper takes the event up again
            log.warning("event_run_failed", event_id=event_id, exc_info=True)

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.pop(future, None)

    def stop(self, *, wait: bool = True) -> list[str]:
        """Stop taking ids; hand those not started over to Celery; wait for the running ones to end
        (unless not `wait`: a cold shutdown, whose runs the leases take over). Returns the ids handed
        over."""
        with self._lock:
            self._stopped = True
            waiting = [event_id for future, event_id in list(self._futures.items()) if future.cancel()]
        if waiting:
            self._hand_over(waiting)
            log.info("local_runs_handed_over", count=len(waiting))
        self._executor.shutdown(wait=wait)
        return waiting
