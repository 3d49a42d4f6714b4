"""`vehicle_state`: what the workers know about a vehicle, read with the workers' settings (for tools).

The state itself (each signal's latest value, ordered by oemUpdatedAt; the vehicle's errors) is stored by
`eventstore.vehicles`.
"""

from __future__ import annotations

import redis

from eventstore.client import connect
from eventstore.keys import KeySpace
from eventstore.vehicles import SignalState, VehicleStateStore
from workers.settings import WorkerSettings


def vehicle_state(
    settings: WorkerSettings, vehicle_id: str, *, client: redis.Redis | None = None
) -> dict[str, SignalState]:
    """The latest known signals of a vehicle, read with `settings` (on `client`, or a client of its own)."""
    connection = client or connect(settings.redis_url)
    try:
        return VehicleStateStore(connection, KeySpace(settings.event_key_prefix)).signals(vehicle_id)
    finally:
        if client is None:
            connection.close()
