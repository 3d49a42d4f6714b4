"""Workers SIGKILLed at random moments while every event needs a command: all done, one command each.

Every event is a car at 90 % and charging, so the charging rule stops it: one stop_charge per event. A
third of those commands take effect and then fail ambiguously (UPSTREAM:NO_RESPONSE after the car obeyed:
the simulator's `after_effect` faults). Meanwhile workers die by SIGKILL, one kind after the other: a
threads worker (its unacknowledged messages come back after the visibility timeout), a prefork pool
child (its message is rejected and redelivered at once), a whole prefork worker with its pool (the
machine lost); each is restarted. No event may be lost, and each car must get exactly one command.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable

from chaos.scale import Scale, report
from chaos.stack import IS_CHARGING, PLUGGED_IN, SOC, ChaosStack
from testsupport import wait_until
from testsupport.processes import children
from testsupport.receiver import body_of
from testsupport.workers import WorkerProcess

AMBIGUOUS = {"type": "UPSTREAM", "code": "NO_RESPONSE"}
KINDS = ("threads worker", "pool child", "prefork worker")


def _alive(stack: ChaosStack, pool: str) -> WorkerProcess:
    return next(w for w in reversed(stack.workers.processes) if w.alive() and w.name.startswith(pool))


def _kill(stack: ChaosStack, kind: str, number: int, rng: random.Random) -> None:
    """SIGKILL one victim of `kind`; start its replacement (a pool child is replaced by its parent)."""
    if kind == "pool child":
        # A prefork worker started again after an earlier kill may still be forking its pool.
        pool_children = wait_until(
            lambda: children(_alive(stack, "prefork").process.pid), timeout=60, what="a prefork pool child"
        )
        os.kill(rng.choice(pool_children), signal.SIGKILL)
        return
    pool = "threads" if kind == "threads worker" else "prefork"
    victim = _alive(stack, pool)
    orphans = children(victim.process.pid)
    victim.kill()
    for orphan in orphans:  # the whole machine went: its pool goes with it
        os.kill(orphan, signal.SIGKILL)
    stack.workers.start(f"{pool}{number}", pool=pool, concurrency=8 if pool == "threads" else 2, wait=False)


def test_workers_killed_at_random_moments_lose_nothing_and_send_each_command_once(
    make_stack: Callable[..., ChaosStack], scale: Scale
) -> None:
    rng = random.Random(scale.seed)  # noqa: S311 - the kill moments, replayable with CHAOS_SEED
    events = scale.crash_events
    stack = make_stack(vehicles=events * 2 + 10, charging_rule_enabled=True)
    stack.start(workers={"threads": 8, "prefork": 2})
    stack.control.set_latency("uniform", low=0.05, high=0.4)
    cars = stack.electric(stack.connect_fleet(), events)
    for car in cars:
        stack.control.patch_vehicle(car["id"], soc=0.9, charging=True, plugged_in=True, charge_limit=1.0)
    stack.control.add_fault(
        path="charge", method="POST", probability=1 / 3, error=AMBIGUOUS, after_effect=True
    )
    events_sent = [stack.state_event(car, {SOC: 90, IS_CHARGING: True, PLUGGED_IN: True}) for car in cars]
    ids = [event["eventId"] for event in events_sent]
    started = time.monotonic()
    stack.post_all([body_of(event) for event in events_sent], connections=8)

    kills: Counter[str] = Counter()
    for number in range(1, scale.crash_kills + 1):
        time.sleep(rng.uniform(0.3, 1.5))  # a random moment of the run, not a wait for an outcome
        kind = KINDS[(number - 1) % len(KINDS)]
        _kill(stack, kind, number, rng)
        kills[kind] += 1
    records = stack.wait_finished(ids, timeout=scale.timeout * 0.7)
    took = time.monotonic() - started

    lost = [event_id for event_id in ids if event_id not in records or records[event_id].status != "done"]
    decisions = sum(
        1
        for r in records.values()
        if r.results.get("charging-rule", {}).get("result", {}).get("decision") == "stop_charge"
    )
    sent = stack.commands()
    commands = sum(len(statuses) for statuses in sent.values())
    ambiguous = sum(1 for statuses in sent.values() for status in statuses if status == 502)
    twice = {vehicle: statuses for vehicle, statuses in sent.items() if len(statuses) != 1}
    still_charging = [c["id"] for c in cars if stack.control.vehicle(c["id"])["state"]["charging"]]
    killed = sum(kills.values())
    reruns = sum(1 for record in records.values() if record.attempts > 1)
    report(
        "worker-crash",
        f"{events} events, {killed} kills "
        f"({', '.join(f'{n} {kind}' for kind, n in kills.items())}), {len(lost)} lost, {commands} commands "
        f"for {decisions} decisions ({ambiguous} ambiguous after effect, {reruns} events run again), "
        f"{took:.0f} s, seed {scale.seed}",
    )
    assert lost == []
    assert decisions == events
    assert commands == decisions
    assert twice == {}
    assert still_charging == []
    stack.assert_no_leaks()
