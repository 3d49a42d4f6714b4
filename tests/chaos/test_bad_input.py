"""Bad input of every kind at the receiver, with genuine deliveries mixed in: never a 5xx (Redis is up
throughout, so not even a 503), nothing refused is stored, nothing genuine is refused, no VERIFY signs
what is not a Smartcar challenge, and the receiver is alive at the end.

Generated envelopes (hypothesis, `chaos.badinput`) go through httpx, 32 at a time, with a genuine signed
delivery every `genuine_every` requests; at the same time raw sockets send the framing cases
(`chaos.framing`), 8 at a time, so that a bad request shares the receiver's batched Redis round trips
with good ones.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, seed, settings
from workers_stack import HOST

from chaos import badinput, framing
from chaos.deliveries import NO_ANSWER, Answer, Request, send_all, signed
from chaos.scale import Scale, report
from chaos.stack import IS_CHARGING, ChaosStack
from receiver.app import WEBHOOK_PATH
from smartcar_core.events import EnvelopeError, parse_envelope
from smartcar_core.webhooks import signature_of
from testsupport.receiver import body_of

SERVER_ERROR = 500
FRAMES_AT_ONCE = 8


@dataclass(frozen=True, slots=True)
class Sent:
    case: badinput.Case | None
    """None: a genuine delivery."""
    request: Request
    answer: Answer


def _generated(scale: Scale) -> list[badinput.Case]:
    """`scale.bad_envelopes` cases drawn by hypothesis (seeded: `CHAOS_SEED` replays them)."""
    found: list[badinput.Case] = []

    @seed(scale.seed)
    @settings(
        max_examples=scale.bad_envelopes,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(badinput.cases())
    def collect(case: badinput.Case) -> None:
        found.append(case)

    collect()
    return found


def _request(stack: ChaosStack, case: badinput.Case) -> Request:
    good = signature_of(stack.amt, case.body)
    value = {
        "good": good,
        "wrong": signature_of(stack.amt, case.body + b" "),
        "malformed": "sha256=" + good,
        "other-amt": signature_of("another-application-amt", case.body),
    }.get(case.signing)
    headers = {"Content-Type": "application/json", **({"SC-Signature": value} if value else {})}
    return Request("", case.body, headers)


def _genuine(stack: ChaosStack) -> Iterator[dict[str, Any]]:
    vehicles = stack.control.vehicles()
    number = 0
    while True:
        number += 1
        yield stack.state_event(vehicles[number % len(vehicles)], {IS_CHARGING: True})


async def _send(
    stack: ChaosStack, planned: list[tuple[badinput.Case | None, Request]], frames: list[framing.Frame]
) -> tuple[list[Sent], list[framing.Framed]]:
    """The envelopes through httpx and the frames on raw sockets, at the same time."""
    gate = asyncio.Semaphore(FRAMES_AT_ONCE)

    async def frame(one: framing.Frame) -> framing.Framed:
        async with gate:
            return await framing.send(HOST, stack.receiver_port, one)

    answers, framed = await asyncio.gather(
        send_all(stack.receiver_url, [request for _case, request in planned]),
        asyncio.gather(*(frame(one) for one in frames)),
    )
    return [
        Sent(case, request, answer) for (case, request), answer in zip(planned, answers, strict=True)
    ], framed


def _challenge(body: bytes) -> str:
    try:
        return parse_envelope(body).challenge or ""
    except EnvelopeError:
        return ""


def _forgeries(stack: ChaosStack, answered: list[Sent]) -> int:
    """Each signature got from a VERIFY, put on the body its challenge was: how many get in."""
    let_in = 0
    for sent in answered:
        if sent.case is not None and sent.case.challenge is not None:
            signature = sent.answer.body.split(b'"challenge":"')[1].split(b'"')[0].decode()
            headers = {"Content-Type": "application/json", "SC-Signature": signature}
            forged = httpx.post(
                stack.receiver_url + WEBHOOK_PATH, content=sent.case.challenge, headers=headers
            )
            let_in += forged.status_code < 400
    return let_in


def test_bad_input_gets_a_4xx_and_never_a_5xx_and_stores_nothing_it_refused(
    make_stack: Callable[..., ChaosStack], scale: Scale
) -> None:
    stack = make_stack(vehicles=6)
    stack.start(workers={}, beat=False)  # the receiver alone: what it stored stays where it put it
    genuine = _genuine(stack)
    oracle = badinput.oracle_cases()
    planned: list[tuple[badinput.Case | None, Request]] = []
    for number, case in enumerate(_generated(scale) + oracle, start=1):
        planned.append((case, _request(stack, case)))
        if number % scale.genuine_every == 0:
            planned.append((None, signed(next(genuine), stack.amt)))

    def fresh() -> tuple[str, bytes]:
        event = next(genuine)
        return event["eventId"], body_of(event)

    frames = [
        frame
        for number in range(scale.bad_framing_rounds)
        for frame in framing.frames(number, lambda body: signature_of(stack.amt, body), fresh)
    ]
    sent, framed = asyncio.run(_send(stack, planned, frames))
    stack.bodies += [one.answer.body for one in sent]

    statuses = Counter(one.answer.status for one in sent) + Counter(s for f in framed for s in f.statuses)
    server_errors = [
        (one.case.label if one.case else "genuine", one.answer.status, one.request.body[:100])
        for one in sent
        if one.answer.status >= SERVER_ERROR
    ] + [(f.frame.label, s, f.frame.data[:100]) for f in framed for s in f.statuses if s >= SERVER_ERROR]
    genuine_refused = [
        (one.answer.status, one.answer.body[:100])
        for one in sent
        if one.case is None and (one.answer.status != 200 or b'"accepted"' not in one.answer.body)
    ]
    stored = {stack.client.hget(key, "raw") for key in stack.client.scan_iter(match=stack.keys.event("*"))}
    # The same bytes may be drawn twice, signed well once and badly once: stored by the one accepted (a
    # body that only a refused request could have stored has no "accepted" answer: the rest were
    # "duplicate").
    accepted = {
        one.request.body for one in sent if one.answer.status == 200 and b'"accepted"' in one.answer.body
    }
    refused_stored = [
        one.case.label
        for one in sent
        if one.case is not None
        and 400 <= one.answer.status < SERVER_ERROR
        and one.request.body in stored - accepted
    ] + [
        f.frame.label
        for f in framed
        if f.frame.event_id
        and 200 not in f.statuses
        and stack.client.exists(stack.keys.event(f.frame.event_id))
    ]
    answered = [one for one in sent if one.answer.status == 200 and b'"challenge"' in one.answer.body]
    off_shape = [
        one.request.body[:100]
        for one in answered
        if not badinput.SMARTCAR_CHALLENGE.fullmatch(_challenge(one.request.body))
    ]
    forged = _forgeries(stack, answered)
    last = httpx.post(
        stack.receiver_url + WEBHOOK_PATH, content=(b := body_of(next(genuine))), headers=stack.signed(b)
    )
    alive = (
        stack.receiver_process.poll() is None
        and httpx.get(stack.receiver_url + "/healthz").status_code == 200
    )
    unanswered = sum(1 for one in sent if one.answer.status == NO_ANSWER) + sum(
        1 for f in framed if not f.statuses
    )

    report(
        "bad-input",
        f"{len(sent) + len(framed)} requests ({len(sent) - len(oracle)} generated envelopes and genuine "
        f"deliveries, {len(oracle)} VERIFY oracle attempts, {len(frames)} framing cases on raw sockets); "
        f"answers {', '.join(f'{status}: {n}' for status, n in sorted(statuses.items()))}, {unanswered} "
        f"closed unanswered; {len(server_errors)} >= 500, {len(refused_stored)} refused but stored, "
        f"{len(genuine_refused)}/{sum(1 for one in sent if one.case is None)} genuine refused, "
        f"{len(off_shape)} VERIFY answered off Smartcar's challenge shape, {forged} forgeries let in, "
        f"receiver {'alive' if alive else 'DEAD'}, seed {scale.seed}",
    )
    assert server_errors == [], server_errors[:10]
    assert refused_stored == [], refused_stored[:10]
    assert genuine_refused == [], genuine_refused[:10]
    assert off_shape == []
    assert forged == 0
    assert alive
    assert last.status_code == 200, last.text
    stack.assert_no_leaks()
