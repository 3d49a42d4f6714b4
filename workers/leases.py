"""The lease heartbeat: a worker process keeps the leases of the runs it is working on alive.

`EventStore.begin` gives a run a short lease (`WORKERS_LEASE_SECONDS`, 20 s). While the run lasts, one
daemon thread per process renews the leases of all its runs in one round trip every
`WORKERS_LEASE_RENEW_INTERVAL` (5 s), for at most the hard time limit of each run (a run stuck past it
stops being renewed, and is taken over like a dead one). When the process dies the renewals stop, the
leases end, and a relay takes the runs over (`EventStore.expired_leases`, `take_over`): a killed
worker's runs start again within seconds instead of after the hard time limit.

A renewal that fails (Redis away) is logged and tried at the next beat; a run whose lease another run
took over meanwhile is dropped from the heartbeat (its own transitions are fenced by its run id).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from eventstore.events import EventStore
from eventstore.record import EventRecord
from service_base.logs import get_logger

log = get_logger("workers.leases")


@dataclass(frozen=True, slots=True)
class _Held:
    run_id: str
    renew_until: float


class LeaseKeeper:
    """The leases of this process's runs, renewed by a thread started with the first run."""

    def __init__(self, store: EventStore, *, lease: float, interval: float, max_run: float) -> None:
        self.store = store
        self.lease = lease
        self.interval = interval
        self.max_run = max_run
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, record: EventRecord) -> Iterator[None]:
        """Keep `record`'s lease (taken by `begin`) alive while the block runs."""
        if record.run_id is None:
            yield
            return
        with self._lock:
            self._held[record.id] = _Held(record.run_id, time.time() + self.max_run)
            self._start()
        try:
            yield
        finally:
            with self._lock:
                held = self._held.get(record.id)
                if held is not None and held.run_id == record.run_id:
                    del self._held[record.id]

    def held(self) -> dict[str, str]:
        """Event id -> run id of the runs renewed now."""
        with self._lock:
            return {event_id: held.run_id for event_id, held in self._held.items()}

    def renew_once(self, *, now: float | None = None) -> set[str]:
        """Renew every held lease still within its run's limit; returns the ids renewed."""
        now = time.time() if now is None else now
        with self._lock:
            runs = {event_id: held.run_id for event_id, held in self._held.items() if held.renew_until > now}
        renewed = self.store.renew(runs, lease=self.lease, now=now)
        lost = set(runs) - renewed
        if lost:
            with self._lock:
                for event_id in lost:
                    held = self._held.get(event_id)
                    if held is not None and held.run_id == runs[event_id]:
                        del self._held[event_id]
            log.warning("lease_lost", count=len(lost), event_ids=sorted(lost)[:10])
        return renewed

    def _start(self) -> None:
        """Start the thread on first use (called with the lock held): after a prefork child is forked."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="smartcar-leases", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renew_once()
            except (redis.RedisError, OSError) as error:
                log.warning("lease_renew_failed", error=type(error).__name__, retry_in=self.interval)
            except Exception:  # the heartbeat must outlive a bug in one beat
                log.exception("lease_renew_failed", retry_in=self.interval)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None
