"""A fifth of Smartcar's answers failing, across the catalogue's classes: each event ends done,
dead-lettered with its reason, or held for its owner's re-consent (AUTHENTICATION after a refresh,
PERMISSION: `workers.access`), and is never seen retrying without a reason; then the faults clear, the
owners of the held vehicles connect again (which releases their events), the dead letters are replayed,
and every event ends done with no command taking effect twice.

Each event is a car at 90 % that the charging rule must stop; it carries only the state of charge, so a
run reads the rest from the v3 signals API, reads again under the vehicle's lock, and sends stop_charge:
about three calls. There is no operator command for replays yet: the scenario calls `EventStore.replay`
on every id of the dead set, as such a tool would.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chaos.scale import Scale, report
from chaos.stack import SOC, ChaosStack
from eventstore.codec import text
from eventstore.record import EventRecord
from eventstore.status import Status
from testsupport import wait_until
from testsupport.receiver import body_of

FAILING_SHARE = 0.2
# One fault of each class: retried with backoff, after Retry-After, after long delays, after a token
# refresh; never retried (a person's job: dead letters); and failures that are not Smartcar's JSON.
FAULTS: list[dict[str, Any]] = [
    {"error": {"type": "SERVER", "code": "INTERNAL"}},
    {"error": {"type": "UPSTREAM", "code": "NO_RESPONSE"}},
    {"error": {"type": "UPSTREAM", "code": "UNKNOWN_ISSUE"}},
    {"error": {"type": "RATE_LIMIT", "code": "VEHICLE", "retry_after": 1}},
    {"error": {"type": "UPSTREAM", "code": "RATE_LIMIT"}},
    {"error": {"type": "VEHICLE_STATE", "code": "ASLEEP"}},
    {"error": {"type": "AUTHENTICATION", "code": None}},
    {"error": {"type": "BILLING", "code": "VEHICLE_REQUEST_LIMIT"}},
    {"error": {"type": "PERMISSION", "code": None}},
    {"error": {"type": "COMPATIBILITY", "code": "VEHICLE_NOT_CAPABLE"}},
    {"error": {"type": "CONNECTED_SERVICES_ACCOUNT", "code": "SUBSCRIPTION"}},
    {"kind": "http_status", "status": 503},
    {"kind": "gateway_html", "status": 502},
    {"kind": "drop"},
]
PATHS = ("signals*", "charge")  # the v3 reads; the v2 charge read and command


def _inject(stack: ChaosStack) -> None:
    """Each fault on each path with the probability that makes a call fail with FAILING_SHARE (the
    first matching rule whose dice say yes fires)."""
    each = 1 - (1 - FAILING_SHARE) ** (1 / len(FAULTS))
    for path in PATHS:
        for fault in FAULTS:
            stack.control.add_fault(path=path, probability=each, **fault)


def _reason(record: EventRecord) -> str:
    error = record.history[-1].get("error", {}) if record.history else {}
    return str(error.get("type") or error.get("class") or "?")


def _settle(stack: ChaosStack, ids: list[str], timeout: float) -> tuple[dict[str, EventRecord], set[str]]:
    """Until every event is done, failed or held; meanwhile every retrying event must say why. Returns
    the records and the events that were seen retrying (with their reason)."""
    seen_retrying: set[str] = set()

    def settled() -> dict[str, EventRecord]:  # empty: not yet
        records = {i: r for i, r in stack.records(ids).items() if r is not None}
        for record in records.values():
            if record.status == Status.RETRYING:
                seen_retrying.add(record.id)
                assert record.fields.get("last_error"), record
                assert record.fields.get("next_attempt_at"), record
        held = stack.held_events() if any(r.status == Status.RETRYING for r in records.values()) else set()
        finished = all(r.status in {Status.DONE, Status.FAILED} or r.id in held for r in records.values())
        return records if finished and len(records) == len(ids) else {}

    records = wait_until(settled, timeout=timeout, interval=0.25, what=f"{len(ids)} events done or failed")
    return records, seen_retrying


def _share_failed(calls: Sequence[Mapping[str, Any]]) -> float:
    failed = sum(1 for call in calls if call["status"] is None or call["status"] >= 400)
    return failed / len(calls) if calls else 0.0


def test_upstream_faults_end_in_done_or_dead_letters_and_a_replay_sends_no_command_twice(
    make_stack: Callable[..., ChaosStack], scale: Scale
) -> None:
    count = scale.fault_events
    stack = make_stack(vehicles=count * 2 + 10, charging_rule_enabled=True)
    stack.start(workers={"threads": 16})
    stack.control.set_latency("uniform", low=0.01, high=0.1)
    cars = stack.electric(stack.connect_fleet(), count)
    for car in cars:
        stack.control.patch_vehicle(car["id"], soc=0.9, charging=True, plugged_in=True, charge_limit=1.0)
    stack.control.clear_requests()
    _inject(stack)
    events = [stack.state_event(car, {SOC: 90}) for car in cars]
    ids = [event["eventId"] for event in events]
    started = time.monotonic()
    stack.post_all([body_of(event) for event in events], connections=8)
    records, seen_retrying = _settle(stack, ids, timeout=scale.timeout * 0.4)
    calls = [call.as_dict() for call in stack.control.requests() if call.vehicle_id is not None]

    stack.control.clear_faults()
    held = stack.held_events() & set(ids)
    reconnected = stack.reconnect({records[i].vehicle_id or "" for i in held})
    dead = sorted(text(event_id) for event_id in stack.client.zrange(stack.keys.dead, 0, -1))
    failed = {i for i, record in records.items() if record.status == Status.FAILED}
    reasons = Counter(_reason(records[i]) for i in failed)
    without_reason = [i for i in failed if not records[i].fields.get("dead_reason")]
    replayed = sum(stack.store.replay(event_id, reason="chaos replay") for event_id in dead)
    final = stack.wait_finished(ids, timeout=scale.timeout * 0.3)
    took = time.monotonic() - started

    effective = {
        v: [s for s in statuses if s is not None and s < 400] for v, statuses in stack.commands().items()
    }
    twice = {vehicle: len(ok) for vehicle, ok in effective.items() if len(ok) > 1}
    still_charging = [c["id"] for c in cars if stack.control.vehicle(c["id"])["state"]["charging"]]
    share = _share_failed(calls)
    report(
        "upstream-faults",
        f"{count} events, {len(calls)} Smartcar calls, {share:.0%} failing "
        f"({len(FAULTS)} classes), {count - len(failed) - len(held)} done and {len(failed)} dead-lettered "
        f"({', '.join(f'{n} {kind}' for kind, n in reasons.most_common())}), {len(held)} held for "
        f"re-consent, {len(seen_retrying)} seen retrying, each with its reason; faults cleared, "
        f"{reconnected} owners reconnected, {replayed} replayed, "
        f"{sum(1 for r in final.values() if r.status == Status.DONE)}/{count} done, "
        f"{len(twice)} duplicate commands, {took:.0f} s",
    )
    assert share >= FAILING_SHARE / 2, "the faults did not fire"
    assert without_reason == []
    assert set(dead) == failed
    assert replayed == len(failed)
    assert all(record.status == Status.DONE for record in final.values())
    assert len(final) == count
    assert twice == {}
    assert still_charging == []
    stack.assert_no_leaks()
