"""The command runner: a command for an event is sent at most once, one at a time per vehicle.

Each command belongs to a step of an event (`event_id`, `step`), whose record the event store keeps
(`eventstore.commands`: state, command, params, sends, result). States (`StepState`):

- `sending`: a send started at `sent_at` and has not ended (it is in flight, or its worker died during
  it). Until `sent_at + command_timeout` the call may still be running: nobody sends, the run is
  deferred. After that, the next run re-reads the vehicle: if the command took effect it is done;
- `unknown`: the send ended ambiguously (timeout, connection reset, 504, UPSTREAM:NO_RESPONSE) and a
  read showed no effect yet. The next run reads again first, and sends only if there is still none;
- `not_sent`: the last send failed in a way that proves the vehicle did not act (safe to send again);
- `done`: finished (by Smartcar's answer, by a benign error code, or by the re-read state).

Sends are serialised per vehicle by a Redis lock with a lease longer than a command call, so two events
for one car never race (a worker that dies holding it blocks that car's commands until the lease ends).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from eventstore.commands import CommandStore, StepRecord, StepState
from eventstore.keys import KeySpace
from smartcar_core.errors import SmartcarError
from smartcar_core.vehicle import Vehicle
from workers.gateway import SmartcarGateway
from workers.limits import DeferredError
from workers.metrics import WorkerMetrics
from workers.settings import lock_lease_problem

_MIN_DEFER = 0.5
_MAX_DEFER = 30.0


def _charging(vehicle: Vehicle) -> bool:
    return vehicle.charge().state == "CHARGING"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """How to send a command, and how to tell from the vehicle's state that it took effect.

    `verify` returns True (took effect), False (did not) or None (cannot tell: the command is sent again,
    so only commands whose repetition is harmless may lack a check).
    """

    name: str
    send: Callable[[Vehicle, Mapping[str, Any]], Any]
    verify: Callable[[Vehicle, Mapping[str, Any]], bool | None]


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("start_charge", lambda v, _: v.start_charge(), lambda v, _: _charging(v)),
        CommandSpec("stop_charge", lambda v, _: v.stop_charge(), lambda v, _: not _charging(v)),
        CommandSpec("lock", lambda v, _: v.lock(), lambda v, _: v.lock_status().is_locked),
        CommandSpec("unlock", lambda v, _: v.unlock(), lambda v, _: not v.lock_status().is_locked),
        CommandSpec(
            "set_charge_limit",
            lambda v, p: v.set_charge_limit(float(p["limit"])),
            lambda v, p: abs(v.get_charge_limit().limit - float(p["limit"])) < 1e-6,  # noqa: PLR2004 - float equality
        ),
        CommandSpec(
            "send_destination",
            lambda v, p: v.send_destination(float(p["latitude"]), float(p["longitude"])),
            lambda _v, _p: None,  # no read tells; showing the same destination twice is harmless
        ),
    )
}


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """How a command ended: `how` is sent, benign, confirmed (by a state read), recorded (earlier run)
    or withdrawn (`still_wanted` said no: not sent)."""

    command: str
    how: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_result(self) -> dict[str, Any]:
        return {"command": self.command, "how": self.how, **self.detail}


class CommandRunner:
    def __init__(
        self,
        client: redis.Redis,
        gateway: SmartcarGateway,
        *,
        keys: KeySpace,
        lock_lease: float,
        lock_wait: float,
        retention: int,
        command_timeout: float,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        problem = lock_lease_problem(lock_lease, command_timeout)
        if problem:
            raise ValueError(problem)
        self.command_timeout = command_timeout
        self.store = CommandStore(client, keys, retention=retention)
        self.gateway = gateway
        self.lock_lease = lock_lease
        self.lock_wait = lock_wait

    def record(self, event_id: str, step: str) -> dict[str, str]:
        """The step's record as stored (empty if it never ran)."""
        return self.store.read(event_id, step).fields

    def run(
        self,
        *,
        event_id: str,
        step: str,
        vehicle_id: str,
        command: str,
        params: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> CommandOutcome:
        """Send `command` for (event, step) unless that already happened; a failure raises `SmartcarError`.

        `still_wanted`, when given, is asked under the vehicle's lock before each send: False withdraws it.
        """
        spec = COMMANDS.get(command)
        if spec is None:
            raise ValueError(f"unknown command {command!r}; known: {', '.join(sorted(COMMANDS))}")
        params = dict(params or {})
        stored = _Step(self.store, event_id, step)
        if self.store.state(event_id, step) == StepState.DONE:
            self._count(command, "recorded")
            return stored.recorded(command)
        lock = self.store.lock(vehicle_id, lease=self.lock_lease)
        if not lock.acquire(blocking=True, blocking_timeout=self.lock_wait):
            delay = min(_MAX_DEFER, max(_MIN_DEFER, self.store.lock_left(vehicle_id)))
            raise DeferredError(f"vehicle {vehicle_id} is busy with another command", delay)
        try:
            outcome = self._run_locked(spec, stored, vehicle_id, params, deadline, still_wanted=still_wanted)
        except SmartcarError as error:
            self._count(command, "ambiguous" if error.ambiguous else "failed")
            raise
        finally:
            with contextlib.suppress(redis.exceptions.LockError):  # the lease ran out: nothing to release
                lock.release()
        self._count(command, outcome.how)
        return outcome

    def _count(self, command: str, how: str) -> None:
        if self.metrics is not None:
            self.metrics.commands(command, how).inc()

    def _run_locked(
        self,
        spec: CommandSpec,
        stored: _Step,
        vehicle_id: str,
        params: dict[str, Any],
        deadline: float | None,
        *,
        still_wanted: Callable[[], bool] | None,
    ) -> CommandOutcome:
        record = stored.read()
        state = record.state
        if state == StepState.DONE:
            return stored.recorded(spec.name)
        if state == StepState.SENDING:
            in_flight_until = record.sent_at + self.command_timeout
            if time.time() < in_flight_until:
                wait = min(_MAX_DEFER, max(_MIN_DEFER, in_flight_until - time.time()))
                raise DeferredError(f"{spec.name} may still be in flight", wait)
        if state in (StepState.SENDING, StepState.UNKNOWN) and self._took_effect(
            spec, vehicle_id, params, deadline
        ):
            return stored.finish(spec.name, "confirmed", {"reason": "an earlier send took effect"})
        if still_wanted is not None and not still_wanted():
            return CommandOutcome(
                spec.name, "withdrawn", {"reason": "no longer wanted on the vehicle's state"}
            )
        stored.mark(StepState.SENDING, spec.name, params, sending=True)
        try:
            answer = self.gateway.call(
                vehicle_id, lambda v: spec.send(v, params), command=True, deadline=deadline
            )
        except SmartcarError as error:
            if error.is_benign_for(spec.name):
                return stored.finish(spec.name, "benign", {"code": error.code})
            if not error.ambiguous:
                stored.mark(StepState.NOT_SENT, spec.name, params)
                raise
            # The vehicle may have acted: look before anyone sends again.
            if self._took_effect(spec, vehicle_id, params, deadline):
                return stored.finish(
                    spec.name, "confirmed", {"reason": f"state shows it took effect after {error.code}"}
                )
            stored.mark(StepState.UNKNOWN, spec.name, params)
            raise
        status = getattr(answer, "status", None)
        return stored.finish(spec.name, "sent", {"status": status})

    def _took_effect(
        self, spec: CommandSpec, vehicle_id: str, params: dict[str, Any], deadline: float | None
    ) -> bool:
        verdict = self.gateway.call(vehicle_id, lambda v: spec.verify(v, params), deadline=deadline)
        return verdict is True


@dataclass(frozen=True, slots=True)
class _Step:
    """One (event, step)'s record, through the store."""

    store: CommandStore
    event_id: str
    step: str

    def read(self) -> StepRecord:
        return self.store.read(self.event_id, self.step)

    def mark(self, state: StepState, command: str, params: dict[str, Any], *, sending: bool = False) -> None:
        self.store.mark(self.event_id, self.step, state, command=command, params=params, sending=sending)

    def finish(self, command: str, how: str, detail: dict[str, Any]) -> CommandOutcome:
        outcome = CommandOutcome(command, how, detail)
        self.store.finish(self.event_id, self.step, outcome.as_result())
        return outcome

    def recorded(self, command: str) -> CommandOutcome:
        return CommandOutcome(command, "recorded", {"earlier": self.store.result(self.event_id, self.step)})
