"""The relay: turns the receiver's inbox into runs of `process_event` at the workers' pace.

The receiver's whole Redis work is one round trip (store, dedupe, push the id to `{p}inbox`); the rest is
paid here, on the worker side. Each worker process runs one relay thread (a Celery bootstep;
`WORKERS_RELAY_ENABLED=false` turns it off, and `smartcar-events relay` runs one on its own). What it
"publishes" to is given: the process's own event threads (`workers.local_runs`, the default), with
`depth` their count of waiting and running ids, or Celery's queue (`workers.publish`), with `depth` the
queue's length. A loop:

1. parked retries that are due are taken off `{p}scheduled` and published (looked at every 0.25 s), and
   runs whose lease ended (their worker died: `workers.leases`) are taken over and published again
   (looked at every `lease_check_interval`, 5 s);
2. while the queue holds fewer than its high-water mark, up to `relay_batch` ids are
   popped from the inbox (one RPOP) and marked queued (one Lua call, given their event keys), then
   published (to Celery in one LPUSH): a burst waits in the inbox, not as thousands of queued runs. The
   Celery queue's length is read when it may be near the mark (and at least every 0.1 s), not on every
   pass; the local threads' count is read on every pass (it is in memory);
3. with nothing to do, it blocks on the inbox (BLMPOP: whatever has arrived, up to a batch) for up to
   `relay_idle_wait` seconds. When that brings less than a batch, it lingers `relay_linger` seconds
   (10 ms) and claims what came meanwhile: at a steady trickle a pass costs four round trips (pop, pop,
   claim, publish) for several events instead of for each.

An operator's pause (`eventstore.pauses`, `smartcar-events pause`) is looked at once per pass at most,
and no more than every `pause_every` (0.1 s): one HGET. While paused the relay claims nothing (parked
retries and taken-over runs still go out: they are work already begun); a blocking pop that returns
after a pause began gives its ids back to the inbox. While a drain runs, each claim asks the drain's
shared bucket how many it may take (one script call) instead.

If the relay dies between popping and publishing, the ids are `received` and out of the inbox (it died
before the claim) or `queued` (after it), with no task: the sweeper re-enqueues them after `sweep_after`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import kombu.exceptions
import redis

from eventstore.events import EventStore
from eventstore.pauses import Pauses, PauseState
from service_base.logs import get_logger

log = get_logger("workers.relay")
_FULL_QUEUE_WAIT = 0.05
_ERROR_WAIT = 1.0
_DUE_EVERY = 0.25
DEPTH_EVERY = 0.1
_PAUSE_EVERY = 0.1

Publish = Callable[[list[str]], None]


class Relay:
    def __init__(
        self,
        store: EventStore,
        publish: Publish,
        depth: Callable[[], int],
        *,
        batch: int,
        high_water: int,
        idle_wait: float,
        due_every: float = _DUE_EVERY,
        depth_every: float = DEPTH_EVERY,
        linger: float = 0.0,
        lease_check_every: float = 5.0,
        lease_hold: float = 120.0,
        pause_every: float = _PAUSE_EVERY,
    ) -> None:
        self.store = store
        self.pauses = Pauses(store.redis, store.keys)
        self.pause_every = pause_every
        self._pause_checked = -pause_every
        self._pause: str | None = None
        self.publish = publish
        self.depth = depth
        self.batch = batch
        self.high_water = high_water
        self.idle_wait = idle_wait
        self.published = 0
        self.linger = linger
        self.due_every = due_every
        self.depth_every = depth_every
        self._due_checked = -due_every
        self.lease_check_every = lease_check_every
        self.lease_hold = lease_hold
        self._leases_checked = -lease_check_every
        self._depth_checked = -depth_every
        self._depth = 0

    def _send(self, ids: list[str]) -> int:
        if ids:
            self.publish(ids)
            self.published += len(ids)
        return len(ids)

    def _room(self) -> int:
        """How many more messages the Celery queue may take (its length, read only when it matters)."""
        now = time.monotonic()
        if self._depth >= self.high_water // 2 or now - self._depth_checked >= self.depth_every:
            self._depth = self.depth()
            self._depth_checked = now
        return self.high_water - self._depth

    def _sent(self, count: int) -> int:
        self._depth += count
        return count

    def _paused(self, *, fresh: bool = False) -> str | None:
        """The global pause's state, read at most every `pause_every` s (or now, when `fresh`)."""
        now = time.monotonic()
        if fresh or now - self._pause_checked >= self.pause_every:
            self._pause = self.pauses.state()
            self._pause_checked = now
        return self._pause

    def _allowed(self, want: int) -> int:
        """How many ids this pass may claim: `want`, 0 while paused, the drain's share while draining."""
        state = self._paused()
        if state is None:
            return want
        if state == PauseState.PAUSED:
            return 0
        granted = self.pauses.take(want)
        if granted < 0:  # the drain ended (the inbox emptied) or was lifted: full speed until told
            self._pause = None
            return want
        return granted

    def run_once(self) -> tuple[int, bool]:
        """One pass: (ids published, whether the Celery queue is full)."""
        sent = 0
        now = time.monotonic()
        if now - self._due_checked >= self.due_every:
            self._due_checked = now
            sent = self._sent(self._send(self.store.due(self.batch)))
        if now - self._leases_checked >= self.lease_check_every:
            self._leases_checked = now
            sent += self._sent(self._send(self._take_over()))
        room = self._room()
        if room <= 0:
            return sent, True
        allowed = self._allowed(min(self.batch, room))
        if allowed <= 0:  # paused, or the drain's bucket is empty: wait as for a full queue
            return sent, True
        return sent + self._sent(self._send(self.store.claim(allowed))), False

    def _take_over(self) -> list[str]:
        """Runs whose lease ended: their worker died (or lost Redis for longer than a lease)."""
        taken = self.store.take_over(self.store.expired_leases(self.batch), hold=self.lease_hold)
        if taken:
            log.warning("runs_taken_over", count=len(taken), event_ids=taken[:10])
        return taken

    def wait_for_inbox(self) -> int:
        """Block on the inbox until ids arrive (or `idle_wait` passes); publish what came."""
        room = max(1, min(self.batch, self._room()))
        ids = self.store.wait_pop(self.idle_wait, room)
        if not ids:
            return 0
        if self._paused(fresh=True) is not None:  # a pause (or a drain) began while it blocked
            self.pauses.give_back(ids)
            return 0
        if len(ids) < room and self.linger > 0:
            # A trickle: let a few more arrive, so that one claim and one publish carry several.
            time.sleep(self.linger)
            return self._sent(self._send(self.store.claim(room - len(ids), ids)))
        return self._sent(self._send(self.store.mark_queued(ids)))

    def run(self, stop: threading.Event) -> None:
        log.info("relay_started", inbox=self.store.keys.inbox, high_water=self.high_water)
        while not stop.is_set():
            try:
                sent, full = self.run_once()
                if full:
                    stop.wait(_FULL_QUEUE_WAIT)
                elif sent == 0:
                    self.wait_for_inbox()
            # The broker refusing Celery's apply_async (WORKERS_RELAY_FAST_PUBLISH=false) is kombu's
            # OperationalError: an outage like Redis's, not an unexpected error.
            except (redis.RedisError, OSError, kombu.exceptions.OperationalError):
                log.warning("relay_redis_unavailable", retry_in=_ERROR_WAIT, exc_info=True)
                stop.wait(_ERROR_WAIT)
            except Exception:
                log.exception("relay_failed", retry_in=_ERROR_WAIT)
                stop.wait(_ERROR_WAIT)
        log.info("relay_stopped", published=self.published)


class RelayThread:
    """A relay on a daemon thread, stopped (and joined) by `stop()`."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=relay.run, args=(self._stop,), name="smartcar-relay", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
