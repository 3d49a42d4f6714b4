"""The `SC-Signature` check and the VERIFY answer, keyed with the Application Management Token(s).

Signatures are hex HMAC-SHA256 over the raw body, compared in constant time against each AMT of the
rotation list. The AMTs live only inside `SignatureChecker`; its repr says how many there are, nothing more.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from enum import StrEnum

from smartcar_core.webhooks import hash_challenge

_HEX_SIGNATURE = re.compile(rb"[0-9a-f]{64}")
# Smartcar's challenges are UUID-like tokens. Anything else (above all a JSON document, which needs `{`)
# is refused: answering it would sign an attacker's body with our AMT.
_CHALLENGE = re.compile(r"[A-Za-z0-9-]+")


class SignatureFailure(StrEnum):
    MISSING = "missing"
    MALFORMED = "malformed"
    MISMATCH = "mismatch"


class SignatureChecker:
    __slots__ = ("_answer_key", "_keys", "max_challenge_length")

    def __init__(self, amts: Sequence[str], *, max_challenge_length: int = 128) -> None:
        if not amts:
            raise ValueError("at least one Application Management Token is needed")
        self._keys = tuple(amt.encode() for amt in amts)
        self._answer_key = amts[0]
        self.max_challenge_length = max_challenge_length

    def __repr__(self) -> str:
        return f"SignatureChecker(<{len(self._keys)} key(s)>)"

    def check(self, body: bytes, header: bytes | None) -> SignatureFailure | None:
        """None when `header` (the raw `SC-Signature` value) signs `body` with one of the AMTs."""
        if header is None:
            return SignatureFailure.MISSING
        given = header.strip().lower()
        if not given:
            return SignatureFailure.MISSING
        if _HEX_SIGNATURE.fullmatch(given) is None:
            return SignatureFailure.MALFORMED
        matched = False
        for key in self._keys:
            # Every key is tried, so that the time taken does not say which one matched.
            matched |= hmac.compare_digest(hmac.digest(key, body, "sha256").hex().encode(), given)
        return None if matched else SignatureFailure.MISMATCH

    def challenge_acceptable(self, challenge: str) -> bool:
        return len(challenge) <= self.max_challenge_length and _CHALLENGE.fullmatch(challenge) is not None

    def answer(self, challenge: str) -> str:
        """hex HMAC-SHA256(current AMT, challenge): the body of the VERIFY reply."""
        return hash_challenge(self._answer_key, challenge)
