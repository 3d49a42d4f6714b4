"""Smartcar token pairs at rest: the cipher made from `TOKEN_ENCRYPTION_KEY`, the pair's sealed form, the
grant a pair belongs to, and storing a new pair through `GrantStore.put`.

Two services write pairs: the receiver's Connect callback (a new grant) and the workers (`workers.tokens`:
`smartcar-events tokens put`, refreshes). Both must seal a pair the same way and name its grant the same
way, or one could not read what the other wrote, and a reconnect would make a second grant instead of
replacing the first. So it is done here, once; `GrantStore` itself never sees a token.

The key setting is one Fernet key or several, comma-separated: the first encrypts, all decrypt (rotation).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.fernet import Fernet, MultiFernet

from eventstore.grants import GrantStore

REFRESH_TOKEN_SECONDS = 60 * 86400
"""A refresh token's lifetime at Smartcar, for a pair stored without its refresh expiry."""

__all__ = [
    "REFRESH_TOKEN_SECONDS",
    "TokenKeyError",
    "TokenPair",
    "cipher_of",
    "grant_id_for",
    "key_problem",
    "seal",
    "store_pair",
    "unseal",
]


class TokenKeyError(ValueError):
    """`TOKEN_ENCRYPTION_KEY` cannot work; `position` (from 1) names the bad key, never its value."""

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str

    def __repr__(self) -> str:
        return "TokenPair(access_token=[hidden], refresh_token=[hidden])"


def _keys(setting: str) -> list[str]:
    return [key.strip() for key in setting.split(",") if key.strip()]


def key_problem(setting: str) -> str | None:
    """Why the setting's value cannot make a cipher (None: it can); the message never holds a key."""
    keys = _keys(setting)
    if not keys:
        return "TOKEN_ENCRYPTION_KEY is empty"
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return (
                f"TOKEN_ENCRYPTION_KEY key #{position} is not a Fernet key (32 url-safe base64 bytes); "
                "create one with `smartcar-events tokens new-key`"
            )
    return None


def cipher_of(setting: str) -> MultiFernet:
    """The cipher of `TOKEN_ENCRYPTION_KEY`'s value; `TokenKeyError` when it cannot work."""
    problem = key_problem(setting)
    if problem is not None:
        raise TokenKeyError(problem)
    return MultiFernet([Fernet(key) for key in _keys(setting)])


def seal(cipher: MultiFernet, access_token: str, refresh_token: str) -> str:
    """The pair as `GrantStore` keeps it (its `data`): JSON, encrypted with the first key."""
    plain = json.dumps({"access_token": access_token, "refresh_token": refresh_token}).encode()
    return cipher.encrypt(plain).decode()


def unseal(cipher: MultiFernet, data: bytes) -> TokenPair:
    """The pair `seal` made; `InvalidToken` when no key of the cipher opens it (the caller says whose)."""
    value = json.loads(cipher.decrypt(data))
    return TokenPair(str(value["access_token"]), str(value["refresh_token"]))


def grant_id_for(vehicle_ids: Sequence[str], user_id: str | None) -> str:
    """The grant of one token pair: its owner and the exact set of vehicles it covers.

    Reconnecting the same cars replaces their pair. A second Connect session of the same owner for other
    cars (single select) is a grant of its own: its token does not cover the first session's cars, so it
    must not replace theirs.
    """
    vehicles = hashlib.sha256(",".join(sorted(set(vehicle_ids))).encode()).hexdigest()[:16]
    return f"{user_id or 'no-user'}:{vehicles}"


def store_pair(
    grants: GrantStore,
    cipher: MultiFernet,
    *,
    vehicle_ids: Sequence[str],
    access_token: str,
    refresh_token: str,
    expires_at: float,
    refresh_expires_at: float | None,
    user_id: str | None,
    now: float,
) -> str:
    """Seal a pair and make it the grant of `vehicle_ids` (replacing the pair of the same grant); returns
    the grant id. `ValueError` for no vehicle, or an id with a comma (the store's separator)."""
    vehicles = list(dict.fromkeys(vehicle_ids))
    if not vehicles:
        raise ValueError("tokens belong to at least one vehicle")
    if any("," in vehicle for vehicle in vehicles):
        raise ValueError("a vehicle id cannot contain a comma")
    grant = grant_id_for(vehicles, user_id)
    if refresh_expires_at is None:
        refresh_expires_at = now + REFRESH_TOKEN_SECONDS
    grants.put(
        grant,
        data=seal(cipher, access_token, refresh_token),
        vehicles=vehicles,
        expires_at=expires_at,
        refresh_expires_at=refresh_expires_at,
        user_id=user_id,
        now=now,
    )
    return grant
