"""Every line the processes log and every answer the receiver gives, scanned for every secret: 0 hits.

The secrets are this run's own: the AMT, the client secret, the token encryption key, and every token the
simulator minted (those stored for the fleet, and those the workers got by refreshing, sampled from the
grant store while the scenario runs). The scenario walks the paths where a secret could slip out, with
debug logs on: tokens refreshed before they expire and after Smartcar refuses them (AUTHENTICATION), a
grant whose refresh token Smartcar does not know (its events held for re-consent), signatures missing, wrong
and made with another AMT, VERIFY answered and refused. The other scenarios scan their own processes the
same way at their end. Redis is read too: no token may be there in plaintext.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from chaos.deliveries import Request, send_all, signed
from chaos.scale import Scale, report
from chaos.stack import IS_CHARGING, SOC, ChaosStack
from eventstore.codec import as_bytes, text
from smartcar_core.webhooks import signature_of
from smartcar_simulator import payloads
from smartcar_simulator.control_client import SimTokens
from testsupport.receiver import body_of
from testsupport.workers import store_minted


def _broken_grant(stack: ChaosStack, vehicle_id: str) -> SimTokens:
    """A grant whose access token has expired and whose refresh token Smartcar never issued."""
    bogus = SimTokens(
        access_token=f"bogus-access-{stack.client_secret[:8]}-never-issued",
        refresh_token=f"bogus-refresh-{stack.amt[:8]}-never-issued",
        expires_in=0,
        user_id="user-of-a-broken-grant",
        vehicle_ids=[vehicle_id],
        scope=[],
    )
    store_minted(stack.workers.tokens, bogus, expires_at=time.time() - 60)
    stack.minted.append(bogus)
    return bogus


def _probes(stack: ChaosStack) -> list[Request]:
    """Deliveries that are refused or answered without storing: each kind of signature failure, VERIFY."""
    event = stack.state_event(stack.control.vehicles()[0], {IS_CHARGING: True})
    body = body_of(event)
    verify = body_of(payloads.verify_event(webhook_id="wh-chaos"))
    json_type = {"Content-Type": "application/json"}
    return [
        Request("unsigned", body, json_type),
        Request("wrong", body, {**json_type, "SC-Signature": signature_of(stack.amt, body + b"!")}),
        Request("other AMT", body, {**json_type, "SC-Signature": signature_of(stack.client_secret, body)}),
        Request("AMT as signature", body, {**json_type, "SC-Signature": stack.amt}),
        signed(verify, stack.amt),
        signed(verify, None),
        Request("not JSON", b"{" + stack.amt.encode(), json_type),
    ]


def test_no_secret_reaches_a_log_line_an_answer_or_redis_in_plaintext(
    make_stack: Callable[..., ChaosStack], scale: Scale
) -> None:
    stack = make_stack(
        vehicles=10,
        receiver_env={"LOG_LEVEL": "debug"},
        log_level="debug",
        follow_up_signals={"*": [SOC]},
        token_cache_seconds=0,
    )
    stack.start()
    with stack.watching_tokens():
        vehicles = stack.connect_fleet(expires_in=120)  # inside the refresh margin: refreshed on first use
        broken = _broken_grant(stack, vehicles[-1]["id"])
        stack.control.add_fault(
            path="signals*", probability=0.2, error={"type": "AUTHENTICATION", "code": None}
        )
        events = [
            stack.state_event(vehicles[i % len(vehicles)], {IS_CHARGING: True})
            for i in range(scale.secret_events)
        ]
        events.append(stack.state_event(vehicles[-1], {IS_CHARGING: True}))
        requests = [signed(event, stack.amt) for event in events] + _probes(stack) * 3
        answers = asyncio.run(send_all(stack.receiver_url, requests, connections=8))
        stack.bodies += [answer.body for answer in answers]
        assert [a.status for a in answers[: len(events)]] == [200] * len(events), answers[0]
        records = stack.wait_finished(
            [e["eventId"] for e in events], timeout=scale.timeout * 0.4, allow_failed=True, allow_held=True
        )
    held = stack.held_events()
    # A refresh token Smartcar refused, or a refreshed token refused again: its vehicles' events wait for
    # the owner to connect again (workers.access), they are not dead-lettered.
    waiting = {record.vehicle_id for event_id, record in records.items() if event_id in held}
    refreshed = stack.seen_tokens - {t for m in stack.minted for t in (m.access_token, m.refresh_token)}
    plaintext = _plaintext(stack)
    hits, wanted, lines, bodies = stack.leaks()
    logs = sorted(log.name for log in stack.workdir.rglob("*.log"))
    report(
        "secrets",
        f"{len(logs)} log files ({lines} lines, debug level) and {bodies} answers scanned for "
        f"{wanted} secrets (AMT, client secret, token key, {wanted - 3} tokens of which {len(refreshed)} "
        f"refreshed by the workers): {len(hits)} hits; {len(plaintext)} Redis keys with a plaintext token; "
        f"events of {len(waiting)} vehicles held for their owner's re-consent (a refresh token Smartcar "
        f"refused, or a refreshed token refused again)",
    )
    assert hits == [], hits[:10]
    assert plaintext == []
    assert refreshed, "no token was refreshed: the refresh paths were not walked"
    assert broken.vehicle_ids[0] in waiting
    assert {a.status for a in answers[len(events) :]} <= {200, 400, 401, 403}


def _plaintext(stack: ChaosStack) -> list[str]:
    """The keys whose value (a string, or a hash's fields and values) holds a token as it is."""
    tokens = [value.encode() for name, value in stack.secrets() if name.startswith("token")]
    found = []
    for key in stack.client.scan_iter(match=f"{stack.prefix}*"):
        kind = stack.client.type(key)
        if kind == b"string":
            stored = as_bytes(stack.client.get(key) or b"")
        elif kind == b"hash":
            stored = b" ".join(as_bytes(part) for pair in stack.client.hgetall(key).items() for part in pair)
        else:
            continue
        if any(token in stored for token in tokens):
            found.append(text(key))
    return found
