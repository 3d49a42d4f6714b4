"""The vehicle registry: what we know of each vehicle beyond its tokens and signals, so that an operator
(and the reconciliation) can tell a subscribed car from one that is only connected, one whose owner must
consent again, and one Smartcar no longer lists.

- `{p}fleet`: sorted set, member = vehicle id, score = when we first knew of it (listing order);
- `{p}fleet:{vehicle}`: hash `status` (`VehicleStatus`), `user_id`, `webhook_id`, `known_since`,
  `subscribed_at`, `unsubscribed_at` (an operator unsubscribed it: the reconciliation leaves it so),
  `disconnected_at` (Smartcar's disconnect done: a step of a disconnect job),
  `updated_at`, `reason` (why the status is what it is), `last_error`, `last_error_at`, `failed_action`,
  `reconsent_url` (the Connect URL that asks its owner to consent again, while it needs that);
- `{p}fleet-reconcile`: hash, the last reconciliation's report (counts and when).

Only the lifecycle jobs and the reconciliation write here, never the event path: a vehicle's last event
is read from its signals and errors when shown (`VehicleStateStore.last_events`), so processing an event
costs no extra write. Errors are stored as the caller gives them (the caller keeps secrets out).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from eventstore.codec import text_map, texts
from eventstore.keys import KeySpace

ERROR_LENGTH = 500
"""The longest error kept (Smartcar's descriptions can be long; the start says what it was)."""


class VehicleStatus(StrEnum):
    CONNECTED = "connected"
    """We hold tokens (or Smartcar lists a connection) but no subscription of ours."""
    SUBSCRIBED = "subscribed"
    """Subscribed to our webhook (`webhook_id`) at `subscribed_at`."""
    NEEDS_RECONSENT = "needs_reconsent"
    """Smartcar refused the grant (refresh or permission): only the owner reconnecting fixes it."""
    REVOKED = "revoked"
    """Disconnected, or no longer listed by Smartcar: tokens and state forgotten."""


@dataclass(frozen=True, slots=True)
class FleetVehicle:
    vehicle_id: str
    status: VehicleStatus
    user_id: str | None
    webhook_id: str | None
    known_since: float
    subscribed_at: float | None
    unsubscribed_at: float | None
    disconnected_at: float | None
    updated_at: float
    reason: str
    last_error: str | None
    last_error_at: float | None
    failed_action: str | None
    reconsent_url: str | None = None


def _time(fields: Mapping[str, str], name: str) -> float | None:
    value = fields.get(name)
    return float(value) if value else None


def _vehicle(vehicle_id: str, fields: Mapping[str, str]) -> FleetVehicle:
    return FleetVehicle(
        vehicle_id=vehicle_id,
        status=VehicleStatus(fields.get("status") or VehicleStatus.CONNECTED),
        user_id=fields.get("user_id") or None,
        webhook_id=fields.get("webhook_id") or None,
        known_since=_time(fields, "known_since") or 0.0,
        subscribed_at=_time(fields, "subscribed_at"),
        unsubscribed_at=_time(fields, "unsubscribed_at"),
        disconnected_at=_time(fields, "disconnected_at"),
        updated_at=_time(fields, "updated_at") or 0.0,
        reason=fields.get("reason", ""),
        last_error=fields.get("last_error") or None,
        last_error_at=_time(fields, "last_error_at"),
        failed_action=fields.get("failed_action") or None,
        reconsent_url=fields.get("reconsent_url") or None,
    )


class FleetStore:
    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.redis = client
        self.keys = keys

    def get(self, vehicle_id: str) -> FleetVehicle | None:
        fields = text_map(self.redis.hgetall(self.keys.fleet_vehicle(vehicle_id)))
        return _vehicle(vehicle_id, fields) if fields else None

    def many(self, vehicle_ids: Sequence[str]) -> dict[str, FleetVehicle]:
        """The registered ones of `vehicle_ids`, in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for vehicle_id in vehicle_ids:
                pipe.hgetall(self.keys.fleet_vehicle(vehicle_id))
            found = pipe.execute()
        return {
            vehicle_id: _vehicle(vehicle_id, text_map(raw))
            for vehicle_id, raw in zip(vehicle_ids, found, strict=True)
            if raw
        }

    def vehicles(self) -> list[str]:
        """Every registered vehicle, the first known first."""
        return texts(self.redis.zrange(self.keys.fleet, 0, -1))

    def _write(
        self,
        vehicle_id: str,
        fields: Mapping[str, Any],
        *,
        drop: Iterable[str] = (),
        now: float | None,
        status: VehicleStatus | None,
    ) -> None:
        now = time.time() if now is None else now
        key = self.keys.fleet_vehicle(vehicle_id)
        values: dict[Any, Any] = {name: value for name, value in fields.items() if value is not None}
        values["updated_at"] = repr(now)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.keys.fleet, {vehicle_id: now}, nx=True)
            pipe.hsetnx(key, "known_since", repr(now))
            if status is None:
                pipe.hsetnx(key, "status", VehicleStatus.CONNECTED.value)
            else:
                values["status"] = status.value
            pipe.hset(key, mapping=values)
            dropped = list(drop)
            if dropped:
                pipe.hdel(key, *dropped)
            pipe.execute()

    def connected(
        self,
        vehicle_id: str,
        *,
        user_id: str | None,
        reason: str,
        unsubscribed: bool = False,
        now: float | None = None,
    ) -> None:
        """Known, holding tokens, not subscribed: a new vehicle, or one `unsubscribed` on purpose (which
        the reconciliation then does not subscribe again)."""
        now = time.time() if now is None else now
        self._write(
            vehicle_id,
            {"user_id": user_id, "reason": reason, "unsubscribed_at": repr(now) if unsubscribed else None},
            drop=(
                "subscribed_at",
                "webhook_id",
                "disconnected_at",
                "reconsent_url",
                *(() if unsubscribed else ("unsubscribed_at",)),
            ),
            now=now,
            status=VehicleStatus.CONNECTED,
        )

    def subscribed(
        self, vehicle_id: str, *, webhook_id: str, user_id: str | None, now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        self._write(
            vehicle_id,
            {
                "webhook_id": webhook_id,
                "user_id": user_id,
                "subscribed_at": repr(now),
                "reason": "subscribed",
            },
            drop=(
                "last_error",
                "last_error_at",
                "failed_action",
                "disconnected_at",
                "unsubscribed_at",
                "reconsent_url",
            ),
            now=now,
            status=VehicleStatus.SUBSCRIBED,
        )

    def needs_reconsent(
        self, vehicle_id: str, *, reason: str, url: str | None = None, now: float | None = None
    ) -> None:
        """Its owner must consent again; `url` is the Connect URL that asks them (when one could be made)."""
        fields = {"reason": reason, "reconsent_url": url}
        self._write(vehicle_id, fields, now=now, status=VehicleStatus.NEEDS_RECONSENT)

    def revoked(
        self, vehicle_id: str, *, reason: str, url: str | None = None, now: float | None = None
    ) -> None:
        """Access revoked (its events wait for the grace period, `url` asks the owner to connect again),
        or tokens and state forgotten (no `url`); the record stays so that an operator sees what became of
        it."""
        self._write(
            vehicle_id,
            {"reason": reason, "reconsent_url": url},
            drop=("subscribed_at", "webhook_id", *(() if url else ("reconsent_url",))),
            now=now,
            status=VehicleStatus.REVOKED,
        )

    def disconnected(self, vehicle_id: str, *, now: float | None = None) -> None:
        """Smartcar's disconnect is done (a retried disconnect job does not send it again)."""
        now = time.time() if now is None else now
        self._write(vehicle_id, {"disconnected_at": repr(now)}, now=now, status=None)

    def failed(self, vehicle_id: str, *, action: str, error: str, now: float | None = None) -> None:
        """A lifecycle job gave up: keep why (the status is left as it was)."""
        now = time.time() if now is None else now
        self._write(
            vehicle_id,
            {"last_error": error[:ERROR_LENGTH], "last_error_at": repr(now), "failed_action": action},
            now=now,
            status=None,
        )

    def save_report(self, report: Mapping[str, float | int | str]) -> None:
        """The last reconciliation's report replaces the one before."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.fleet_reconcile)
            pipe.hset(self.keys.fleet_reconcile, mapping={name: str(value) for name, value in report.items()})
            pipe.execute()

    def report(self) -> dict[str, str]:
        return text_map(self.redis.hgetall(self.keys.fleet_reconcile))
