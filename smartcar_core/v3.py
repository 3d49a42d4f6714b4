"""Results of the v3 Vehicle API (JSON:API bodies): kept whole, headers beside them, signals typed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from smartcar_core.events import epoch_millis
from smartcar_core.protocol import object_body


def epoch_to_datetime(value: Any) -> datetime | None:
    """A v3 or webhook timestamp (epoch seconds or milliseconds) as aware UTC; 0 and junk mean unknown."""
    millis = epoch_millis(value)
    if millis is None:
        return None
    try:
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal. `status` is SUCCESS or ERROR; `error` holds `{type, code}` when it failed."""

    code: str
    name: str | None
    group: str | None
    status: str | None
    body: dict[str, Any] | None
    retrieved_at: datetime | None
    oem_updated_at: datetime | None
    error: dict[str, Any] | None = None

    @property
    def value(self) -> Any:
        """`body["value"]` when the body has one (most signals), else the whole body."""
        if self.body is not None and "value" in self.body:
            return self.body["value"]
        return self.body

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> Signal:
        attributes = resource.get("attributes") or {}
        status = attributes.get("status") or {}
        meta = resource.get("meta") or {}
        return cls(
            code=str(attributes.get("code") or resource.get("id") or ""),
            name=attributes.get("name"),
            group=attributes.get("group"),
            status=status.get("value") if isinstance(status, dict) else None,
            body=attributes.get("body"),
            retrieved_at=epoch_to_datetime(meta.get("retrievedAt")),
            oem_updated_at=epoch_to_datetime(meta.get("oemUpdatedAt")),
            error=status.get("error") if isinstance(status, dict) else None,
        )


@dataclass(frozen=True, slots=True)
class VehicleResponse:
    """`get_vehicle`: the JSON:API body as sent (`body["attributes"]["make"]`) and the headers."""

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SignalsResponse:
    """`get_signals`: the body as sent (its `meta` and `links` too), the headers, and typed signals."""

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def signals(self) -> list[Signal]:
        """The signals of `data` (none when `data` is not a list); items that are not objects are skipped."""
        items = self.body.get("data")
        if not isinstance(items, list):
            return []
        return [Signal.from_resource(item) for item in items if isinstance(item, dict)]


@dataclass(frozen=True, slots=True)
class SignalResponse:
    """`get_signal`: the body as sent, the headers, and the typed signal."""

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def signal(self) -> Signal:
        """The body as one signal resource (Smartcar's shape), or its `data` object (JSON:API's usual one)."""
        data = self.body.get("data")
        return Signal.from_resource(data if isinstance(data, dict) else self.body)


def _headers(response: httpx.Response) -> dict[str, str]:
    return {key.lower(): value for key, value in response.headers.items()}


def parse_vehicle(response: httpx.Response) -> VehicleResponse:
    return VehicleResponse(object_body(response, "VehicleResponse"), _headers(response))


def parse_signals(response: httpx.Response) -> SignalsResponse:
    return SignalsResponse(object_body(response, "SignalsResponse"), _headers(response))


def parse_signal(response: httpx.Response) -> SignalResponse:
    return SignalResponse(object_body(response, "SignalResponse"), _headers(response))
