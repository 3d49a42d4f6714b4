"""The command runner's promises, kept against the simulator as Smartcar: a command it does not know and a
vehicle lock that could expire mid-call are refused up front; a step sent once is never sent again, even by
a second run that waited for the vehicle's lock meanwhile; a vehicle busy with another event's command
longer than the lock wait defers the run; `still_wanted` saying no sends nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from eventstore.commands import StepState
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from workers.commands import CommandOutcome, CommandRunner
from workers.limits import DeferredError
from workers.runtime import Runtime
from workers.settings import WorkerSettings

Maker = Callable[..., dict[str, Any]]


def _event() -> str:
    return str(uuid.uuid4())


def test_an_unknown_command_is_refused_before_anything_is_sent(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime()
    vehicle = connect(runtime)
    with pytest.raises(ValueError, match="unknown command 'honk'; known: lock, send_destination, "):
        runtime.commands.run(event_id=_event(), step="s", vehicle_id=vehicle["id"], command="honk")
    assert sim.control.requests(vehicle_id=vehicle["id"]) == []


def test_a_vehicle_lock_that_could_expire_during_a_command_is_refused(
    sim_runtime: Callable[..., Runtime], settings: WorkerSettings
) -> None:
    runtime = sim_runtime()
    problem = "WORKERS_VEHICLE_LOCK_LEASE (10 s) must exceed WORKERS_COMMAND_TIMEOUT (10 s)"
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        CommandRunner(
            runtime.redis,
            runtime.gateway,
            keys=runtime.keys,
            lock_lease=10.0,
            lock_wait=1.0,
            retention=60,
            command_timeout=10.0,
        )
    # The settings refuse the same pair, in the same words, before any worker starts.
    with pytest.raises(ValidationError, match="WORKERS_VEHICLE_LOCK_LEASE \\(5 s\\) must exceed"):
        settings.model_validate({**settings.model_dump(), "vehicle_lock_lease": 5.0})


def test_a_step_that_finished_is_recorded_and_never_sent_again(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime()
    vehicle = connect(runtime, locked=False)
    event_id = _event()
    first = runtime.commands.run(event_id=event_id, step="lock", vehicle_id=vehicle["id"], command="lock")
    assert first.how == "sent"
    assert runtime.commands.record(event_id, "lock")["state"] == StepState.DONE
    sim.control.patch_vehicle(vehicle["id"], locked=False)  # whatever the car did since
    again = runtime.commands.run(event_id=event_id, step="lock", vehicle_id=vehicle["id"], command="lock")
    assert again == CommandOutcome("lock", "recorded", {"earlier": first.as_result()})
    assert len(sim.control.requests(vehicle_id=vehicle["id"], method="POST")) == 1
    assert runtime.commands.record(_event(), "lock") == {}  # a step that never ran has no record


def test_a_run_that_waited_for_the_lock_finds_the_step_done_and_sends_nothing(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    # A redelivered task runs the step while the first run is still sending it: the second waits for the
    # vehicle's lock, then finds the step done.
    first_runtime, second_runtime = sim_runtime(), sim_runtime()
    vehicle = connect(first_runtime, locked=False)
    event_id = _event()
    sim.control.set_latency("fixed", seconds=0.5)
    outcomes: dict[str, CommandOutcome] = {}

    def run(name: str, runtime: Runtime) -> None:
        outcomes[name] = runtime.commands.run(
            event_id=event_id, step="lock", vehicle_id=vehicle["id"], command="lock"
        )

    first = threading.Thread(target=run, args=("first", first_runtime))
    first.start()
    wait_until(
        lambda: first_runtime.commands.store.state(event_id, "lock") == StepState.SENDING,
        timeout=5,
        what="the first run to be sending",
    )
    run("second", second_runtime)  # blocks on the vehicle's lock until the first run ends
    first.join()
    assert outcomes["first"].how == "sent"
    assert outcomes["second"].how == "recorded"
    assert outcomes["second"].detail["earlier"] == outcomes["first"].as_result()
    assert len(sim.control.requests(vehicle_id=vehicle["id"], method="POST")) == 1


def test_a_vehicle_busy_longer_than_the_lock_wait_defers_the_other_events_command(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime(vehicle_lock_wait=0.2)
    vehicle = connect(runtime, locked=False)
    sim.control.set_latency("fixed", seconds=1.5)
    busy = threading.Thread(
        target=runtime.commands.run,
        kwargs={"event_id": _event(), "step": "lock", "vehicle_id": vehicle["id"], "command": "lock"},
    )
    busy.start()
    other = _event()
    try:
        wait_until(lambda: runtime.commands.store.lock_left(vehicle["id"]) > 0, timeout=5, what="the lock")
        with pytest.raises(DeferredError) as deferred:
            runtime.commands.run(event_id=other, step="unlock", vehicle_id=vehicle["id"], command="unlock")
    finally:
        busy.join()
    assert deferred.value.reason == f"vehicle {vehicle['id']} is busy with another command"
    # Until the lock's lease would end (12 s here), at least half a second, at most 30 s.
    assert 0.5 <= deferred.value.delay <= 12.0
    assert runtime.commands.record(other, "unlock") == {}  # nothing was marked, nothing sent
    posts = sim.control.requests(vehicle_id=vehicle["id"], method="POST")
    assert [call.sub_path for call in posts] == ["security"]


def test_a_command_no_longer_wanted_is_withdrawn_unsent(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker
) -> None:
    runtime = sim_runtime()
    vehicle = connect(runtime, locked=True)
    event_id = _event()
    asked: list[bool] = []

    def still_wanted() -> bool:
        locked = runtime.gateway.call(vehicle["id"], lambda v: v.lock_status().is_locked)
        asked.append(locked)
        return not locked

    outcome = runtime.commands.run(
        event_id=event_id, step="lock", vehicle_id=vehicle["id"], command="lock", still_wanted=still_wanted
    )
    assert outcome.how == "withdrawn"
    assert asked == [True]
    assert runtime.commands.record(event_id, "lock") == {}  # nothing recorded: a later run may still send
    assert sim.control.requests(vehicle_id=vehicle["id"], method="POST") == []
