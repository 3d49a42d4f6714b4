"""`ReceiverSettings`: every knob of the webhook receiver, typed, with its default stated here.

The settings both services read (`REDIS_URL`, `EVENT_KEY_PREFIX`, `EVENT_DEDUPE_SECONDS`, `LOG_FORMAT`,
`LOG_LEVEL`) come from `service_base.settings.ServiceSettings`; `SMARTCAR_AMT` is read as it is, and the
receiver's own settings from `RECEIVER_<FIELD NAME>` (for example `RECEIVER_MAX_BODY_BYTES=524288`).

`load_settings()` is what the app calls at start-up: a missing or empty `SMARTCAR_AMT`, or any invalid
value, stops the process there with a message naming the setting (and never echoing a secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from service_base.settings import ServiceSettings, SettingsError, env

__all__ = ["ReceiverSettings", "SettingsError", "load_settings"]

DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
# The AMT is the HMAC key of every signature: one that short is a placeholder, not a token.
MIN_AMT_LENGTH = 8
_MISSING_AMT = (
    "SMARTCAR_AMT is not set: the receiver needs the Application Management Token (Smartcar Dashboard, "
    "your application's Configuration) to answer VERIFY and check SC-Signature. Set SMARTCAR_AMT=<token>, "
    "or SMARTCAR_AMT=<new>,<old> while rotating."
)


class ReceiverSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RECEIVER_")
    service: ClassVar[str] = "receiver"
    missing: ClassVar[Mapping[str, str]] = {"SMARTCAR_AMT": _MISSING_AMT}

    smartcar_amt: SecretStr = Field(validation_alias=env("SMARTCAR_AMT"))
    """Application Management Token(s), comma-separated: the first answers VERIFY, all verify signatures
    (list the new one first and keep the old one while Smartcar rotates)."""

    # --- the receiver's own (RECEIVER_*) ---
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024)
    """Largest body accepted (Smartcar's own maximum is 50 KB); larger ones get 413 before being read."""
    max_delivery_age_seconds: int | None = Field(None, ge=60)
    """Refuse deliveries whose signed `meta.deliveredAt` is older than this: a captured body replayed after
    its eventId left the dedupe window. Default: the dedupe window less a day."""
    verify_require_armed: bool = False
    """Answer VERIFY only while an operator has armed it (`python -m receiver arm-verify`, or
    `RECEIVER_VERIFY_WINDOW_UNTIL`). Off by default: the challenge-shape check already closes the oracle."""
    verify_window_until: datetime | None = None
    """A fixed VERIFY window (ISO-8601, timezone-aware), an alternative to arming through Redis."""
    verify_max_challenge_length: int = Field(128, ge=16, le=1024)
    verify_unsigned_per_minute: int = Field(60, ge=1)
    """Unsigned requests that may be a VERIFY (their body names it) handled per minute by each process, in
    bursts of up to as many; beyond, 429 with Retry-After. Smartcar sends a VERIFY when a webhook is created,
    its URL changed or "Verify this webhook" clicked: a few an hour. Signed deliveries are never limited."""

    # --- the public port (receiver.http, the protocol uvicorn runs with --http receiver.http:...) ---
    max_header_bytes: int = Field(DEFAULT_MAX_HEADER_BYTES, ge=1024, le=1024 * 1024)
    """Largest request head (request line and headers) read; past it, 431 and the connection closed.
    Smartcar's heads are under 1 KiB, a load balancer adds a few hundred bytes."""
    max_headers: int = Field(100, ge=16, le=1000)
    """Most header fields in one request; past it, 431 and the connection closed."""
    header_timeout: float = Field(10.0, gt=0, le=120)
    """Seconds from a request's first byte until its headers are complete; then the connection is
    closed (408 when nothing else is being answered on it). What closes drip-fed (slowloris) heads."""
    body_timeout: float = Field(30.0, gt=0, le=300)
    """Seconds from the end of the headers until the body is complete; then the connection is closed
    (the delivery was not acknowledged: Smartcar retries it)."""

    gc_freeze: bool = True
    """Move everything alive after start-up out of the garbage collector's scans (`gc.freeze`): full
    collections over the imported modules otherwise show up as p99 spikes."""

    redis_max_connections: int = Field(64, ge=1)
    """Connections per process; requests beyond wait for one (up to `redis_timeout`)."""
    redis_timeout: float = Field(2.0, gt=0, le=5)
    """Seconds for connecting, for one reply, and for waiting for a pooled connection."""
    redis_retries: int = Field(1, ge=0, le=3)
    """Retries of the store round trip after a connection error (safe: the script deduplicates). The worst
    case, (retries + 1) x 2 x redis_timeout, stays far below Smartcar's 15 s."""

    @field_validator("verify_window_until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a timezone, e.g. 2025-01-31T12:00:00Z")
        return value

    @property
    def amts(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.smartcar_amt.get_secret_value().split(",") if part.strip())

    @property
    def delivery_age_limit(self) -> int:
        if self.max_delivery_age_seconds is not None:
            return self.max_delivery_age_seconds
        return self.event_dedupe_seconds - 24 * 3600

    def verify_window_open(self, now: datetime | None = None) -> bool:
        if self.verify_window_until is None:
            return False
        return (now or datetime.now(UTC)) < self.verify_window_until


def load_settings(**overrides: object) -> ReceiverSettings:
    """Read the environment (plus `overrides`), or raise `SettingsError` saying what to fix."""
    settings = ReceiverSettings.load(**overrides)
    amts = settings.amts
    if not amts:
        raise SettingsError(_MISSING_AMT)
    if any(len(amt) < MIN_AMT_LENGTH for amt in amts):
        raise SettingsError(
            f"SMARTCAR_AMT: every token must be at least {MIN_AMT_LENGTH} characters (is a placeholder set?)"
        )
    return settings
