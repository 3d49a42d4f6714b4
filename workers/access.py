"""A vehicle whose access was lost: marked in the registry with a re-consent URL, its events held, and
forgotten after a grace period.

Access is lost three ways, and each needs the owner, not a retry:

- Smartcar refused the grant's refresh token (`invalid_grant`): every vehicle of the grant
  `needs_reconsent` (`workers.tokens` already held them and stopped refreshing the grant);
- AUTHENTICATION right after a good refresh: the owner (or Smartcar) revoked our access: `revoked`;
- PERMISSION on a call: the grant lacks a permission the call needs: `needs_reconsent`.

The vehicle is held (`eventstore.held`): its events wait, parked, and no call is made for it, until a new
pair is stored for it (the Connect callback or `smartcar-events tokens put`), which releases them. The
registry keeps the URL that asks the owner to consent again (`reconsent_url`): the receiver's `/connect`
with a forced prompt and single select, on the vehicle's VIN when one is known (the
`vehicleidentification-vin` signal its webhooks delivered). After `WORKERS_REVOKED_GRACE` without a reconnect,
beat's lifecycle drain asks for a `forget` job (`workers.lifecycle`): unsubscribed and forgotten, and its
held events then end as dead letters (no tokens).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from eventstore.fleet import FleetStore, VehicleStatus
from eventstore.lifecycle import LifecycleAction, LifecycleStore
from service_base.logs import get_logger
from smartcar_core.errors import SmartcarError

if TYPE_CHECKING:
    from workers.runtime import Runtime

log = get_logger("workers.access")

VIN_SIGNAL = "vehicleidentification-vin"
"""The signal whose value is the vehicle's VIN (Smartcar's VehicleIdentification attributes)."""
_LOST_TYPES = frozenset({"AUTHENTICATION", "PERMISSION"})


def access_lost(error: BaseException) -> VehicleStatus | None:
    """The registry status a Smartcar error on a vehicle call means, when it means access was lost: the
    gateway refreshed once already on AUTHENTICATION, so a second one is a revocation (None: not lost)."""
    if not isinstance(error, SmartcarError) or error.type not in _LOST_TYPES:
        return None
    return VehicleStatus.REVOKED if error.type == "AUTHENTICATION" else VehicleStatus.NEEDS_RECONSENT


class AccessLoss:
    """Marks vehicles whose access was lost (registry, holds, a log line) and finds those past grace."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.fleet = FleetStore(runtime.redis, runtime.keys)
        self.held = runtime.tokens.held

    def __repr__(self) -> str:
        return f"AccessLoss(prefix={self.runtime.keys.prefix!r})"

    def vin(self, vehicle_id: str) -> str | None:
        """The vehicle's VIN, when one of its webhooks delivered it (no call: its access is lost)."""
        signal = self.runtime.vehicles.signals(vehicle_id).get(VIN_SIGNAL)
        value = signal.value if signal is not None else None
        return value if isinstance(value, str) and value else None

    def reconsent_url(self, vehicle_id: str) -> str | None:
        """The receiver's `/connect` that asks the owner to consent again (`?reconsent=1`: a forced prompt,
        single select, on the vehicle's VIN when one is known); None without SMARTCAR_REDIRECT_URI.

        Not Smartcar's Connect URL itself: the receiver's callback finishes only sessions its own
        `/connect` started (their state is bound to the browser), so that is where the owner must begin."""
        redirect = self.settings.smartcar_redirect_uri
        if not redirect:
            return None
        base = redirect.rstrip("/").rsplit("/", 1)[0]  # the receiver's root: .../callback -> ...
        query = {"reconsent": "1"}
        vin = self.vin(vehicle_id)
        if vin:
            query["vin"] = vin
        return f"{base}/connect?{urlencode(query)}"

    def lost(self, vehicle_ids: Sequence[str], *, status: VehicleStatus, reason: str) -> None:
        """Hold the vehicles (no call for them; their events wait) and say so in the registry and the log."""
        self.held.mark(vehicle_ids)
        self.runtime.tokens.forget_cached(vehicle_ids)
        for vehicle_id in vehicle_ids:
            url = self.reconsent_url(vehicle_id)
            if status is VehicleStatus.REVOKED:
                self.fleet.revoked(vehicle_id, reason=reason, url=url)
            else:
                self.fleet.needs_reconsent(vehicle_id, reason=reason, url=url)
            log.warning(
                "vehicle_access_lost",
                vehicle_id=vehicle_id,
                status=status.value,
                reason=reason,
                reconsent_url=url,
                grace_seconds=self.settings.revoked_grace,
            )

    def expire(self, *, now: float | None = None, limit: int = 100) -> list[str]:
        """Ask for a `forget` job for each vehicle held longer than WORKERS_REVOKED_GRACE (one job per
        vehicle however often it is asked: the lifecycle queue keeps one)."""
        now = time.time() if now is None else now
        expired = self.held.expired(now - self.settings.revoked_grace, limit=limit)
        jobs = LifecycleStore(self.runtime.redis, self.runtime.keys)
        for vehicle_id in expired:
            if jobs.get(LifecycleAction.FORGET.value, vehicle_id) is None:
                jobs.request(LifecycleAction.FORGET, vehicle_id, reason="access lost past its grace period")
        return expired
