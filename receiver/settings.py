"""`ReceiverSettings`: every knob of the webhook receiver, typed, with its default stated here.

The settings both services read (`REDIS_URL`, `EVENT_KEY_PREFIX`, `EVENT_DEDUPE_SECONDS`, `LOG_FORMAT`,
`LOG_LEVEL`) come from `service_base.settings.ServiceSettings`; `SMARTCAR_AMT` is read as it is, and the
receiver's own settings from `RECEIVER_<FIELD NAME>` (for example `RECEIVER_MAX_BODY_BYTES=524288`).

`load_settings()` is what the app calls at start-up: a missing or empty `SMARTCAR_AMT`, or any invalid
value, stops the process there with a message naming the setting (and never echoing a secret).

Smartcar Connect (`GET /connect`, `GET /callback`) is optional: it is on when `SMARTCAR_REDIRECT_URI` is
set, and then needs `SMARTCAR_CLIENT_ID`, `SMARTCAR_CLIENT_SECRET` and `TOKEN_ENCRYPTION_KEY` (the same
names the workers read). A webhook-only deployment sets none of them; one that sets only some is refused
at start-up, rather than failing on the first owner who tries to connect.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from eventstore.tokens_at_rest import key_problem
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
CALLBACK_SUFFIX = "/callback"
"""The redirect URI's path ends so: the receiver answers it at `/callback` (a proxy may add a prefix)."""
MAX_CONNECT_USER_LENGTH = 255


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

    # --- Smartcar Connect (GET /connect, GET /callback): on when SMARTCAR_REDIRECT_URI is set ---
    smartcar_client_id: str | None = Field(None, validation_alias=env("SMARTCAR_CLIENT_ID"))
    smartcar_client_secret: SecretStr | None = Field(None, validation_alias=env("SMARTCAR_CLIENT_SECRET"))
    smartcar_redirect_uri: str | None = Field(None, validation_alias=env("SMARTCAR_REDIRECT_URI"))
    """Where Connect sends the owner back: this receiver's public `.../callback`, exactly as registered in
    the Smartcar Dashboard. Unset, Connect is off (`/connect` and `/callback` answer 404)."""
    token_encryption_key: SecretStr | None = Field(None, validation_alias=env("TOKEN_ENCRYPTION_KEY"))
    """The workers' Fernet key(s): the callback seals the tokens it stores with the first."""
    connect_scopes: list[str] = Field(default_factory=list)
    """The permissions asked for (`["read_vehicle_info", "read_battery"]`); empty: the Dashboard's."""
    connect_mode: Literal["live", "test", "simulated"] = "live"
    connect_single_select: bool = False
    """Let the owner pick only one vehicle."""
    connect_make_bypass: str | None = None
    """Skip Connect's brand selection for this make (`TESLA`)."""
    connect_flags: dict[str, str | bool] = Field(default_factory=dict)
    """Smartcar feature flags for Connect (`{"country": "DE"}`)."""
    connect_force_prompt: bool = False
    """Show the permission screen even to an owner who approved the same scopes before."""
    connect_user: str | None = Field(None, max_length=MAX_CONNECT_USER_LENGTH)
    """Connect's `user` (your id of the owner, for Smartcar's analytics) when `/connect?user=` gives none."""
    connect_state_seconds: int = Field(600, ge=60, le=3600)
    """How long a Connect session may take, from `/connect` to `/callback`: the state's TTL in Redis and
    the browser cookie's Max-Age."""

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

    @field_validator(
        "smartcar_client_id", "smartcar_redirect_uri", "connect_make_bypass", "connect_user", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`NAME=` in an env file means unset, as for the secrets below."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("smartcar_client_secret", "token_encryption_key", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("connect_scopes")
    @classmethod
    def _scope_names(cls, value: list[str]) -> list[str]:
        if any(not scope or any(c.isspace() for c in scope) for scope in value):
            raise ValueError("each scope is one permission name, such as read_vehicle_info")
        return value

    @model_validator(mode="after")
    def _connect_complete(self) -> ReceiverSettings:
        if self.smartcar_redirect_uri is None:
            return self
        problem = connect_problem(
            self.smartcar_redirect_uri,
            production=self.smartcar_env == "production",
            unset=[
                name
                for name, value in (
                    ("SMARTCAR_CLIENT_ID", self.smartcar_client_id),
                    ("SMARTCAR_CLIENT_SECRET", self.smartcar_client_secret),
                    ("TOKEN_ENCRYPTION_KEY", self.token_encryption_key),
                )
                if value is None
            ],
        )
        if problem is None and self.token_encryption_key is not None:
            problem = key_problem(self.token_encryption_key.get_secret_value())
        if problem:
            raise ValueError(problem)
        return self

    @property
    def connect_enabled(self) -> bool:
        """Connect is on (and, the settings being valid, complete)."""
        return self.smartcar_redirect_uri is not None

    @property
    def connect_cookie_path(self) -> str:
        """The Connect cookie's `Path`: where the browser sees `/callback` and `/connect` (`/` unless a proxy
        adds a prefix), so that `/connect` finds the cookie it set and two tabs share one binding."""
        path = urlsplit(self.smartcar_redirect_uri or "").path or CALLBACK_SUFFIX
        return path.removesuffix(CALLBACK_SUFFIX) + "/"

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


def connect_problem(redirect_uri: str, *, production: bool, unset: list[str]) -> str | None:
    """Why Connect cannot work with these settings (None: it can). Never quotes a value."""
    if unset:
        return f"SMARTCAR_REDIRECT_URI turns Smartcar Connect on, which also needs {', '.join(unset)}"
    where = urlsplit(redirect_uri)
    if where.scheme not in ("http", "https") or not where.hostname:
        return "SMARTCAR_REDIRECT_URI must be an absolute http(s) URL, e.g. https://receiver.example/callback"
    if where.query or where.fragment:
        return "SMARTCAR_REDIRECT_URI must have no query or fragment (the state and the code come there)"
    if not where.path.endswith(CALLBACK_SUFFIX):
        return f"SMARTCAR_REDIRECT_URI's path must end with {CALLBACK_SUFFIX}: the receiver answers it there"
    if production and where.scheme != "https":
        return (
            "SMARTCAR_REDIRECT_URI must be https with SMARTCAR_ENV=production: the Connect cookie is Secure "
            "there, and a browser would not send it back over http"
        )
    return None


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
