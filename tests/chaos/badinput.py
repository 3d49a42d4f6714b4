"""Generated webhook bodies for the bad-input scenario: envelopes of every shape and type, then bent.

`cases()` is a hypothesis strategy of `Case`s: a template (VERIFY, VEHICLE_STATE in shapes A and B,
VEHICLE_ERROR, the legacy 2.0 family, a type nobody knows) with fields set to values of the wrong type,
deleted, or set to nasty values (NaN, infinities, huge integers, lone surrogates, deep nesting), then
written as JSON text with tricks no serialiser makes (duplicate keys, invalid UTF-8, a BOM, trailing
garbage, NaN literals) and signed correctly, wrongly or not at all. `oracle_cases()`: VERIFYs whose
challenge is a body an attacker would like signed. The answer each must get is the receiver's to
choose; what it must never do is answer 5xx, store what it refused, or sign what is not a challenge.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import strategies as st

from smartcar_simulator import payloads

Signing = Literal["good", "none", "wrong", "malformed", "other-amt"]
VEHICLE_ID = "c0ffee00-0000-4000-8000-000000000001"
CAR: dict[str, Any] = {"id": VEHICLE_ID, "make": "TESLA", "model": "Model 3", "year": 2022}
CAR_OWNER = {**CAR, "user_id": "u5e40000-0000-4000-8000-000000000001"}
WEBHOOK = "wh-chaos"
SMARTCAR_CHALLENGE = re.compile(r"[A-Za-z0-9-]{1,128}")
"""What a challenge Smartcar sends looks like; a VERIFY answered for anything else is a signing oracle."""


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    body: bytes
    signing: Signing
    challenge: str | None = None
    """For a VERIFY oracle attempt: the text it asks the receiver to sign."""


def _soc(oem: Any = None) -> dict[str, Any]:
    now = payloads.now_ms()
    return payloads.signal_item(
        "tractionbattery-stateofcharge", name="StateOfCharge", group="TractionBattery",
        body={"value": 55}, oem_updated_at=oem or now, retrieved_at=now,
    )  # fmt: skip


def templates() -> dict[str, dict[str, Any]]:
    """A valid envelope of each shape and type (fresh ids each call)."""
    state_a = payloads.vehicle_state_event(
        CAR_OWNER, [_soc()], webhook_id=WEBHOOK, triggers=["tractionbattery-stateofcharge"]
    )
    state_b = payloads.vehicle_state_event(
        CAR_OWNER, [_soc()], webhook_id=WEBHOOK, triggers=["tractionbattery-stateofcharge"], shape="B"
    )
    error = payloads.vehicle_error_event(
        CAR_OWNER, [{"type": "CHARGE", "code": "CHARGE_FAULT"}], webhook_id=WEBHOOK
    )
    return {
        "VERIFY": payloads.verify_event(webhook_id=WEBHOOK),
        "VEHICLE_STATE/A": state_a,
        "VEHICLE_STATE/B": state_b,
        "VEHICLE_ERROR": error,
        "legacy verify": payloads.verify_event(webhook_id=WEBHOOK, legacy=True),
        "legacy eventBased": payloads.legacy_event("eventBased", webhook_id=WEBHOOK, vehicle_id=VEHICLE_ID),
        "legacy scheduled": payloads.legacy_event("scheduled", webhook_id=WEBHOOK, vehicle_id=VEHICLE_ID),
        "unknown type": {**state_a, "eventType": "SOMETHING_NEW", "eventId": str(uuid.uuid4())},
    }


FIELDS = (
    "eventId", "eventType", "vehicleId", "data", "data.vehicle", "data.vehicle.id", "data.user",
    "data.user.id", "data.signals", "data.signals.0", "data.signals.0.code", "data.signals.0.body",
    "data.signals.0.meta", "data.signals.0.meta.oemUpdatedAt", "data.signals.0.status", "data.triggers",
    "data.triggers.0", "triggers", "data.errors", "data.errors.0", "data.errors.0.state", "data.challenge",
    "meta", "meta.deliveredAt", "meta.version", "meta.mode", "meta.webhookId", "meta.deliveryId",
    "eventName", "version", "mode", "payload", "payload.challenge", "payload.eventId", "payload.vehicleId",
    "payload.vehicles", "payload.vehicles.0", "payload.vehicles.0.vehicleId",
)  # fmt: skip
NASTY: tuple[Any, ...] = (
    float("nan"), float("inf"), float("-inf"), 1e308, -1, 0, True, False, None, "", " ", "\ud800",
    "\udfff", "a\ud800b", "\x00", "\u202e", "ʟᴏɴɢ", 2**63, -(2**63) - 1, 10**40, [], {}, [None], {"": ""},
    "NaN", "2025-13-45T99:99:99", "2025-10-31T07:39:11", "2025-10-31T07:39:11+00:00", "1e999", "VERIFY",
    "verify", "VEHICLE_STATE", "x" * 5000,
)  # fmt: skip


def json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=40)
        | st.sampled_from(NASTY)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=12,
    )


def _set(body: dict[str, Any], path: str, value: Any, *, delete: bool) -> None:
    """Set (or delete) the field at a dotted path; a path that does not exist in this body is skipped."""
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = (
            node[int(part)]
            if isinstance(node, list) and part.isdigit() and int(part) < len(node)
            else (node.get(part) if isinstance(node, dict) else None)
        )
        if node is None:
            return
    if isinstance(node, dict):
        if delete:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value


def _nest(depth: int, inner: str) -> str:
    return "[" * depth + inner + "]" * depth


def _dumps(body: Any, *, ascii_only: bool) -> bytes:
    text = json.dumps(body, ensure_ascii=ascii_only, separators=(",", ":"), allow_nan=True)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes no UTF-8 decoder takes


def _at_delivered(raw: bytes, value: bytes) -> bytes:
    """`meta.deliveredAt` written as `value`, its old value moved to a key of no meaning."""
    return raw.replace(b'"deliveredAt":', b'"deliveredAt":' + value + b',"x":', 1)


Trick = Callable[[bytes, bytes, bytes, int], bytes]
# name -> (raw JSON, raw without its opening brace, another JSON value, a depth) -> the body sent
TRICKS: dict[str, Trick] = {
    "none": lambda raw, _inner, _extra, _depth: raw,
    "duplicate key first": lambda _raw, inner, extra, _depth: b'{"eventId":' + extra + b"," + inner,
    "duplicate key last": lambda raw, _inner, extra, _depth: raw[:-1] + b',"eventType":' + extra + b"}",
    "deep nesting": lambda _raw, inner, _extra, depth: (
        b'{"data":' + _nest(depth, "1").encode() + b"," + inner
    ),
    "invalid utf-8": lambda raw, _inner, _extra, _depth: raw.replace(b'"', b'"\xff\xfe', 3),
    "overlong utf-8": lambda raw, _inner, _extra, _depth: raw.replace(b"a", b"\xc1\xa1", 2),
    "bom": lambda raw, _inner, _extra, _depth: b"\xef\xbb\xbf" + raw,
    "trailing garbage": lambda raw, _inner, extra, _depth: raw + b"}{" + extra,
    "nan literal": lambda raw, _inner, _extra, _depth: _at_delivered(raw, b"NaN"),
    "huge number": lambda raw, _inner, _extra, _depth: _at_delivered(raw, b"-1e999"),
    "huge integer": lambda raw, _inner, _extra, _depth: _at_delivered(raw, b"9" * 5000),
    "truncated": lambda raw, _inner, _extra, _depth: raw[: max(1, len(raw) // 2)],
    "empty": lambda _raw, _inner, _extra, _depth: b"",
    "whitespace": lambda raw, _inner, _extra, _depth: b" \t\r\n" + raw + b"\n\n",
    "not an object": lambda raw, _inner, _extra, _depth: b"[" + raw + b"]",
    "escaped surrogate": lambda raw, _inner, _extra, _depth: raw.replace(
        b'"eventId":"', b'"eventId":"\\ud834', 1
    ),
}


# Built once: hypothesis validates a strategy the first time it draws from it, and a strategy built
# inside `cases` would be a new one (validated again) on every draw.
KINDS = st.sampled_from(sorted(templates()))
PATHS = st.sampled_from(FIELDS)
VALUES = st.sampled_from(NASTY) | json_values()
TRICK_NAMES = st.sampled_from(sorted(TRICKS))
DEPTHS = st.sampled_from([10, 100, 1_000, 20_000, 100_000])
SIGNINGS: st.SearchStrategy[Signing] = st.sampled_from(
    ["good"] * 6 + ["none", "wrong", "malformed", "other-amt"]
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    kind = draw(KINDS)
    body = templates()[kind]
    mutations = draw(st.integers(0, 3))
    for _ in range(mutations):
        path = draw(PATHS)
        # A copy: NASTY's lists and dicts are shared, and a later mutation could nest one in itself.
        _set(body, path, copy.deepcopy(draw(VALUES)), delete=draw(st.integers(0, 4)) == 0)
    raw = _dumps(body, ascii_only=draw(st.booleans()))
    trick = draw(TRICK_NAMES)
    extra = _dumps(draw(VALUES), ascii_only=False)
    raw = TRICKS[trick](raw, raw[1:] if raw.startswith(b"{") else raw, extra, draw(DEPTHS))
    return Case(f"{kind}, {mutations} mutations, {trick}", raw, draw(SIGNINGS))


FORGED = payloads.vehicle_state_event(
    CAR_OWNER, [_soc()], webhook_id=WEBHOOK, triggers=["tractionbattery-stateofcharge"]
)
ORACLE_CHALLENGES: tuple[str, ...] = (
    json.dumps(FORGED, separators=(",", ":")),
    json.dumps(FORGED),
    " " + json.dumps(FORGED, separators=(",", ":")),
    '{"eventId":"x","eventType":"VEHICLE_STATE","vehicleId":"v"}',
    "a" * 129,
    "b" * 100_000,
    "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48",  # fullwidth letters
    "é-challenge",
    "challenge\n",
    "chal lenge",
    "-",
    "٣٤٥",
    "\ud800",
    "1e3",
)


def oracle_cases() -> list[Case]:
    """VERIFYs (current and legacy, signed and not) asking to sign a body, or something not a challenge."""
    made = []
    for challenge in ORACLE_CHALLENGES:
        for legacy in (False, True):
            event = payloads.verify_event(challenge, webhook_id=WEBHOOK, legacy=legacy)
            raw = _dumps(event, ascii_only=False)
            signings: tuple[Signing, ...] = ("none", "good", "wrong")
            made += [Case(f"VERIFY oracle, legacy={legacy}", raw, signing, challenge) for signing in signings]
    wrong_types: tuple[Any, ...] = (None, 1, [], {}, True, 1.5)
    for value in wrong_types:  # a challenge of the wrong type
        event = {**payloads.verify_event(webhook_id=WEBHOOK), "data": {"challenge": value}}
        made.append(Case("VERIFY typed challenge", _dumps(event, ascii_only=True), "none"))
    return made
