"""The receiver's Connect states: what makes `GET /callback` answer only the browser that started the flow.

`GET /connect` issues a random state, stored as `{p}connect-state:{state}` with a TTL, and bound to the
browser by a cookie: the record holds the SHA-256 of the cookie's value, never the value. `GET /callback`
consumes the state with GETDEL before anything else, so a state works once whatever happens next (a
replay finds nothing), then compares the hashes in constant time. An attacker who sends a victim their
own callback URL (login CSRF) fails: the victim's browser holds another cookie.

Consuming first also means that a request with the right state but the wrong cookie spends the state:
the owner of the state must start again. That costs a click; checking the cookie first and deleting after
would leave a window in which the same state is accepted twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis as AsyncRedis

from eventstore.codec import text
from eventstore.keys import KeySpace

STATE_BYTES = 32
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
"""What `secrets.token_urlsafe(32)` gives, the shape of both a state and a browser binding."""


class StateRefusal(StrEnum):
    """Why a callback's state is refused (each a 400 page, nothing exchanged)."""

    MISSING = "missing"
    UNKNOWN = "unknown"
    """Never issued, already used, or past its TTL: Redis cannot tell these apart, and need not."""
    EXPIRED = "expired"
    """Still stored but older than its life (a TTL that a clock or an operator stretched)."""
    OTHER_BROWSER = "other_browser"


class ConnectStateError(Exception):
    """The callback's state cannot be accepted; `reason` says why (never the state itself)."""

    def __init__(self, reason: StateRefusal) -> None:
        super().__init__(f"the Connect state was refused: {reason.value}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ConnectState:
    """One issued state's record."""

    binding_hash: str
    created_at: float


def new_token() -> str:
    """A fresh state or browser binding: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(STATE_BYTES)


def binding_hash(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


class ConnectStates:
    """Issue and consume states on the receiver's async client; each lives `seconds`."""

    def __init__(self, client: AsyncRedis, keys: KeySpace, *, seconds: int) -> None:
        self.redis = client
        self.keys = keys
        self.seconds = seconds

    async def issue(self, binding: str, *, now: float | None = None) -> str:
        """A new state bound to the browser holding `binding`. Raises RedisError/OSError (the caller's)."""
        state = new_token()
        record = {"binding": binding_hash(binding), "created_at": time.time() if now is None else now}
        await self.redis.set(self.keys.connect_state(state), json.dumps(record), ex=self.seconds, nx=True)
        return state

    async def consume(
        self, state: str | None, binding: str | None, *, now: float | None = None
    ) -> ConnectState:
        """The state's record, deleted; `ConnectStateError` unless it was issued to this browser within
        its life. A malformed state or binding never reaches Redis."""
        if not state:
            raise ConnectStateError(StateRefusal.MISSING)
        if not TOKEN_PATTERN.fullmatch(state):
            raise ConnectStateError(StateRefusal.UNKNOWN)
        raw = await self.redis.getdel(self.keys.connect_state(state))
        if raw is None:
            raise ConnectStateError(StateRefusal.UNKNOWN)
        record = _record(text(raw))
        if record is None:
            raise ConnectStateError(StateRefusal.UNKNOWN)
        if (time.time() if now is None else now) - record.created_at > self.seconds:
            raise ConnectStateError(StateRefusal.EXPIRED)
        offered = binding_hash(binding) if binding and TOKEN_PATTERN.fullmatch(binding) else ""
        if not hmac.compare_digest(offered.encode(), record.binding_hash.encode()):
            raise ConnectStateError(StateRefusal.OTHER_BROWSER)
        return record


def _record(raw: str) -> ConnectState | None:
    """The stored record; None for anything else found under the key (never trusted as a pass)."""
    try:
        value = json.loads(raw)
        return ConnectState(str(value["binding"]), float(value["created_at"]))
    except (ValueError, KeyError, TypeError):
        return None
