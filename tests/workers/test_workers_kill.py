"""Workers killed with SIGKILL: their runs are taken over and complete, with one command each."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventstore.keys import KeySpace
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.workers import WorkerLauncher, WorkerProcess, accept_event, event_status, store_minted
from workers.settings import WorkerSettings

SOC = "tractionbattery-stateofcharge"
Launch = Callable[..., WorkerLauncher]


def _launcher(launch: Launch, sim: RunningSimulator, name: str, module_prefix: str) -> WorkerLauncher:
    prefix = f"{module_prefix}{name}:"
    return launch(
        event_key_prefix=prefix,
        queue=f"{prefix}queue",
        broker_key_prefix=prefix,
        origins=sim.origins,
        smartcar_client_id=sim.client_id,
        smartcar_client_secret=sim.client_secret,
        charging_rule_enabled=True,
        # Small limits so that the test waits seconds, not minutes: a command call may last 3 s, the
        # lock outlives it, a run lasts at most 6 s, a lost message comes back after 8 s.
        command_timeout=3.0,
        vehicle_lock_lease=4.0,
        task_soft_time_limit=5.0,
        task_time_limit=6.0,
        max_countdown=1.0,
        visibility_timeout=8.0,
        restore_interval=1.0,
    )


def _charging_event(
    launcher: WorkerLauncher, sim: RunningSimulator, index: int, make: Callable[..., Any]
) -> tuple[str, str]:
    vehicle = sim.control.vehicles()[index]
    sim.control.patch_vehicle(vehicle["id"], soc=0.9, charging=True, plugged_in=True, charge_limit=1.0)
    tokens = sim.control.mint_tokens(user_id=vehicle["user_id"])
    store_minted(launcher.tokens, tokens)
    # The stop command answers after 2 s: long enough to kill its worker in the middle of it.
    sim.control.add_fault(
        vehicle_id=vehicle["id"], path="charge", method="POST", count=1, kind="slow", seconds=2.0
    )
    body = make({**vehicle, "user_id": tokens.user_id}, {SOC: 90, "charge-ischarging": True})
    return vehicle["id"], accept_event(launcher.client, launcher.settings.event_key_prefix, body)


def _in_flight(launcher: WorkerLauncher, event_id: str) -> None:
    key = KeySpace(launcher.settings.event_key_prefix).command(event_id, "charging-rule:stop")
    wait_until(
        lambda: launcher.client.hget(key, "state") == b"sending", what="the stop command to be in flight"
    )


def _children(worker: WorkerProcess) -> list[int]:
    """The pool's child processes (from /proc: field 4 of /proc/<pid>/stat is the parent's pid)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == worker.process.pid:
            children.append(int(stat.parent.name))
    return children


def _completes_with_one_command(
    launcher: WorkerLauncher, sim: RunningSimulator, vehicle_id: str, event_id: str
) -> None:
    prefix = launcher.settings.event_key_prefix
    wait_until(
        lambda: event_status(launcher.client, prefix, event_id) == "done", timeout=40, what="the event done"
    )
    posts = sim.control.requests(vehicle_id=vehicle_id, method="POST")
    assert len(posts) == 1
    assert sim.control.vehicle(vehicle_id)["state"]["charging"] is False
    attempts = launcher.client.hget(KeySpace(prefix).event(event_id), "attempts")
    assert int(attempts or 0) >= 2  # the killed run, and the one that finished it


def test_whole_worker_killed_mid_command(
    launch: Launch, simulator: RunningSimulator, module_prefix: str, state_event: Callable[..., Any]
) -> None:
    simulator.control.reset()
    launcher = _launcher(launch, simulator, "threads", module_prefix)
    victim = launcher.start("victim", concurrency=4)
    vehicle_id, event_id = _charging_event(launcher, simulator, 0, state_event)
    _in_flight(launcher, event_id)
    victim.kill()  # no ack, no requeue: the message stays unacknowledged in Redis
    launcher.start("rescuer", concurrency=4)
    _completes_with_one_command(launcher, simulator, vehicle_id, event_id)


