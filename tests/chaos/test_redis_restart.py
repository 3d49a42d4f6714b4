"""Redis shut down and then SIGKILLed mid-ingest, restarted each time on its port and AOF (everysec).

Deliveries keep coming at a steady rate throughout. While Redis is away the receiver must answer 503
(Smartcar retries) and nothing else; every event it acknowledged with a 2xx must survive both the
SHUTDOWN and the SIGKILL and end done. The 503s are then delivered again, as Smartcar would, and every
event ends done.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from chaos.deliveries import Answer, deliver_all
from chaos.scale import Scale, report
from chaos.stack import IS_CHARGING, ChaosStack

OK, UNAVAILABLE = 200, 503


def _outages(stack: ChaosStack, pause: float) -> list[tuple[str, float, float]]:
    """SHUTDOWN, then SIGKILL, each after `pause` s of ingest; Redis back after `pause` s of outage; then
    `pause` s more of ingest. Each outage is the span from the server's exit to its start again."""
    spans = []
    for how in ("SHUTDOWN", "SIGKILL"):
        time.sleep(pause)  # ingest goes on: the outage lands at a moment of its own
        if how == "SHUTDOWN":
            stack.redis_server.shutdown()
        else:
            stack.redis_server.kill()
        down = time.monotonic()
        time.sleep(pause)  # the length of the outage
        back = time.monotonic()
        stack.redis_server.start()
        spans.append((how, down, back))
    time.sleep(pause)
    return spans


async def _ingest(
    stack: ChaosStack, events: Iterator[dict[str, Any]], rate: float, pause: float
) -> tuple[list[Answer], list[tuple[str, float, float]]]:
    """Deliveries at `rate` for as long as the outages take."""
    chaos = asyncio.create_task(asyncio.to_thread(_outages, stack, pause))
    answers = await deliver_all(stack.receiver_url, events, stack.amt, rate=rate, until=chaos.done)
    return answers, await chaos


def test_redis_shut_down_and_killed_mid_ingest_keeps_every_acknowledged_event(
    make_stack: Callable[..., ChaosStack], scale: Scale
) -> None:
    stack = make_stack(vehicles=20)
    stack.start()
    vehicles = stack.connect_fleet()
    pause = scale.restart_pause
    made: dict[str, dict[str, Any]] = {}

    def events() -> Iterator[dict[str, Any]]:
        for number in itertools.count():
            event = stack.state_event(vehicles[number % len(vehicles)], {IS_CHARGING: number % 2 == 0})
            made[event["eventId"]] = event
            yield event

    answers, outages = asyncio.run(_ingest(stack, events(), scale.restart_rate, pause))
    count = len(answers)
    stack.bodies += [answer.body for answer in answers]

    statuses = Counter(answer.status for answer in answers)
    during = {how: [a for a in answers if a.during(down, back)] for how, down, back in outages}
    acknowledged = [a.event_id for a in answers if a.status == OK]
    refused = [a.event_id for a in answers if a.status == UNAVAILABLE]
    present = stack.records(acknowledged)
    missing = [event_id for event_id, record in present.items() if record is None]
    # Smartcar delivers a 503'd event again: after the outages every one must be taken.
    retried = asyncio.run(deliver_all(stack.receiver_url, [made[i] for i in refused], stack.amt))
    stack.bodies += [answer.body for answer in retried]
    # No worker or beat may exit for an outage (workers.consumer waits it out, workers.broker turns kombu's
    # closed-connection AttributeError into a connection error). One that did is still started again, as
    # its supervisor would, so that the rest of the scenario shows what else went wrong.
    exits = stack.supervise()
    records = stack.wait_finished(
        [a.event_id for a in answers],
        timeout=scale.timeout * 0.4,
        meanwhile=lambda: exits.extend(stack.supervise()),
    )

    report(
        "redis-restart",
        f"{count} deliveries at {scale.restart_rate:g}/s, SHUTDOWN and SIGKILL "
        f"({pause:g} s each), {len(acknowledged)} acknowledged, {len(refused)} answered 503 "
        f"({', '.join(f'{len(a)} inside the {how} outage' for how, a in during.items())}, "
        f"{len(refused) - sum(map(len, during.values()))} at an outage's edge), "
        f"{len(missing)} acknowledged lost, {len(retried)} redelivered, {len(records)}/{count} done; "
        f"{len(exits)} worker or beat exits started again{''.join(f' [{e}]' for e in exits)}",
    )
    assert set(statuses) <= {OK, UNAVAILABLE}, statuses
    for how, inside in during.items():
        assert inside, f"no delivery fell inside the {how} outage"
        assert {a.status for a in inside} == {UNAVAILABLE}, (how, Counter(a.status for a in inside))
    assert missing == []
    assert exits == []
    assert {a.status for a in retried} <= {OK}
    assert len(records) == count
    stack.assert_no_leaks()
