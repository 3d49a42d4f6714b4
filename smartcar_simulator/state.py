"""Everything the running simulator knows, in one object the routes share (`request.app.state.sim`)."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smartcar_simulator.clock import SimClock, iso_time
from smartcar_simulator.faults import FaultBook
from smartcar_simulator.fleet import Fleet, Vehicle, seeded_fleet
from smartcar_simulator.latency import ApplyAt, LatencyModel
from smartcar_simulator.limits import RateLimiter
from smartcar_simulator.settings import SimulatorSettings
from smartcar_simulator.tokens import TokenStore


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One API call the simulator received (control calls are not recorded), recorded when it ended.

    `status` is what the simulator answered, or would have answered had its caller stayed; None when it
    closed the connection unanswered (a `drop` fault) or the caller left before its request was complete.
    `client_gone`: the caller went away before the answer (its timeout, a killed worker); the call took
    effect all the same, as a car obeys a command whether or not the HTTP caller is still there.
    """

    time: float
    method: str
    path: str
    vehicle_id: str | None
    sub_path: str | None
    status: int | None
    request_id: str
    duration: float
    client_gone: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "at": iso_time(self.time),
            "method": self.method,
            "path": self.path,
            "vehicle_id": self.vehicle_id,
            "sub_path": self.sub_path,
            "status": self.status,
            "request_id": self.request_id,
            "duration": round(self.duration, 6),
            "client_gone": self.client_gone,
        }


ChangeListener = Callable[[Vehicle, str], None]


class Simulator:
    """Settings, clock, fleet, tokens, faults, limits, latency (and where in it a call takes effect) and
    the request record."""

    def __init__(self, settings: SimulatorSettings, *, clock: SimClock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SimClock()
        self.rng = random.Random(settings.seed)  # noqa: S311 - latency and fault dice, not secrets
        self.fleet: Fleet = self._new_fleet()
        self.tokens = TokenStore(
            self.clock,
            access_ttl=settings.access_token_ttl,
            refresh_ttl=settings.refresh_token_ttl,
            refresh_grace=settings.refresh_grace,
            code_ttl=settings.code_ttl,
        )
        self.faults = FaultBook(self.rng)
        self.limits = RateLimiter(self.clock)
        self.latency: LatencyModel = settings.latency
        self.apply_at: ApplyAt = settings.apply_at
        self._configure_from_settings()
        self.requests: deque[RecordedRequest] = deque(maxlen=settings.max_recorded_requests or None)
        self.record_requests = settings.max_recorded_requests > 0
        self.change_listeners: list[ChangeListener] = []
        self.subscribe_listeners: list[ChangeListener] = []
        self.subscriptions: dict[str, set[str]] = {}  # webhook id -> vehicle ids
        self.connect_counter = 0

    def _new_fleet(self) -> Fleet:
        settings = self.settings
        return seeded_fleet(
            settings.vehicles,
            settings.seed,
            self.clock,
            per_user=settings.vehicles_per_user,
            charge_per_hour=settings.charge_per_hour,
            speed=settings.clock_speed,
        )

    def _configure_from_settings(self) -> None:
        self.latency = self.settings.latency
        self.apply_at = self.settings.apply_at
        self.limits.configure(self.settings.rate_limits)
        self.faults.clear()
        for spec in self.settings.faults:
            self.faults.add(spec)

    def reset(self) -> None:
        """Back to the start: the seeded fleet, the configured latency, apply-at, limits and faults; no
        tokens, recorded requests or subscriptions."""
        self.fleet = self._new_fleet()
        self.tokens.clear()
        self._configure_from_settings()
        self.requests.clear()
        self.subscriptions.clear()

    def record(self, entry: RecordedRequest) -> None:
        if self.record_requests:
            self.requests.append(entry)

    def subscribe(self, webhook_id: str, vehicle: Vehicle) -> None:
        self.subscriptions.setdefault(webhook_id, set()).add(vehicle.id)
        for listener in self.subscribe_listeners:
            listener(vehicle, webhook_id)

    def unsubscribe(self, webhook_id: str, vehicle_id: str) -> None:
        self.subscriptions.get(webhook_id, set()).discard(vehicle_id)

    def changed(self, vehicle: Vehicle, cause: str) -> None:
        """A vehicle's state changed (command, PATCH, charging progress): tell the listeners (webhooks)."""
        for listener in self.change_listeners:
            listener(vehicle, cause)
