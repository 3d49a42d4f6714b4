"""RetryPolicy over the whole catalogue: actions, benign codes, Retry-After, backoff and jitter, fallbacks."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartcar_core import (
    Action,
    Resolution,
    RetryClass,
    RetryDecision,
    RetryPolicy,
    SmartcarConnectionError,
    SmartcarError,
    SmartcarTimeoutError,
)
from smartcar_core.catalogue import BENIGN, CATALOGUE, classify
from smartcar_core.errors import _BY_TYPE
from smartcar_core.retry import DEFAULT_RETRY_POLICY

STATUS_BY_TYPE = {
    "AUTHENTICATION": 401,
    "BILLING": 430,
    "COMPATIBILITY": 501,
    "CONNECTED_SERVICES_ACCOUNT": 400,
    "PERMISSION": 403,
    "RATE_LIMIT": 429,
    "RESOURCE_NOT_FOUND": 404,
    "SERVER": 500,
    "UPSTREAM": 502,
    "VALIDATION": 400,
    "VEHICLE_STATE": 409,
}

# The "Auto-retry" column of smartcar-errors.md, section 2, written out independently of the catalogue:
# Y retry, RA after Retry-After, L long delays, N never, R refresh the token once, B benign (else N).
DOCUMENTED = """
AUTHENTICATION - R
BILLING INVALID_PLAN N
BILLING VEHICLE_LIMIT N
BILLING VEHICLE_REQUEST_LIMIT N
BILLING ACCOUNT_SUSPENDED N
COMPATIBILITY MAKE_NOT_COMPATIBLE N
COMPATIBILITY SMARTCAR_NOT_CAPABLE N
COMPATIBILITY VEHICLE_NOT_CAPABLE N
COMPATIBILITY PLATFORM_NOT_CAPABLE N
CONNECTED_SERVICES_ACCOUNT ACCOUNT_ISSUE N
CONNECTED_SERVICES_ACCOUNT AUTHENTICATION_FAILED N
CONNECTED_SERVICES_ACCOUNT NO_VEHICLES N
CONNECTED_SERVICES_ACCOUNT PERMISSION N
CONNECTED_SERVICES_ACCOUNT SUBSCRIPTION N
CONNECTED_SERVICES_ACCOUNT VEHICLE_MISSING N
CONNECTED_SERVICES_ACCOUNT VIRTUAL_KEY_REQUIRED N
PERMISSION - N
RATE_LIMIT SMARTCAR_API Y
RATE_LIMIT VEHICLE RA
RESOURCE_NOT_FOUND PATH N
RESOURCE_NOT_FOUND VERSION N
SERVER INTERNAL Y
SERVER MULTIPLE_RECORDS_FOUND N
SERVER RECORD_NOT_FOUND N
UPSTREAM INVALID_DATA Y
UPSTREAM KNOWN_ISSUE Y
UPSTREAM NO_RESPONSE Y
UPSTREAM RATE_LIMIT L
UPSTREAM UNKNOWN_ISSUE Y
VALIDATION - N
VALIDATION PARAMETER N
VEHICLE_STATE ASLEEP L
VEHICLE_STATE CHARGING_IN_PROGRESS B
VEHICLE_STATE CHARGING_PLUG_CONNECTED N
VEHICLE_STATE CHARGING_PLUG_NOT_CONNECTED N
VEHICLE_STATE CHARGE_FAULT N
VEHICLE_STATE DOOR_OPEN N
VEHICLE_STATE FULLY_CHARGED B
VEHICLE_STATE HOOD_OPEN N
VEHICLE_STATE IGNITION_ON L
VEHICLE_STATE IN_MOTION L
VEHICLE_STATE LOW_BATTERY L
VEHICLE_STATE NOT_CHARGING B
VEHICLE_STATE REMOTE_ACCESS_DISABLED N
VEHICLE_STATE TRUNK_OPEN N
VEHICLE_STATE UNKNOWN Y
VEHICLE_STATE UNREACHABLE L
VEHICLE_STATE VEHICLE_OFFLINE_FOR_SERVICE L
"""
LEGEND = {
    "Y": RetryClass.RETRY,
    "RA": RetryClass.RETRY_AFTER,
    "L": RetryClass.LONG_DELAY,
    "N": RetryClass.NEVER,
    "B": RetryClass.NEVER,
    "R": RetryClass.REFRESH_TOKEN,
}
EXPECTED = {
    (error_type, None if code == "-" else code): LEGEND[mark]
    for error_type, code, mark in (line.split() for line in DOCUMENTED.strip().splitlines())
}
ENTRIES = sorted(CATALOGUE.items(), key=lambda item: (item[0][0], item[0][1] or ""))
IDS = [f"{error_type}:{code}" for (error_type, code), _ in ENTRIES]
LATER = (RetryClass.RETRY, RetryClass.RETRY_AFTER, RetryClass.LONG_DELAY)
RETRIED_LATER = [entry for entry in ENTRIES if entry[1] in LATER]
COMMANDS = ("start_charge", "stop_charge", "lock", "unlock", "set_charge_limit", "send_destination", None)

NO_JITTER = RetryPolicy(random=lambda: 0.0)


def error_for(
    error_type: str | None,
    code: str | None,
    *,
    status: int | None = None,
    retry_after: float | None = None,
    resolution: str | None = None,
) -> SmartcarError:
    error_class = _BY_TYPE.get(error_type or "", SmartcarError)
    return error_class(
        status_code=status if status is not None else STATUS_BY_TYPE.get(error_type or "", 400),
        type=error_type,
        code=code,
        description="d",
        retry_after=retry_after,
        resolution=Resolution(resolution) if resolution else None,
    )


def test_the_catalogue_is_the_documented_table() -> None:
    assert CATALOGUE == EXPECTED
    benign = {
        key
        for key, mark in (
            (tuple(line.split()[:2]), line.split()[2]) for line in DOCUMENTED.strip().splitlines()
        )
        if mark == "B"
    }
    assert set(BENIGN) == benign


@pytest.mark.parametrize(("key", "retry_class"), ENTRIES, ids=IDS)
def test_each_catalogue_class_gets_its_action(key: tuple[str, str | None], retry_class: RetryClass) -> None:
    error = error_for(*key)
    assert error.retry_class is retry_class

    decision = NO_JITTER.decide(error, 1)

    expected_action = {
        RetryClass.NEVER: Action.GIVE_UP,
        RetryClass.REFRESH_TOKEN: Action.REFRESH_AND_RETRY,
        RetryClass.RETRY: Action.RETRY,
        RetryClass.RETRY_AFTER: Action.RETRY,
        RetryClass.LONG_DELAY: Action.RETRY,
    }[retry_class]
    assert decision.action is expected_action
    assert decision.retry_class is retry_class
    assert decision.retry is (expected_action is not Action.GIVE_UP)
    expected_delay = {RetryClass.LONG_DELAY: 300.0, RetryClass.RETRY: 1.0, RetryClass.RETRY_AFTER: 1.0}
    assert decision.delay == expected_delay.get(retry_class, 0.0)


@pytest.mark.parametrize(("key", "retry_class"), ENTRIES, ids=IDS)
def test_each_catalogue_code_is_done_only_for_the_commands_it_is_benign_for(
    key: tuple[str, str | None], retry_class: RetryClass
) -> None:
    error = error_for(*key)
    benign_for = BENIGN.get((key[0], key[1] or ""), frozenset())
    for command in COMMANDS:
        decision = NO_JITTER.decide(error, 1, command=command)
        if command in benign_for:
            assert decision == RetryDecision(
                Action.DONE, reason=f"{key[1]} means {command} has nothing to do"
            )
        else:
            assert decision.action is not Action.DONE
            assert decision.retry_class is retry_class


@pytest.mark.parametrize(("key", "retry_class"), ENTRIES, ids=IDS)
def test_retry_after_is_honoured_and_capped_for_every_retryable_class(
    key: tuple[str, str | None], retry_class: RetryClass
) -> None:
    policy = RetryPolicy(max_retry_after=120.0, random=lambda: 0.0)
    short = policy.decide(error_for(*key, retry_after=30.0), 1)
    long = policy.decide(error_for(*key, retry_after=3600.0), 1)

    if retry_class in LATER:
        assert (short.action, short.delay, short.retry_class) == (Action.RETRY, 30.0, RetryClass.RETRY_AFTER)
        assert (long.action, long.delay) == (Action.RETRY, 120.0)
        assert short.reason == "honouring Retry-After"
    else:
        assert short.action is long.action is not Action.RETRY


@pytest.mark.parametrize(
    ("key", "retry_class"), RETRIED_LATER, ids=[f"{t}:{c}" for (t, c), _ in RETRIED_LATER]
)
def test_attempts_run_out_for_every_class_retried_later(
    key: tuple[str, str | None], retry_class: RetryClass
) -> None:
    policy = RetryPolicy(max_attempts=3, long_max_attempts=2, random=lambda: 0.0)
    error = error_for(*key)
    last = 2 if retry_class is RetryClass.LONG_DELAY else 3

    assert policy.decide(error, last - 1).action is Action.RETRY
    final = policy.decide(error, last)
    assert final == RetryDecision(
        Action.GIVE_UP, reason=f"gave up after {last} attempts", retry_class=retry_class
    )
    assert policy.decide(error_for(*key, retry_after=1.0), last).action is Action.GIVE_UP


def test_authentication_refreshes_once_then_gives_up() -> None:
    error = error_for("AUTHENTICATION", None)

    first = DEFAULT_RETRY_POLICY.decide(error, 1)
    again = DEFAULT_RETRY_POLICY.decide(error, 2, refreshed=True)

    assert (first.action, first.delay, first.reason) == (
        Action.REFRESH_AND_RETRY,
        0.0,
        "access token refused",
    )
    assert first.retry
    assert again == RetryDecision(
        Action.GIVE_UP,
        reason="the token was refused again after a refresh",
        retry_class=RetryClass.REFRESH_TOKEN,
    )
    assert not again.retry


def test_never_gives_up_at_once_saying_why() -> None:
    decision = DEFAULT_RETRY_POLICY.decide(error_for("VEHICLE_STATE", "DOOR_OPEN"), 1, command="lock")

    assert decision == RetryDecision(
        Action.GIVE_UP, reason="VEHICLE_STATE:DOOR_OPEN - d is not retryable", retry_class=RetryClass.NEVER
    )


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=60.0, random=lambda: 0.0)
    error = error_for("SERVER", "INTERNAL")

    delays = [policy.decide(error, attempt).delay for attempt in range(1, 10)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert [policy.backoff(attempt) for attempt in range(1, 10)] == delays


def test_long_delays_double_from_five_minutes_up_to_an_hour() -> None:
    policy = RetryPolicy(long_max_attempts=6, random=lambda: 0.0)
    error = error_for("VEHICLE_STATE", "ASLEEP")

    assert [policy.decide(error, attempt).delay for attempt in range(1, 6)] == [
        300.0,
        600.0,
        1200.0,
        2400.0,
        3600.0,
    ]
    assert policy.decide(error, 6).action is Action.GIVE_UP


def test_full_jitter_takes_at_most_the_jitter_fraction_away() -> None:
    policy = RetryPolicy(jitter=0.5, random=lambda: 1.0)

    assert policy.backoff(3) == 2.0  # 4 s less half


@given(
    attempt=st.integers(min_value=1, max_value=60),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
def test_jittered_backoff_stays_within_its_range(attempt: int, draw: float, jitter: float) -> None:
    policy = RetryPolicy(jitter=jitter, random=lambda: draw)
    ceiling = min(60.0, 2.0 ** (attempt - 1))

    delay = policy.backoff(attempt)

    assert ceiling * (1 - jitter) - 1e-9 <= delay <= ceiling


def test_the_default_jitter_uses_random_and_spreads_the_delays() -> None:
    seeded = random.Random(7)  # noqa: S311 - jitter, not cryptography
    policy = RetryPolicy(random=seeded.random)
    delays = {policy.backoff(4) for _ in range(50)}

    assert len(delays) > 40
    assert all(4.0 <= delay <= 8.0 for delay in delays)
    assert 0.0 < DEFAULT_RETRY_POLICY.backoff(1) <= 1.0


@pytest.mark.parametrize(
    ("error_type", "code", "status", "resolution", "expected"),
    [
        ("AUTHENTICATION", "UNAUTHORIZED", 401, None, RetryClass.REFRESH_TOKEN),  # v3 code: by type
        ("PERMISSION", "ACCESS_DENIED", 403, None, RetryClass.NEVER),
        ("VALIDATION", "INVALID_INPUT_FORMAT", 400, None, RetryClass.NEVER),
        ("VEHICLE_STATE", "NEW_CODE", 409, "RETRY_LATER", RetryClass.RETRY),  # by resolution
        ("VEHICLE_STATE", "NEW_CODE", 409, "CONTACT_SUPPORT", RetryClass.NEVER),
        (
            "VEHICLE_STATE",
            "NEW_CODE",
            409,
            "USER_ACTION_REQUIRED",
            RetryClass.NEVER,
        ),  # unknown: needs a human
        ("VEHICLE_STATE", "NEW_CODE", 503, "FINANCE", RetryClass.NEVER),
        ("NEW_TYPE", "NEW_CODE", 500, None, RetryClass.RETRY),  # by status
        ("NEW_TYPE", None, 502, None, RetryClass.RETRY),
        ("NEW_TYPE", None, 503, None, RetryClass.RETRY),
        ("NEW_TYPE", None, 429, None, RetryClass.RETRY),
        ("NEW_TYPE", None, 408, None, RetryClass.RETRY),
        ("NEW_TYPE", None, 400, None, RetryClass.NEVER),
        ("NEW_TYPE", None, 404, None, RetryClass.NEVER),
        ("NEW_TYPE", None, 409, None, RetryClass.NEVER),
        (None, None, 418, None, RetryClass.NEVER),
        (None, None, None, None, RetryClass.RETRY),
        ("VEHICLE_STATE", None, 409, None, RetryClass.NEVER),
    ],
)
def test_unknown_codes_fall_back_by_type_then_resolution_then_status(
    error_type: str | None, code: str | None, status: int | None, resolution: str | None, expected: RetryClass
) -> None:
    assert classify(error_type, code, status, resolution) is expected
    error = SmartcarError(
        status_code=status,
        type=error_type,
        code=code,
        resolution=Resolution(resolution) if resolution else None,
    )
    assert error.retry_class is expected


@pytest.mark.parametrize(
    "error",
    [
        SmartcarTimeoutError("Request timed out", request_sent=True),
        SmartcarConnectionError("ConnectError", request_sent=False),
    ],
)
def test_network_failures_are_retried_with_backoff(error: SmartcarError) -> None:
    decision = NO_JITTER.decide(error, 2)

    assert (decision.action, decision.delay, decision.retry_class) == (Action.RETRY, 2.0, RetryClass.RETRY)


def test_benign_codes_need_a_command_type_and_code() -> None:
    assert not error_for("VEHICLE_STATE", "FULLY_CHARGED").is_benign_for("lock")
    assert not SmartcarError(status_code=409, type="VEHICLE_STATE").is_benign_for("start_charge")
    assert not SmartcarError(status_code=409, type=None, code="FULLY_CHARGED").is_benign_for("start_charge")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_attempts": 0}, "at least 1"),
        ({"long_max_attempts": 0}, "at least 1"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"base_delay": -1.0}, "base_delay"),
        ({"base_delay": 10.0, "max_delay": 5.0}, "base_delay"),
        ({"long_base_delay": -1.0}, "long_base_delay"),
        ({"long_base_delay": 100.0, "long_max_delay": 50.0}, "long_base_delay"),
    ],
)
def test_policy_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**settings)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="attempt counts from 1"):
        DEFAULT_RETRY_POLICY.decide(error_for("SERVER", "INTERNAL"), 0)
