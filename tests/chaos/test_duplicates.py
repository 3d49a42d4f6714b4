"""Every event delivered 1 to 5 times, all deliveries shuffled and sent concurrently: each event is
accepted once and processed once, and each vehicle's stored state is its newest by `oemUpdatedAt`.

A repeat is either the same bytes (a retry of one attempt) or a new attempt of the same event, as
Smartcar's retries are: a new `meta.deliveryId` and `deliveredAt`, signed again.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from chaos.deliveries import deliver_all
from chaos.scale import Scale, report
from chaos.stack import IS_CHARGING, SOC, ChaosStack
from eventstore.vehicles import VehicleStateStore

CONNECTIONS = 32


def _attempt(event: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The same event once more: the same bytes, or (half the time) a new attempt of it."""
    if rng.random() < 0.5:
        return event
    meta = {**event["meta"], "deliveryId": str(uuid.uuid4()), "deliveredAt": int(time.time() * 1000)}
    return {**event, "meta": meta}


def test_concurrent_shuffled_duplicates_are_processed_once_and_the_newest_state_wins(
    make_stack: Callable[..., ChaosStack], scale: Scale
) -> None:
    rng = random.Random(scale.seed)  # noqa: S311 - the deliveries' order, replayable
    stack = make_stack(vehicles=scale.duplicate_vehicles)
    stack.start(workers={"threads": 16})
    vehicles = stack.connect_fleet()
    base = int(time.time() * 1000) - 3_600_000
    newest: dict[str, dict[str, Any]] = {}
    events = []
    for vehicle in vehicles:
        for step in range(scale.duplicate_events):  # oemUpdatedAt grows with `step`: the last is newest
            event = stack.state_event(vehicle, {SOC: 40 + step, IS_CHARGING: True}, oem_ms=base + step * 1000)
            events.append(event)
            newest[vehicle["id"]] = event
    deliveries = [
        _attempt(event, rng) if copy else event for event in events for copy in range(rng.randint(1, 5))
    ]
    rng.shuffle(deliveries)
    answers = asyncio.run(deliver_all(stack.receiver_url, deliveries, stack.amt, connections=CONNECTIONS))
    stack.bodies += [answer.body for answer in answers]

    ids = [event["eventId"] for event in events]
    outcomes = Counter(answer.status for answer in answers)
    accepted = Counter(a.event_id for a in answers if a.status == 200 and b'"accepted"' in a.body)
    duplicates = sum(1 for a in answers if a.status == 200 and b'"duplicate"' in a.body)
    records = stack.wait_finished(ids, timeout=scale.timeout * 0.5)
    more_than_once = {i: r.attempts for i, r in records.items() if r.attempts != 1}
    states = VehicleStateStore(stack.client, stack.keys)
    stale = {}
    for vehicle_id, event in newest.items():
        stored = states.signals(vehicle_id)[SOC]
        if (
            stored.event_id != event["eventId"]
            or stored.value != event["data"]["signals"][0]["body"]["value"]
        ):
            stale[vehicle_id] = (stored.event_id, stored.value)
    first: dict[str, int] = {}
    for number, answer in enumerate(answers):
        first.setdefault(answer.event_id, number)
    reordered = sum(
        1
        for vehicle_id, event in newest.items()
        if any(first[e["eventId"]] > first[event["eventId"]] for e in events if e["vehicleId"] == vehicle_id)
    )
    report(
        "duplicates",
        f"{len(events)} events, {len(deliveries)} deliveries (1-5 each, shuffled, "
        f"{CONNECTIONS} at once), {sum(accepted.values())} accepted, {duplicates} duplicates, "
        f"{len(records) - len(more_than_once)} processed once, {len(newest) - len(stale)}/{len(newest)} "
        f"vehicles at their newest state ({reordered} got it before an older one), seed {scale.seed}",
    )
    assert outcomes == {200: len(deliveries)}
    assert accepted == dict.fromkeys(ids, 1)
    assert duplicates == len(deliveries) - len(events)
    assert more_than_once == {}
    assert stale == {}
    stack.assert_no_leaks()
