"""Smartcar's two throttles: a per-vehicle limit (429 RATE_LIMIT:VEHICLE with Retry-After) and the
application's token bucket (429 RATE_LIMIT:SMARTCAR_API; Smartcar's default is 120 refilling 2 a minute).

Both are off until configured. Time comes from the simulator's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from smartcar_simulator.clock import SimClock
from smartcar_simulator.errors import ApiError


class PerVehicleLimit(BaseModel):
    """At most `limit` calls per vehicle per `window_seconds`; the 429 says `retry_after` (default: the
    rest of the window)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(ge=1)
    window_seconds: float = Field(gt=0)
    retry_after: float | None = Field(None, ge=0)


class AppBucket(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: int = Field(ge=1)
    refill_per_minute: float = Field(ge=0)


class RateLimitSettings(BaseModel):
    """The body of `PUT /_sim/rate-limits`; a missing or null member switches that limit off."""

    model_config = ConfigDict(extra="forbid")

    per_vehicle: PerVehicleLimit | None = None
    app: AppBucket | None = None


@dataclass(slots=True)
class RateLimiter:
    clock: SimClock
    config: RateLimitSettings = field(default_factory=RateLimitSettings)
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict)
    _tokens: float = 0.0
    _refilled_at: float = 0.0

    def configure(self, config: RateLimitSettings) -> None:
        self.config = config
        self._windows.clear()
        if config.app is not None:
            self._tokens = float(config.app.bucket)
            self._refilled_at = self.clock.now()

    def as_dict(self) -> dict[str, Any]:
        body = self.config.model_dump()
        if self.config.app is not None:
            body["app_tokens_left"] = round(self._refill(self.clock.now()), 3)
        return body

    def _refill(self, now: float) -> float:
        app = self.config.app
        if app is None:
            return 0.0
        self._tokens = min(app.bucket, self._tokens + (now - self._refilled_at) * app.refill_per_minute / 60)
        self._refilled_at = now
        return self._tokens

    def take_app(self) -> None:
        """Spend one token of the application's bucket, or raise RATE_LIMIT:SMARTCAR_API."""
        if self.config.app is None:
            return
        if self._refill(self.clock.now()) < 1:
            raise ApiError("RATE_LIMIT", "SMARTCAR_API")
        self._tokens -= 1

    def take_vehicle(self, vehicle_id: str) -> None:
        """Count one call to the vehicle, or raise RATE_LIMIT:VEHICLE with a Retry-After."""
        limit = self.config.per_vehicle
        if limit is None:
            return
        now = self.clock.now()
        started, count = self._windows.get(vehicle_id, (now, 0))
        if now - started >= limit.window_seconds:
            started, count = now, 0
        if count >= limit.limit:
            wait = (
                limit.retry_after if limit.retry_after is not None else started + limit.window_seconds - now
            )
            raise ApiError("RATE_LIMIT", "VEHICLE", retry_after=max(1.0, wait))
        self._windows[vehicle_id] = (started, count + 1)
