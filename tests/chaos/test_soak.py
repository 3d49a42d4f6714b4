"""The receiver at a steady rate with a worker draining behind it: every delivery answered 200, every
event done, and the resident memory of the receiver and the worker printed before and after."""

from __future__ import annotations

import time
from collections.abc import Callable

from chaos.scale import Scale, report
from chaos.stack import IS_CHARGING, ChaosStack
from testsupport.processes import rss_bytes
from testsupport.receiver import body_of

MIB = 1 << 20


def test_a_steady_rate_is_answered_200_throughout_and_drained(
    make_stack: Callable[..., ChaosStack], scale: Scale
) -> None:
    stack = make_stack(vehicles=20)
    stack.start(workers={"threads": 16})
    vehicles = stack.connect_fleet()
    count = int(scale.soak_rate * scale.soak_seconds)
    events = [stack.state_event(vehicles[i % len(vehicles)], {IS_CHARGING: i % 2 == 0}) for i in range(count)]
    worker = stack.workers.processes[0].process.pid
    receiver = stack.receiver_process.pid
    before = rss_bytes(receiver), rss_bytes(worker)
    started = time.monotonic()
    took = stack.post_all([body_of(event) for event in events], rate=scale.soak_rate, connections=8)
    records = stack.wait_finished([event["eventId"] for event in events], timeout=scale.timeout * 0.3)
    drained = time.monotonic() - started
    after = rss_bytes(receiver), rss_bytes(worker)
    report(
        "soak",
        f"{scale.soak_seconds:g} s at {scale.soak_rate:g}/s ({count} deliveries, posted in "
        f"{took:.1f} s), 0 non-2xx, {len(records)}/{count} done {drained:.1f} s after the first, "
        f"receiver RSS {before[0] / MIB:.1f} -> {after[0] / MIB:.1f} MiB, "
        f"worker RSS {before[1] / MIB:.1f} -> {after[1] / MIB:.1f} MiB",
    )
    assert len(records) == count  # post_all raised on any answer but 200
    assert stack.receiver_process.poll() is None
    stack.assert_no_leaks()
