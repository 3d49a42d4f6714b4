"""Webhook signatures: the VERIFY answer, SC-Signature checks over bytes, str and dict bodies."""

from __future__ import annotations

import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartcar_core import get_management_token, hash_challenge, verify_payload
from smartcar_core.webhooks import signature_of

PIZZA_SIGNATURE = "4c05a8da471f05156ad717baa4017acd13a3a809850b9ca7d3301dcaaa854f70"
HEX = "0123456789abcdef"


def test_hash_challenge_vectors() -> None:
    assert (
        hash_challenge("amt", "challenge")
        == "9baf5a7464bd86740ad5a06e439dcf535a075022ed2c92d74efacf646d79328e"
    )
    assert (
        hash_challenge("abc123abc123", "9c9c9c9c")
        == "2a596ed34b8c6f069492d952aa51f076fee7b1c662b6498e0217a0d41fd9b936"
    )


def test_verify_payload_vector_with_a_dict() -> None:
    assert verify_payload("amt", PIZZA_SIGNATURE, {"pizza": "pasta"}) is True


@pytest.mark.parametrize("body", [b'{"pizza":"pasta"}', '{"pizza":"pasta"}', {"pizza": "pasta"}])
def test_bytes_str_and_dict_bodies(body: bytes | str | dict[str, Any]) -> None:
    assert verify_payload("amt", PIZZA_SIGNATURE, body)
    assert not verify_payload("other-amt", PIZZA_SIGNATURE, body)


def test_raw_bytes_are_hashed_exactly_as_given() -> None:
    pretty = b'{"pizza": "pasta"}'
    assert not verify_payload("amt", PIZZA_SIGNATURE, pretty)
    assert verify_payload("amt", signature_of("amt", pretty), pretty)


def test_a_dict_is_serialised_compactly_without_ascii_escapes() -> None:
    body = {"city": "Zürich", "n": [1, 2.5]}
    expected = signature_of("amt", '{"city":"Zürich","n":[1,2.5]}'.encode())

    assert verify_payload("amt", expected, body)
    assert not verify_payload("amt", signature_of("amt", json.dumps(body).encode()), body)


@pytest.mark.parametrize(
    "shown", [PIZZA_SIGNATURE.upper(), f"  {PIZZA_SIGNATURE}\n", f"\t{PIZZA_SIGNATURE.upper()} "]
)
def test_signature_case_and_surrounding_whitespace_are_tolerated(shown: str) -> None:
    assert verify_payload("amt", shown, b'{"pizza":"pasta"}')


@pytest.mark.parametrize(
    "signature",
    ["", "zz", PIZZA_SIGNATURE[:-1], PIZZA_SIGNATURE + "0", "é" * 64, "sha256=" + PIZZA_SIGNATURE],
)
def test_malformed_signatures_fail_without_raising(signature: str) -> None:
    assert verify_payload("amt", signature, b'{"pizza":"pasta"}') is False


def test_the_comparison_takes_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(left: bytes, right: bytes) -> bool:
        compared.append((left, right))
        return real(left, right)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    assert verify_payload("amt", PIZZA_SIGNATURE.upper(), b'{"pizza":"pasta"}')
    assert compared == [(PIZZA_SIGNATURE.encode(), PIZZA_SIGNATURE.encode())]


def test_signature_of_takes_a_str_or_bytes_key() -> None:
    assert signature_of("amt", b"x") == signature_of(b"amt", b"x")
    assert signature_of("amt", b"challenge") == hash_challenge("amt", "challenge")


def test_management_token_is_basic_default_and_the_amt() -> None:
    assert get_management_token("amt") == "ZGVmYXVsdDphbXQ="
    assert get_management_token("fake-amt") == "ZGVmYXVsdDpmYWtlLWFtdA=="
    assert get_management_token("amt", "someone") == "c29tZW9uZTphbXQ="


amts = st.text(min_size=1, max_size=40)
bodies = st.binary(min_size=1, max_size=512)


@given(amt=amts, body=bodies)
def test_any_body_verifies_with_its_own_signature(amt: str, body: bytes) -> None:
    assert verify_payload(amt, signature_of(amt, body), body)


@given(amt=amts, body=bodies, data=st.data())
def test_any_changed_byte_of_the_body_fails(amt: str, body: bytes, data: st.DataObject) -> None:
    signature = signature_of(amt, body)
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]

    assert not verify_payload(amt, signature, changed)


@given(amt=amts, body=bodies, data=st.data())
def test_any_changed_character_of_the_signature_fails(amt: str, body: bytes, data: st.DataObject) -> None:
    signature = signature_of(amt, body)
    index = data.draw(st.integers(min_value=0, max_value=len(signature) - 1))
    replacement = data.draw(st.sampled_from([char for char in HEX if char != signature[index]]))
    changed = signature[:index] + replacement + signature[index + 1 :]

    assert not verify_payload(amt, changed, body)


@given(amt=amts, body=bodies, extra=st.binary(min_size=1, max_size=8))
def test_appended_bytes_fail(amt: str, body: bytes, extra: bytes) -> None:
    assert not verify_payload(amt, signature_of(amt, body), body + extra)
