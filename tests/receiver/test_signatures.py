"""SignatureChecker alone: constant-time checks against every AMT, and nothing of the AMTs in its repr."""

from __future__ import annotations

import pytest

from receiver.signatures import SignatureChecker, SignatureFailure
from smartcar_core.webhooks import hash_challenge, signature_of

BODY = b'{"eventId":"e-1","eventType":"VEHICLE_STATE"}'


def test_each_amt_of_the_rotation_list_verifies() -> None:
    checker = SignatureChecker(["amt-new-0000000", "amt-old-1111111"])
    assert checker.check(BODY, signature_of("amt-new-0000000", BODY).encode()) is None
    assert checker.check(BODY, signature_of("amt-old-1111111", BODY).encode()) is None
    assert checker.check(BODY, signature_of("amt-gone-222222", BODY).encode()) is SignatureFailure.MISMATCH


@pytest.mark.parametrize(
    ("header", "failure"),
    [
        (None, SignatureFailure.MISSING),
        (b"   ", SignatureFailure.MISSING),
        (b"z" * 64, SignatureFailure.MALFORMED),
        (b"a" * 65, SignatureFailure.MALFORMED),
        ("é".encode() * 32, SignatureFailure.MALFORMED),
    ],
)
def test_missing_and_malformed_headers(header: bytes | None, failure: SignatureFailure) -> None:
    assert SignatureChecker(["amt-new-0000000"]).check(BODY, header) is failure


def test_the_first_amt_answers_challenges() -> None:
    checker = SignatureChecker(["amt-new-0000000", "amt-old-1111111"])
    assert checker.answer("abc-123") == hash_challenge("amt-new-0000000", "abc-123")


def test_no_amt_no_checker_and_no_amt_in_the_repr() -> None:
    with pytest.raises(ValueError, match="at least one"):
        SignatureChecker([])
    checker = SignatureChecker(["amt-new-0000000", "amt-old-1111111"])
    assert repr(checker) == "SignatureChecker(<2 key(s)>)"
    assert "amt-" not in repr(checker)
