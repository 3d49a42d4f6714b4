"""Tokens in memory: authorization codes, access tokens that expire, refresh tokens that rotate.

Each refresh returns a new access and refresh token; the refresh token used stays acceptable for a
grace period (Smartcar documents one minute in one place, ten in another) and is refused after it.
Tokens are random UUIDs, as Smartcar's are; nothing here ever logs one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from smartcar_simulator.clock import SimClock
from smartcar_simulator.errors import OAuthError

ALL_SCOPES: tuple[str, ...] = (
    "read_vehicle_info",
    "read_vin",
    "read_odometer",
    "read_location",
    "read_battery",
    "read_charge",
    "read_fuel",
    "read_tires",
    "read_engine_oil",
    "read_security",
    "read_service_history",
    "read_diagnostics",
    "control_security",
    "control_charge",
    "control_navigation",
)
SWEEP_EVERY = 1000


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token may do: one user's vehicles, with a set of permissions."""

    user_id: str
    vehicle_ids: tuple[str, ...]
    scope: frozenset[str]


@dataclass(slots=True)
class AccessToken:
    grant: Grant
    expires_at: float


@dataclass(slots=True)
class RefreshToken:
    grant: Grant
    expires_at: float
    rotated_at: float | None = None


@dataclass(slots=True)
class AuthCode:
    grant: Grant
    redirect_uri: str | None
    expires_at: float
    used: bool = False


def new_token() -> str:
    return str(uuid.uuid4())


class TokenStore:
    def __init__(
        self,
        clock: SimClock,
        *,
        access_ttl: float,
        refresh_ttl: float,
        refresh_grace: float,
        code_ttl: float,
    ) -> None:
        self.clock = clock
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.refresh_grace = refresh_grace
        self.code_ttl = code_ttl
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._codes: dict[str, AuthCode] = {}
        self._issued = 0

    def __repr__(self) -> str:
        return f"TokenStore(access={len(self._access)}, refresh={len(self._refresh)})"

    def issue(self, grant: Grant, *, expires_in: float | None = None) -> dict[str, Any]:
        """A new access + refresh pair, as the token endpoint's JSON answer."""
        now = self.clock.now()
        ttl = self.access_ttl if expires_in is None else expires_in
        access, refresh = new_token(), new_token()
        self._access[access] = AccessToken(grant, now + ttl)
        self._refresh[refresh] = RefreshToken(grant, now + self.refresh_ttl)
        self._issued += 1
        if self._issued % SWEEP_EVERY == 0:
            self.sweep()
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": round(ttl),
            "refresh_token": refresh,
        }

    def access(self, token: str) -> Grant | None:
        """The grant of a live access token; None for unknown or expired ones."""
        record = self._access.get(token)
        if record is None or record.expires_at <= self.clock.now():
            return None
        return record.grant

    def new_code(self, grant: Grant, redirect_uri: str | None) -> str:
        code = new_token()
        self._codes[code] = AuthCode(grant, redirect_uri, self.clock.now() + self.code_ttl)
        return code

    def exchange_code(self, code: str, redirect_uri: str | None) -> tuple[Grant, dict[str, Any]]:
        record = self._codes.get(code)
        if record is None or record.used or record.expires_at <= self.clock.now():
            raise OAuthError("invalid_grant", "Invalid or expired authorization code.")
        if record.redirect_uri and redirect_uri and redirect_uri != record.redirect_uri:
            raise OAuthError("invalid_grant", f"Unauthorized redirect_uri: {redirect_uri}")
        record.used = True
        return record.grant, self.issue(record.grant)

    def refresh(self, token: str) -> dict[str, Any]:
        """Rotate: a new pair; the old refresh token lives on for `refresh_grace` seconds."""
        now = self.clock.now()
        record = self._refresh.get(token)
        if record is None or record.expires_at <= now:
            raise OAuthError("invalid_grant", "Invalid or expired refresh token.")
        if record.rotated_at is not None and now - record.rotated_at > self.refresh_grace:
            raise OAuthError("invalid_grant", "The refresh token was already used.")
        if record.rotated_at is None:
            record.rotated_at = now
        return self.issue(record.grant)

    def sweep(self) -> None:
        """Drop expired tokens and codes, so a long benchmark does not grow memory without bound."""
        now = self.clock.now()
        self._access = {key: value for key, value in self._access.items() if value.expires_at > now}
        self._refresh = {
            key: value
            for key, value in self._refresh.items()
            if value.expires_at > now
            and (value.rotated_at is None or now - value.rotated_at <= self.refresh_grace)
        }
        self._codes = {key: value for key, value in self._codes.items() if value.expires_at > now}

    def clear(self) -> None:
        self._access.clear()
        self._refresh.clear()
        self._codes.clear()
