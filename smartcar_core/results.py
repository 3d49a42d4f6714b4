"""Typed results: frozen dataclasses with snake_case fields and a trailing `meta`.

Smartcar answers in camelCase; each result validates the JSON body through pydantic with a camelCase
alias per field, so `isPluggedIn` arrives as `is_plugged_in`. `meta` comes from the response headers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 header value as an aware UTC datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True)
class Meta:
    """What Smartcar says about the answer: `sc-data-age`, `sc-unit-system`, `sc-request-id`,
    `sc-fetched-at`. A field is None when its header is absent."""

    data_age: datetime | None = None
    unit_system: str | None = None
    request_id: str | None = None
    fetched_at: datetime | None = None

    @classmethod
    def from_headers(cls, headers: Any) -> Meta:
        return cls(
            data_age=parse_time(headers.get("sc-data-age")),
            unit_system=headers.get("sc-unit-system") or None,
            request_id=headers.get("sc-request-id") or None,
            fetched_at=parse_time(headers.get("sc-fetched-at")),
        )


EMPTY_META = Meta()


@dataclass(frozen=True, config=CAMEL)
class Paging:
    count: int
    offset: int


@dataclass(frozen=True, config=CAMEL)
class User:
    id: str
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Vehicles:
    vehicles: list[str]
    paging: Paging
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Vin:
    vin: str
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Charge:
    is_plugged_in: bool
    state: str
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Battery:
    percent_remaining: float
    range: float | None
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class BatteryCapacity:
    capacity: float
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class AvailableCapacity:
    capacity: float
    description: str | None = None


@dataclass(frozen=True, config=CAMEL)
class NominalCapacityValue:
    nominal: float
    source: str | None = None


@dataclass(frozen=True, config=CAMEL)
class NominalCapacity:
    available_capacities: list[AvailableCapacity]
    capacity: NominalCapacityValue | None
    url: str | None = None
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Fuel:
    range: float | None
    percent_remaining: float
    amount_remaining: float | None
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class TirePressure:
    front_left: float
    front_right: float
    back_left: float
    back_right: float
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class EngineOil:
    life_remaining: float
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Odometer:
    distance: float
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Location:
    latitude: float
    longitude: float
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Attributes:
    id: str
    make: str
    model: str
    year: int
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Permissions:
    permissions: list[str]
    paging: Paging | None = None
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class ClosureStatus:
    """One door, window, sunroof, storage or charging port: its position and OPEN/CLOSED (or UNKNOWN)."""

    type: str
    status: str


@dataclass(frozen=True, config=CAMEL)
class LockStatus:
    is_locked: bool
    doors: list[ClosureStatus] = Field(default_factory=list)
    windows: list[ClosureStatus] = Field(default_factory=list)
    sunroof: list[ClosureStatus] = Field(default_factory=list)
    storage: list[ClosureStatus] = Field(default_factory=list)
    charging_port: list[ClosureStatus] = Field(default_factory=list)
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class ActionResponse:
    """The answer to a command (lock, start_charge, set_charge_limit...)."""

    status: str
    message: str | None = None
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Status:
    """The answer to disconnect and unsubscribe; `status` is None when Smartcar sent no body."""

    status: str | None = None
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class WebhookSubscription:
    webhook_id: str
    vehicle_id: str
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class ChargeLimit:
    limit: float
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class DiagnosticSystem:
    system_id: str
    status: str
    description: str | None = None


@dataclass(frozen=True, config=CAMEL)
class DiagnosticSystemStatus:
    systems: list[DiagnosticSystem]
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class DiagnosticTroubleCode:
    code: str
    timestamp: str | None = None


@dataclass(frozen=True, config=CAMEL)
class DiagnosticTroubleCodes:
    active_codes: list[DiagnosticTroubleCode]
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class ServiceHistory:
    """Service records as Smartcar sends them (camelCase dicts: serviceId, serviceDate, serviceTasks...)."""

    items: list[dict[str, Any]]
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Capability:
    permission: str
    endpoint: str
    capable: bool
    reason: str | None = None


@dataclass(frozen=True, config=CAMEL)
class CompatibilityV1:
    compatible: bool
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class CompatibilityV2:
    compatible: bool
    reason: str | None = None
    capabilities: list[Capability] = Field(default_factory=list)
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class CompatibilityMatrixEntry:
    model: str
    start_year: int
    end_year: int
    type: str
    endpoints: list[str] = Field(default_factory=list)
    permissions: list[str] = Field(default_factory=list)


@dataclass(frozen=True, config=CAMEL)
class CompatibilityMatrix:
    """Entries by make (`matrix.makes["NISSAN"]`)."""

    makes: dict[str, list[CompatibilityMatrixEntry]]
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Connection:
    vehicle_id: str
    user_id: str
    connected_at: str | None = None


@dataclass(frozen=True, config=CAMEL)
class PagingCursor:
    cursor: str | None = None


@dataclass(frozen=True, config=CAMEL)
class GetConnections:
    connections: list[Connection]
    paging: PagingCursor = PagingCursor()
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class DeleteConnections:
    connections: list[Connection]
    meta: Meta = EMPTY_META


@dataclass(frozen=True, config=CAMEL)
class Response:
    """The answer to `Vehicle.request`: the body as parsed JSON (or text) and the header meta."""

    body: Any
    meta: Meta = EMPTY_META


@dataclass(frozen=True, repr=False)
class Access:
    """Tokens from Smartcar's OAuth endpoint. Expirations are aware UTC datetimes; `repr` hides tokens."""

    access_token: str
    refresh_token: str
    expiration: datetime
    refresh_expiration: datetime
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int = 7200

    def __repr__(self) -> str:
        return (
            f"Access(expiration={self.expiration.isoformat()}, "
            f"refresh_expiration={self.refresh_expiration.isoformat()})"
        )

    def expires_within(self, seconds: float, *, now: datetime | None = None) -> bool:
        """True when the access token is expired or will be within `seconds`."""
        now = now or datetime.now(UTC)
        return self.expiration - timedelta(seconds=seconds) <= now

    def is_expired(self, *, now: datetime | None = None) -> bool:
        return self.expires_within(0, now=now)

    def refresh_expired(self, *, now: datetime | None = None) -> bool:
        return self.refresh_expiration <= (now or datetime.now(UTC))
