"""`ReceiverSettings`: every knob of the webhook receiver, typed, with its default stated here.

Contract names are read as they are (`SMARTCAR_AMT`, `REDIS_URL`, `EVENT_KEY_PREFIX`), as are the shared
`EVENT_DEDUPE_SECONDS`, `LOG_FORMAT` and `LOG_LEVEL`; the receiver's own settings are read from
`RECEIVER_<FIELD NAME>` (for example `RECEIVER_MAX_BODY_BYTES=524288`).

`load_settings()` is what the app calls at start-up: a missing or empty `SMARTCAR_AMT`, or any invalid
value, stops the process there with a message naming the setting (and never echoing a secret).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.connection import parse_url

from eventstore.keys import DEFAULT_DEDUPE_SECONDS, DEFAULT_PREFIX

DEFAULT_MAX_BODY_BYTES = 256 * 1024
# The AMT is the HMAC key of every signature: one that short is a placeholder, not a token.
MIN_AMT_LENGTH = 8


class SettingsError(RuntimeError):
    """The configuration cannot work; the message says which setting and how to fix it."""


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name)


class ReceiverSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RECEIVER_", frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    # --- contract names (see ARCHITECTURE.md) ---
    smartcar_amt: SecretStr = Field(validation_alias=_alias("SMARTCAR_AMT"))
    """Application Management Token(s), comma-separated: the first answers VERIFY, all verify signatures
    (list the new one first and keep the old one while Smartcar rotates)."""
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_alias("REDIS_URL"))
    event_key_prefix: str = Field(DEFAULT_PREFIX, validation_alias=_alias("EVENT_KEY_PREFIX"))
    """Prefix of every event-store key; the workers read the same."""
    event_dedupe_seconds: int = Field(
        DEFAULT_DEDUPE_SECONDS, ge=7 * 24 * 3600, validation_alias=_alias("EVENT_DEDUPE_SECONDS")
    )
    """How long an accepted eventId is remembered (duplicates inside it are absorbed); at least 7 days."""

    # --- logging ---
    log_format: Literal["auto", "json", "console"] = Field("auto", validation_alias=_alias("LOG_FORMAT"))
    """`auto`: pretty when stderr is a terminal, JSON lines otherwise."""
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias=_alias("LOG_LEVEL")
    )

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

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parse_url(value)  # type: ignore[no-untyped-call] # - its ValueError says what is wrong, not the URL
        return value

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
    def redis_address(self) -> str:
        """Where `REDIS_URL` points (host:port/db, or socket path/db), for logs and messages: the URL
        itself may hold a password."""
        where = parse_url(self.redis_url)  # type: ignore[no-untyped-call] # - redis-py leaves it untyped
        place = where.get("path") or f"{where.get('host', 'localhost')}:{where.get('port', 6379)}"
        return f"{place}/{where.get('db', 0)}"

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
    try:
        settings = ReceiverSettings(**overrides)  # type: ignore[arg-type] # - pydantic validates the overrides
    except ValidationError as error:
        problems = []
        for item in error.errors(include_input=False, include_url=False):
            name = _env_name(str(item["loc"][0]) if item["loc"] else "?")
            if name == "SMARTCAR_AMT" and item["type"] == "missing":
                raise SettingsError(_MISSING_AMT) from None
            problems.append(f"{name}: {item['msg']}")
        raise SettingsError("invalid receiver settings: " + "; ".join(problems)) from None
    amts = settings.amts
    if not amts:
        raise SettingsError(_MISSING_AMT)
    if any(len(amt) < MIN_AMT_LENGTH for amt in amts):
        raise SettingsError(
            f"SMARTCAR_AMT: every token must be at least {MIN_AMT_LENGTH} characters (is a placeholder set?)"
        )
    return settings


_MISSING_AMT = (
    "SMARTCAR_AMT is not set: the receiver needs the Application Management Token (Smartcar Dashboard, "
    "your application's Configuration) to answer VERIFY and check SC-Signature. Set SMARTCAR_AMT=<token>, "
    "or SMARTCAR_AMT=<new>,<old> while rotating."
)


def _env_name(field: str) -> str:
    """The environment name of what pydantic reports: a contract field by its alias when it was read from
    the environment, by its name when it was passed by name."""
    info = ReceiverSettings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return field if field.isupper() else "RECEIVER_" + field.upper()
