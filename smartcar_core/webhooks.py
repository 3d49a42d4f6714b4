"""Webhook signatures: the VERIFY challenge answer and the `SC-Signature` check.

Both are HMAC-SHA256 keyed with the Application Management Token (AMT), as lowercase hex. Verify over
the raw request bytes: re-serialised JSON rarely matches what Smartcar signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any


def hash_challenge(amt: str, challenge: str) -> str:
    """The answer to a VERIFY event: hex HMAC-SHA256(AMT, challenge)."""
    return signature_of(amt, challenge.encode())


def signature_of(amt: str | bytes, body: bytes) -> str:
    key = amt.encode() if isinstance(amt, str) else amt
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_payload(amt: str, signature: str, body: bytes | str | Mapping[str, Any]) -> bool:
    """True when `signature` (the `SC-Signature` header) signs `body` with `amt`.

    Pass the raw bytes (or str) of the request. A dict is re-serialised compactly, as Node's
    `JSON.stringify` would: a best effort that fails for bodies Smartcar formatted differently.
    The comparison takes constant time.
    """
    if isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    expected = signature_of(amt, raw)
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def get_management_token(amt: str, username: str = "default") -> str:
    """The Basic credentials the Management API expects: base64("default:<AMT>")."""
    return base64.b64encode(f"{username}:{amt}".encode()).decode()