def test_prefork_child_killed_mid_command(
    launch: Launch, simulator: RunningSimulator, module_prefix: str, state_event: Callable[..., Any]
) -> None:
    simulator.control.reset()
    launcher = _launcher(launch, simulator, "prefork", module_prefix)
    parent = launcher.start("parent", pool="prefork", concurrency=1)
    vehicle_id, event_id = _charging_event(launcher, simulator, 2, state_event)
    _in_flight(launcher, event_id)
    (child,) = _children(parent)
    os.kill(child, signal.SIGKILL)  # reject on worker lost: the message goes back to the queue at once
    _completes_with_one_command(launcher, simulator, vehicle_id, event_id)
    assert "WorkerLostError" in parent.output()
    assert parent.alive()


# What a deployment gets: the lease and its heartbeat, the hour-long visibility timeout, the hard limit.
SHIPPED = {
    name: WorkerSettings.model_fields[name].default
    for name in (
        "lease_seconds",
        "lease_renew_interval",
        "lease_check_interval",
        "visibility_timeout",
        "task_soft_time_limit",
        "task_time_limit",
        "max_countdown",
        "command_timeout",
        "vehicle_lock_lease",
        "sweep_after",
    )
}
TAKE_OVER_WITHIN = 60.0


def test_a_killed_workers_runs_are_taken_over_within_a_minute_with_the_shipped_settings(
    launch: Launch, simulator: RunningSimulator, module_prefix: str, state_event: Callable[..., Any]
) -> None:
    simulator.control.reset()
    prefix = f"{module_prefix}takeover:"
    launcher = launch(
        event_key_prefix=prefix,
        queue=f"{prefix}queue",
        broker_key_prefix=prefix,
        origins=simulator.origins,
        smartcar_client_id=simulator.client_id,
        smartcar_client_secret=simulator.client_secret,
        follow_up_signals={"*": [SOC]},
        **SHIPPED,
    )
    vehicles = simulator.control.vehicles()[4:8]
    ids = []
    for vehicle in vehicles:
        tokens = simulator.control.mint_tokens(user_id=vehicle["user_id"])
        store_minted(launcher.tokens, tokens)
        # The follow-up read of the first run hangs: its worker is killed in the middle of it.
        # 30 s: past the kill; and short, since the simulator's shutdown waits for the sleeping requests.
        simulator.control.add_fault(vehicle_id=vehicle["id"], count=1, kind="slow", seconds=30.0)
        body = state_event({**vehicle, "user_id": tokens.user_id}, {"charge-ischarging": True})
        ids.append(accept_event(launcher.client, prefix, body))
    victim = launcher.start("victim", concurrency=8)
    wait_until(
        lambda: all(event_status(launcher.client, prefix, event_id) == "processing" for event_id in ids),
        timeout=30,
        what="every run to be in its follow-up read",
    )
    victim.kill()  # its messages stay unacknowledged for the hour of the visibility timeout
    killed_at = time.monotonic()
    launcher.start("rescuer", concurrency=8)
    wait_until(
        lambda: all(event_status(launcher.client, prefix, event_id) == "done" for event_id in ids),
        timeout=TAKE_OVER_WITHIN,
        what="the killed worker's runs to be taken over and done",
    )
    took = time.monotonic() - killed_at
    assert took < TAKE_OVER_WITHIN
    for event_id in ids:
        record = launcher.client.hgetall(KeySpace(prefix).event(event_id))
        # The killed run, and the one that took over (a retry of that one, on a busy machine, is a third).
        assert int(record[b"attempts"]) >= 2, record.get(b"history")
    assert launcher.client.zcard(KeySpace(prefix).leases) == 0


@pytest.fixture(autouse=True)
def _no_leftover_faults(simulator: RunningSimulator) -> None:
    simulator.control.clear_faults()
