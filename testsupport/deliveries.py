"""Signed-body material for tests: a delivery as Smartcar would send it, of its own event id.

Its own module, importing no worker or Celery code, so that the event store's tests use it as the
workers' do.
"""

from __future__ import annotations

import json

from smartcar_simulator import payloads


def delivery_body(vehicle: str, user: str, webhook: str, *, error_event: bool = False) -> bytes:
    """A VEHICLE_STATE (or, `error_event`, a VEHICLE_ERROR with PERMISSION) of `vehicle`, of its own id."""
    car = {"id": vehicle, "make": "TESLA", "model": "Model 3", "year": 2022, "user_id": user}
    if error_event:
        event = payloads.vehicle_error_event(
            car, [payloads.error_item("PERMISSION", None)], webhook_id=webhook
        )
    else:
        item = payloads.signal_item(
            "charge-ischarging",
            name="IsCharging",
            group="Charge",
            body={"value": True},
            oem_updated_at=payloads.now_ms(),
            retrieved_at=payloads.now_ms(),
        )
        event = payloads.vehicle_state_event(car, [item], webhook_id=webhook, triggers=["charge-ischarging"])
    return json.dumps(event).encode()
