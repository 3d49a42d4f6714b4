"""VERIFY: answered with hex HMAC(AMT, challenge) in both envelopes, and never usable as a signing oracle."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from receiver.app import create_app
from receiver.cli import cli
from receiver.settings import ReceiverSettings
from receiver.verify import TokenBucket
from smartcar_core.webhooks import hash_challenge, signature_of
from smartcar_simulator import payloads
from testsupport.receiver import Harness, asgi_client, body_of

EventMaker = Callable[..., dict[str, Any]]
OTHER_AMT = "amt-of-another-application-00"
CHALLENGE = "3a5c8f72-e6d9-4b1a-9f2e-8c7d6a5b4e3f"

pytestmark = pytest.mark.anyio


async def refusals(http: httpx.AsyncClient, reason: str) -> float:
    for family in text_string_to_metric_families((await http.get("/metrics")).text):
        for sample in family.samples:
            if sample.name == "smartcar_webhook_verify_refusals_total" and sample.labels == {
                "reason": reason
            }:
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("legacy", [False, True], ids=["4.0", "legacy 2.0"])
async def test_an_unsigned_verify_is_answered(harness: Harness, webhook_id: str, legacy: bool) -> None:
    event = payloads.verify_event(CHALLENGE, webhook_id=webhook_id, legacy=legacy)
    response = await harness.deliver(event, unsigned=True)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"challenge": hash_challenge(harness.amt, CHALLENGE)}
    assert harness.inbox() == []  # a VERIFY is answered, not stored


async def test_a_signed_verify_is_answered(harness: Harness, webhook_id: str) -> None:
    response = await harness.deliver(payloads.verify_event(CHALLENGE, webhook_id=webhook_id))
    assert response.json() == {"challenge": hash_challenge(harness.amt, CHALLENGE)}


@pytest.mark.parametrize("signature_amt", [OTHER_AMT, None], ids=["another AMT", "garbage"])
async def test_a_verify_whose_signature_does_not_verify_is_refused(
    harness: Harness, webhook_id: str, signature_amt: str | None
) -> None:
    body = body_of(payloads.verify_event(CHALLENGE, webhook_id=webhook_id))
    signature = signature_of(signature_amt, body) if signature_amt else "f" * 64
    headers = {"Content-Type": "application/json", "SC-Signature": signature}
    response = await harness.http.post("/webhooks/smartcar", content=body, headers=headers)
    assert response.status_code == 401
    assert "challenge" not in response.json()
    assert await refusals(harness.http, "signature") == 1


async def test_the_current_amt_answers_while_rotating(
    make_settings: Callable[..., ReceiverSettings], harness: Harness, webhook_id: str
) -> None:
    async with asgi_client(create_app(make_settings(smartcar_amt=f"{harness.amt},{OTHER_AMT}"))) as http:
        response = await Harness(http, harness.redis, harness.keys, harness.amt).deliver(
            payloads.verify_event(CHALLENGE, webhook_id=webhook_id), unsigned=True
        )
    assert response.json() == {"challenge": hash_challenge(harness.amt, CHALLENGE)}


async def test_the_oracle_is_closed_a_forged_body_as_challenge_gets_no_signature(
    harness: Harness, state_event: EventMaker, webhook_id: str
) -> None:
    forged = body_of(state_event())  # what an attacker wants a valid SC-Signature for
    event = payloads.verify_event(forged.decode(), webhook_id=webhook_id)
    response = await harness.deliver(event, unsigned=True)
    assert response.status_code == 403
    assert signature_of(harness.amt, forged) not in response.text
    assert response.json() == {"error": "VERIFY refused: challenge_shape"}
    assert await refusals(harness.http, "challenge_shape") == 1
    # and the forged body, sent with nothing but hope, is still refused
    assert (await harness.deliver(forged, unsigned=True)).status_code == 401
    assert harness.inbox() == []


@pytest.mark.parametrize(
    "challenge",
    [
        pytest.param("x" * 129, id="too long"),
        pytest.param("has spaces in it", id="spaces"),
        pytest.param("abc{def}", id="braces"),
        pytest.param('quote"d', id="quote"),
        pytest.param("ünïcode", id="unicode"),
        pytest.param("line\nbreak", id="newline"),
    ],
)
async def test_challenges_unlike_smartcars_are_refused(
    harness: Harness, webhook_id: str, challenge: str
) -> None:
    for legacy in (False, True):
        event = payloads.verify_event(challenge, webhook_id=webhook_id, legacy=legacy)
        response = await harness.deliver(event, unsigned=True)
        assert response.status_code == 403, legacy
    assert await refusals(harness.http, "challenge_shape") == 2


async def test_the_longest_smartcar_like_challenge_is_answered(harness: Harness, webhook_id: str) -> None:
    challenge = "A1-" * 42 + "zz"
    assert len(challenge) == 128
    response = await harness.deliver(payloads.verify_event(challenge, webhook_id=webhook_id), unsigned=True)
    assert response.json() == {"challenge": hash_challenge(harness.amt, challenge)}


@pytest.fixture
async def armed_only(make_settings: Callable[..., ReceiverSettings], harness: Harness) -> Any:
    async with asgi_client(create_app(make_settings(verify_require_armed=True))) as http:
        yield Harness(http, harness.redis, harness.keys, harness.amt)


async def test_with_arming_required_verify_is_answered_only_while_armed(
    armed_only: Harness, webhook_id: str, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    event = payloads.verify_event(CHALLENGE, webhook_id=webhook_id)
    refused = await armed_only.deliver(event, unsigned=True)
    assert refused.status_code == 403
    assert refused.json() == {"error": "VERIFY refused: not_armed"}
    assert await refusals(armed_only.http, "not_armed") == 1

    monkeypatch.setenv("SMARTCAR_AMT", armed_only.amt)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("EVENT_KEY_PREFIX", armed_only.keys.prefix)
    monkeypatch.setenv("RECEIVER_VERIFY_REQUIRE_ARMED", "true")
    runner = CliRunner()
    armed = runner.invoke(cli, ["arm-verify", "--minutes", "5"])
    assert armed.exit_code == 0, armed.output
    assert "VERIFY armed until" in armed.output
    assert 290 < int(armed_only.redis.ttl(armed_only.keys.verify_armed)) <= 300
    assert "armed for" in runner.invoke(cli, ["verify-status"]).output

    answered = await armed_only.deliver(event, unsigned=True)
    assert answered.json() == {"challenge": hash_challenge(armed_only.amt, CHALLENGE)}

    disarmed = runner.invoke(cli, ["disarm-verify"])
    assert (disarmed.exit_code, disarmed.output.strip()) == (0, "VERIFY disarmed")
    assert (await armed_only.deliver(event, unsigned=True)).status_code == 403
    assert "not armed" in runner.invoke(cli, ["verify-status"]).output
    assert runner.invoke(cli, ["disarm-verify"]).output.strip() == "VERIFY was not armed"


async def test_arming_does_not_let_a_bad_challenge_through(armed_only: Harness, webhook_id: str) -> None:
    armed_only.redis.set(armed_only.keys.verify_armed, "1", ex=60)
    event = payloads.verify_event('{"eventId":"forged"}', webhook_id=webhook_id)
    assert (await armed_only.deliver(event, unsigned=True)).status_code == 403


@pytest.mark.parametrize(("minutes", "answered"), [(10, True), (-10, False)])
async def test_a_fixed_verify_window_from_the_settings(
    make_settings: Callable[..., ReceiverSettings],
    harness: Harness,
    webhook_id: str,
    minutes: int,
    answered: bool,
) -> None:
    until = datetime.now(UTC) + timedelta(minutes=minutes)
    settings = make_settings(verify_require_armed=True, verify_window_until=until)
    async with asgi_client(create_app(settings)) as http:
        response = await Harness(http, harness.redis, harness.keys, harness.amt).deliver(
            payloads.verify_event(CHALLENGE, webhook_id=webhook_id), unsigned=True
        )
    assert response.status_code == (200 if answered else 403)


async def test_arming_required_and_redis_down_gives_503(
    make_settings: Callable[..., ReceiverSettings], dead_redis_url: str, webhook_id: str, amt: str
) -> None:
    settings = make_settings(verify_require_armed=True, redis_url=dead_redis_url, redis_timeout=0.5)
    async with asgi_client(create_app(settings)) as http:
        response = await Harness(http, None, None, amt).deliver(  # type: ignore[arg-type] # - no store to read
            payloads.verify_event(CHALLENGE, webhook_id=webhook_id), unsigned=True
        )
    assert response.status_code == 503
    assert json.loads(response.content) == {"error": "VERIFY refused: unavailable"}


# --- unsigned VERIFY: answered at most RECEIVER_VERIFY_UNSIGNED_PER_MINUTE a minute per process ---------


async def requests_counted(http: httpx.AsyncClient, outcome: str) -> float:
    for family in text_string_to_metric_families((await http.get("/metrics")).text):
        for sample in family.samples:
            if sample.name == "smartcar_webhook_requests_total" and sample.labels == {"outcome": outcome}:
                return float(sample.value)
    return 0.0


def test_unsigned_verify_is_limited_to_60_a_minute_by_default(
    make_settings: Callable[..., ReceiverSettings],
) -> None:
    assert make_settings().verify_unsigned_per_minute == 60


async def test_unsigned_verify_past_the_rate_limit_gets_429_and_signed_deliveries_do_not(
    make_settings: Callable[..., ReceiverSettings],
    harness: Harness,
    webhook_id: str,
    state_event: EventMaker,
) -> None:
    async with asgi_client(create_app(make_settings(verify_unsigned_per_minute=2))) as http:
        limited = Harness(http, harness.redis, harness.keys, harness.amt)
        verify = payloads.verify_event(CHALLENGE, webhook_id=webhook_id)
        legacy = payloads.verify_event(CHALLENGE, webhook_id=webhook_id, legacy=True)
        assert (await limited.deliver(verify, unsigned=True)).status_code == 200
        assert (await limited.deliver(legacy, unsigned=True)).status_code == 200
        refused = await limited.deliver(verify, unsigned=True)
        assert refused.status_code == 429
        assert refused.json() == {"error": "too many unsigned VERIFY requests: retry later"}
        assert 1 <= int(refused.headers["retry-after"]) <= 30  # 2 a minute: a token every 30 s
        assert await requests_counted(http, "rate_limited") == 1
        assert await refusals(http, "rate_limited") == 1
        # an unsigned body naming VERIFY but no VERIFY is refused alike: nothing said about its content
        assert (await limited.deliver(state_event(webhook_name="verify"), unsigned=True)).status_code == 429
        # signed deliveries take nothing from the bucket, and are not refused by it
        for _ in range(3):
            signed = await limited.deliver(verify)
            assert signed.json() == {"challenge": hash_challenge(harness.amt, CHALLENGE)}
            assert (await limited.deliver(state_event())).json()["status"] == "accepted"
        assert (await limited.deliver(verify, amt=OTHER_AMT)).status_code == 401  # signed, wrongly: 401
        assert await requests_counted(http, "rate_limited") == 2
        assert await requests_counted(http, "verify_answered") == 5
    # the bucket is the app's own: another app answers
    assert (await harness.deliver(verify, unsigned=True)).status_code == 200


def test_the_token_bucket_refills_at_its_rate() -> None:
    now = [1000.0]
    bucket = TokenBucket(3, per_seconds=60.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == 20
    now[0] += 19.0
    assert not bucket.take()
    assert bucket.retry_after() == 1
    now[0] += 1.0
    assert bucket.take()
    assert not bucket.take()
    now[0] += 3600.0  # a long quiet time refills it to its capacity, no more
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ValueError, match="rate of at least 1"):
        TokenBucket(0)
