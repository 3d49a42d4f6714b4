"""Vehicle state as the workers read it: `vehicle_state` for tools, and the names handlers use.

The state itself (each signal's latest value, ordered by oemUpdatedAt; the vehicle's errors) is stored by
`eventstore.vehicles`, whose `SignalState`, `SignalUpdate` and `VehicleStateStore` are the ones named here.
"""

from __future__ import annotations

import redis

from eventstore.client import connect
from eventstore.vehicles import SignalState, SignalUpdate, VehicleStateStore

__all__ = ["SignalState", "SignalUpdate", "VehicleStateStore", "vehicle_state"]


def vehicle_state(vehicle_id: str, *, client: redis.Redis | None = None) -> dict[str, SignalState]:
    """The latest known signals of a vehicle, read with the process's settings."""
    from workers.settings import get_settings  # noqa: PLC0415 - settings are read only when called

    settings = get_settings()
    connection = client or connect(settings.redis_url)
    try:
        return VehicleStateStore(connection, prefix=settings.event_key_prefix).signals(vehicle_id)
    finally:
        if client is None:
            connection.close()
