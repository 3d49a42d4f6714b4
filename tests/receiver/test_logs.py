"""One log line per delivery with what on-call needs (event, delivery, vehicle, outcome), and never a secret:
no AMT, no signature, no challenge answer, no payload. (conftest restores structlog's configuration.)"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from receiver.app import create_app
from receiver.settings import ReceiverSettings
from service_base.logs import bound_logger, configure_logging, stdlib_formatter
from smartcar_core.webhooks import hash_challenge, signature_of
from smartcar_simulator import payloads
from testsupport.receiver import Harness, asgi_client, body_of

EventMaker = Callable[..., dict[str, Any]]
CHALLENGE = "3a5c8f72-e6d9-4b1a-9f2e-8c7d6a5b4e3f"

pytestmark = pytest.mark.anyio


async def every_kind_of_delivery(harness: Harness, state_event: EventMaker, webhook_id: str) -> list[bytes]:
    """Accepted, duplicate, unsigned, forged, malformed, VERIFY answered and refused; the bodies sent."""
    event = state_event("B", mode="TEST")
    verify = payloads.verify_event(CHALLENGE, webhook_id=webhook_id)
    oracle = payloads.verify_event(body_of(state_event()).decode(), webhook_id=webhook_id)
    await harness.deliver(event)
    await harness.deliver(event)
    await harness.deliver(state_event(), unsigned=True)
    await harness.deliver(state_event(), amt="amt-someone-else-000")
    await harness.deliver(b'{"eventType": "VEHICLE_STATE"}')
    await harness.deliver(verify, unsigned=True)
    await harness.deliver(oracle, unsigned=True)
    return [body_of(item) for item in (event, verify, oracle)]


def assert_no_secret(text: str, harness: Harness, bodies: list[bytes]) -> None:
    assert harness.amt not in text
    assert hash_challenge(harness.amt, CHALLENGE) not in text
    for body in bodies:
        assert signature_of(harness.amt, body) not in text
        assert body.decode() not in text
    assert '"signals"' not in text
    assert "StateOfCharge" not in text


async def test_captured_log_entries_carry_ids_and_outcomes_and_no_secret(
    harness: Harness, state_event: EventMaker, webhook_id: str, vehicle: dict[str, Any]
) -> None:
    with capture_logs() as logs:
        bodies = await every_kind_of_delivery(harness, state_event, webhook_id)
    outcomes = [entry["outcome"] for entry in logs]
    assert outcomes == [
        "accepted",
        "duplicate",
        "unauthorized",
        "unauthorized",
        "invalid",
        "verify_answered",
        "verify_refused",
    ]
    accepted = logs[0]
    assert accepted["event"] == "webhook"
    assert accepted["log_level"] == "info"
    assert accepted["vehicle_id"] == vehicle["id"]
    assert accepted["delivery_id"]
    assert accepted["event_id"]
    assert accepted["test"] is True
    refused = logs[2]
    assert (refused["log_level"], refused["status"], refused["reason"]) == ("warning", 401, "missing")
    assert refused["client"] == "203.0.113.9"
    assert logs[6]["problem"] == "VERIFY refused: challenge_shape"
    assert_no_secret(repr(logs), harness, bodies)


async def test_rendered_json_lines_hold_no_secret(
    make_settings: Callable[..., ReceiverSettings],
    harness: Harness,
    state_event: EventMaker,
    webhook_id: str,
) -> None:
    out = io.StringIO()
    configure_logging("json", "debug", out)
    app = create_app(make_settings(), configure_logs=False)  # its logger is bound to the configuration above
    async with asgi_client(app) as http:
        bodies = await every_kind_of_delivery(
            Harness(http, harness.redis, harness.keys, harness.amt), state_event, webhook_id
        )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    # The first line (after the test Redis's durability warning, if it has no AOF) says it started.
    assert next(line["event"] for line in lines if line["event"] != "redis_not_durable") == "receiver_started"
    assert {line.get("outcome") for line in lines} >= {
        "accepted",
        "duplicate",
        "unauthorized",
        "verify_answered",
    }
    assert all("timestamp" in line and "level" in line for line in lines)
    assert_no_secret(out.getvalue(), harness, bodies)


def test_secret_keys_are_redacted_whoever_logs_them() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    bound_logger("receiver").info(
        "careless", amt="amt-secret-000000", token="tok", raw=b"{}", vehicle_id="v1"
    )
    line = json.loads(out.getvalue())
    assert line["amt"] == line["token"] == line["raw"] == "[redacted]"
    assert line["vehicle_id"] == "v1"
    assert "amt-secret" not in out.getvalue()


def test_console_format_and_level_filter() -> None:
    out = io.StringIO()
    configure_logging("console", "warning", out)
    log = bound_logger("receiver")
    log.info("quiet", event_id="e-1")
    log.warning("loud", event_id="e-2")
    text = out.getvalue()
    assert "quiet" not in text
    assert "loud" in text
    assert "e-2" in text
    assert not text.lstrip().startswith("{")  # pretty, not JSON
    assert "\x1b[" not in text  # no colours off a terminal


def test_auto_format_is_json_off_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("auto", "info", out)
    bound_logger("receiver").info("hello", event_id="e-3")
    assert json.loads(out.getvalue())["event_id"] == "e-3"


def test_json_lines_carry_a_traceback_as_text() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    try:
        int("boom")
    except ValueError:
        bound_logger("receiver").warning("failed", exc_info=True)
    line = json.loads(out.getvalue())
    assert line["event"] == "failed"
    assert "ValueError: invalid literal for int() with base 10: 'boom'" in line["exception"]
    assert "Traceback" in line["exception"]


def test_json_lines_take_whatever_a_field_holds() -> None:
    """orjson writes the lines; what it refuses (an integer past 64 bits) falls back to json.dumps, and
    what neither knows is written as its repr: a log call never raises."""
    out = io.StringIO()
    configure_logging("json", "info", out)
    log = bound_logger("receiver")

    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    log.info("plain", vehicle_id="v-1", count=3, ratio=0.5, test=False, codes=["a"], none=None, text="é")
    log.info("huge", number=2**70, keyed={1: "one"})
    log.info("odd", thing=Odd(), keyed={1: Odd()})
    plain, huge, odd = (json.loads(line) for line in out.getvalue().splitlines())
    assert plain["count"] == 3
    assert plain["text"] == "é"
    assert (plain["none"], plain["test"], plain["codes"]) == (None, False, ["a"])
    assert (huge["number"], huge["keyed"]) == (2**70, {"1": "one"})
    assert (odd["thing"], odd["keyed"]) == ("<odd>", {"1": "<odd>"})
    assert (odd["level"], odd["logger_name"]) == ("info", "receiver")


def test_stdlib_records_with_a_traceback_are_json_lines_in_our_shape() -> None:
    """Celery's own lines (e.g. "Unrecoverable error") as a worker writes them with LOG_FORMAT=json."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(stdlib_formatter("json", out))
    logger = logging.getLogger("celery.test-formatter")
    logger.addHandler(handler)
    try:
        try:
            _ = {"known": 1}["unrecoverable"]  # raises KeyError: the traceback under test
        except KeyError:
            logger.exception("Unrecoverable error: %s", "boom")
    finally:
        logger.removeHandler(handler)
    line = json.loads(out.getvalue())
    assert (line["event"], line["level"], line["logger_name"]) == (
        "Unrecoverable error: boom",
        "error",
        "celery.test-formatter",
    )
    assert "KeyError: 'unrecoverable'" in line["exception"]
