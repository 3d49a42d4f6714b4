"""`HandlerContext`: what a handler gets, the stored event, its parsed envelope, and the services.

Handler authors import it from `workers.api`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventstore.record import EventRecord
from eventstore.vehicles import SignalState, SignalUpdate, StagedSignals, VehicleStateStore
from smartcar_core.events import Envelope
from workers.commands import CommandOutcome, CommandRunner
from workers.gateway import SmartcarGateway
from workers.settings import WorkerSettings


@dataclass
class HandlerContext:
    """What a handler gets: the stored event, its parsed envelope, the services, and the results so far.

    The services are the worker's own (`workers.runtime.Runtime`): its settings, the vehicles' latest
    known state, the Smartcar gateway (tokens, rate bucket, retries of a refused token) and the command
    runner (at most once per event and step). Signal values a handler stores (`store_signals`) are
    `staged`: merged with the run's end, in the script that ends it, or before the run reads the state.
    """

    record: EventRecord
    envelope: Envelope
    settings: WorkerSettings
    vehicles: VehicleStateStore
    gateway: SmartcarGateway
    commands: CommandRunner
    results: dict[str, Any]
    deadline: float
    """`time.monotonic()` by which the run should end (the task's soft time limit)."""
    staged: StagedSignals = field(default_factory=StagedSignals)
    fetched: dict[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return self.record.id

    @property
    def vehicle_id(self) -> str:
        vehicle = self.envelope.vehicle_id or self.record.vehicle_id
        if not vehicle:
            raise ValueError(f"event {self.record.id} names no vehicle")
        return vehicle

    @property
    def user_id(self) -> str | None:
        return self.envelope.user_id or self.record.user_id

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def store_signals(self, updates: Sequence[SignalUpdate], *, vehicle_id: str | None = None) -> int:
        """Keep `updates` as the latest state of `vehicle_id` (this event's vehicle) where they are newer
        than what is stored: merged by `oemUpdatedAt`, then `retrievedAt`, when the run ends (or before it
        reads the state back). Returns how many values were given."""
        return self.staged.add(vehicle_id or self.vehicle_id, updates, event_id=self.event_id)

    def vehicle_signals(self) -> dict[str, SignalState]:
        """The vehicle's latest known signals (the webhook's, merged by oemUpdatedAt, and fetched ones),
        this run's own values included."""
        self.vehicles.apply(self.staged)
        return self.vehicles.signals(self.vehicle_id)

    def signal_value(self, code: str) -> Any:
        """The latest known value of `code` for this vehicle, or None."""
        state = self.vehicle_signals().get(code)
        return state.value if state is not None else None

    def payload_codes(self) -> set[str]:
        """Codes this delivery carries with a value."""
        return {signal.code for signal in self.envelope.signals if signal.ok}

    def ensure_signals(self, codes: Sequence[str], *, fresh: bool = False) -> dict[str, Any]:
        """Fetch from Smartcar the `codes` this delivery lacks (once per run); store them as vehicle state.

        `fresh` reads every one of `codes`, carried or fetched before: what a delivery carries may be older
        than the car's state (deliveries are unordered; a FIRST_DELIVERY repeats the state at subscription).
        """
        if fresh:
            missing = list(dict.fromkeys(codes))
        else:
            carried = self.payload_codes()
            missing = [c for c in dict.fromkeys(codes) if c not in carried and c not in self.fetched]
        if not missing:
            return {}
        settings = self.settings
        api = "v2" if self.envelope.version.startswith("2") else settings.signals_api
        fetched = self.gateway.fetch_signals(
            self.vehicle_id, missing, user_id=self.user_id, api=api, deadline=self.deadline
        )
        self.store_signals(fetched.updates)
        for update in fetched.updates:
            self.fetched[update.code] = update.value
        for code, error in fetched.errors.items():
            self.fetched[code] = {"error": error}
        return {"fetched": sorted(u.code for u in fetched.updates), "errors": fetched.errors}

    def run_command(
        self,
        command: str,
        *,
        step: str,
        params: Mapping[str, Any] | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> CommandOutcome:
        """Send a command for this event; sent at most once per (event, step) however often this runs.

        `still_wanted` is asked right before a send, holding the vehicle's command lock: a decision taken
        on stored state can check the car's state first (see the charging rule), and a command another
        event just sent is seen there. False withdraws the command (outcome `withdrawn`, nothing recorded).
        """
        return self.commands.run(
            event_id=self.event_id,
            step=step,
            vehicle_id=self.vehicle_id,
            command=command,
            params=params,
            deadline=self.deadline,
            still_wanted=still_wanted,
        )
