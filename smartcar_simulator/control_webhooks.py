"""Control endpoints for webhooks: where a webhook delivers, emit one event, bursts, delivery attempts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.routing import Route

from smartcar_simulator import payloads
from smartcar_simulator.control import ControlError, control, read_model, vehicle_or_404
from smartcar_simulator.emitter import event_id_of
from smartcar_simulator.fleet import Vehicle
from smartcar_simulator.state import Simulator
from smartcar_simulator.webhooks import Webhook, WebhookHub

EventType = Literal[
    "VERIFY",
    "VEHICLE_STATE",
    "VEHICLE_ERROR",
    "LEGACY_VERIFY",
    "LEGACY_EVENTBASED",
    "LEGACY_SCHEDULED",
    "LEGACY_DYNAMIC",
]
DEFAULT_ERROR = {"type": "VEHICLE_STATE", "code": "UNREACHABLE"}  # a VEHICLE_ERROR emit without `error`


class WebhookSettings(BaseModel):
    """The body of `PUT /_sim/webhooks/{id}`; members left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    target_url: str | None = None
    amt: str | None = None
    time_scale: float | None = Field(None, ge=0)
    timeout: float | None = Field(None, gt=0, le=300)
    shape: Literal["A", "B"] | None = None
    name: str | None = None
    signals: list[str] | None = None
    triggers: list[str] | None = None
    vehicle_ids: list[str] | None = None
    verify: bool = False


class EmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: EventType
    vehicle_id: str | None = None
    challenge: str | None = None
    triggers: list[str] | None = None
    shape: Literal["A", "B"] | None = None
    mode: str = "LIVE"
    error: dict[str, str | None] | None = None
    state: Literal["ERROR", "RESOLVED"] = "ERROR"
    resolve_after: float | None = Field(None, ge=0, description="Send the RESOLVED this many seconds later.")
    event_type: str = "CHARGING_STARTED"


class BurstRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=1_000_000)
    rate: float = Field(gt=0, le=100_000)
    concurrency: int = Field(64, ge=1, le=10_000)
    retries: bool = False
    wait: bool = False


def _hub(request: Request) -> WebhookHub:
    hub: WebhookHub = request.app.state.webhooks
    return hub


def _webhook(request: Request) -> Webhook:
    webhook = _hub(request).webhooks.get(request.path_params["webhook_id"])
    if webhook is None:
        raise ControlError(404, "configure the webhook first: PUT /_sim/webhooks/{webhook_id}")
    return webhook


def _vehicle(sim: Simulator, webhook: Webhook, vehicle_id: str | None) -> Vehicle:
    if vehicle_id is None:
        subscribed = sorted(sim.subscriptions.get(webhook.id, ()))
        vehicle_id = subscribed[0] if subscribed else next(iter(sim.fleet.vehicles), None)
    if vehicle_id is None:
        raise ControlError(404, "the fleet is empty")
    return vehicle_or_404(sim, vehicle_id)


async def put_webhook(request: Request, sim: Simulator) -> dict[str, Any]:
    ask = await read_model(request, WebhookSettings)
    hub = _hub(request)
    webhook_id = request.path_params["webhook_id"]
    # Every vehicle is found before anything changes: an unknown one leaves the webhook as it was.
    vehicles = [vehicle_or_404(sim, vehicle_id) for vehicle_id in ask.vehicle_ids or []]
    try:
        webhook = hub.configure(
            webhook_id,
            target_url=ask.target_url,
            amt=ask.amt,
            time_scale=ask.time_scale,
            timeout=ask.timeout,
            shape=ask.shape,
            signals=ask.signals,
            triggers=ask.triggers,
            name=ask.name,
        )
    except ValueError as error:
        raise ControlError(400, str(error)) from None
    if ask.verify:
        hub.send(webhook, payloads.verify_event(webhook_id=webhook_id, webhook_name=webhook.name))
    for vehicle in vehicles:
        sim.subscribe(webhook_id, vehicle)
    return webhook.as_dict(sim.subscriptions.get(webhook_id, set()))


async def get_webhook(request: Request, sim: Simulator) -> dict[str, Any]:
    webhook = _webhook(request)
    return webhook.as_dict(sim.subscriptions.get(webhook.id, set()))


async def list_webhooks(request: Request, sim: Simulator) -> dict[str, Any]:
    hub = _hub(request)
    return {"webhooks": [w.as_dict(sim.subscriptions.get(w.id, set())) for w in hub.webhooks.values()]}


def build_event(hub: WebhookHub, webhook: Webhook, vehicle: Vehicle, ask: EmitRequest) -> dict[str, Any]:
    """The event `ask` describes, for `vehicle` as it is now."""
    if ask.type in ("VERIFY", "LEGACY_VERIFY"):
        return payloads.verify_event(
            ask.challenge,
            webhook_id=webhook.id,
            legacy=ask.type == "LEGACY_VERIFY",
            webhook_name=webhook.name,
        )
    if ask.type == "VEHICLE_STATE":
        triggers = ask.triggers or [webhook.default_trigger]
        return hub.state_event(webhook, vehicle, triggers, shape=ask.shape, mode=ask.mode)
    if ask.type == "VEHICLE_ERROR":
        error = ask.error or DEFAULT_ERROR
        if not error.get("type"):
            raise ValueError("error needs a type")
        return hub.error_event(webhook, vehicle, [(str(error["type"]), error.get("code"), ask.state)])
    if ask.type == "LEGACY_EVENTBASED":
        return payloads.legacy_event(
            "eventBased",
            webhook_id=webhook.id,
            vehicle_id=vehicle.id,
            mode=ask.mode.lower(),
            event_type=ask.event_type,
        )
    name: Literal["scheduled", "dynamic"] = "scheduled" if ask.type == "LEGACY_SCHEDULED" else "dynamic"
    battery = {"range": 0.0, "percentRemaining": round(vehicle.state.soc, 4)}
    data = [payloads.legacy_data_item("/battery", battery)]
    return payloads.legacy_event(
        name, webhook_id=webhook.id, vehicle_id=vehicle.id, mode=ask.mode.lower(), data=data
    )


async def emit(request: Request, sim: Simulator) -> dict[str, Any]:
    """Send one event now (its retries follow the emitter's schedule); answer its event id."""
    ask = await read_model(request, EmitRequest)
    hub, webhook = _hub(request), _webhook(request)
    if webhook.emitter is None:
        raise ControlError(409, "the webhook has no target_url")
    vehicle = _vehicle(sim, webhook, ask.vehicle_id)
    try:
        event = build_event(hub, webhook, vehicle, ask)
    except ValueError as error:
        raise ControlError(400, str(error)) from None
    hub.send(webhook, event)
    if ask.type == "VEHICLE_ERROR" and ask.state == "ERROR" and ask.resolve_after is not None:
        failed = ask.error or DEFAULT_ERROR
        hub.schedule_resolve(webhook, vehicle, str(failed["type"]), failed.get("code"), ask.resolve_after)
    return {"event_id": event_id_of(event), "event": event}


async def burst(request: Request, _sim: Simulator) -> dict[str, Any]:
    ask = await read_model(request, BurstRequest)
    hub, webhook = _hub(request), _webhook(request)
    try:
        burst_id, task = hub.start_burst(
            webhook, count=ask.count, rate=ask.rate, concurrency=ask.concurrency, retries=ask.retries
        )
    except ValueError as error:
        raise ControlError(409, str(error)) from None
    if ask.wait:
        return await task
    return {"burst_id": burst_id, "status": "running"}


async def burst_report(request: Request, _sim: Simulator) -> dict[str, Any]:
    record = _hub(request).bursts.get(request.path_params["burst_id"])
    if record is None:
        raise ControlError(404, "no such burst")
    return record


async def deliveries(request: Request, _sim: Simulator) -> dict[str, Any]:
    query = request.query_params
    found = _hub(request).deliveries(event_id=query.get("event_id"), webhook_id=query.get("webhook_id"))
    return {"deliveries": found, "count": len(found)}


ROUTES = [
    Route("/_sim/webhooks", control(list_webhooks), methods=["GET"]),
    Route("/_sim/webhooks/{webhook_id}", control(put_webhook), methods=["PUT"]),
    Route("/_sim/webhooks/{webhook_id}", control(get_webhook), methods=["GET"]),
    Route("/_sim/webhooks/{webhook_id}/emit", control(emit), methods=["POST"]),
    Route("/_sim/webhooks/{webhook_id}/burst", control(burst), methods=["POST"]),
    Route("/_sim/bursts/{burst_id}", control(burst_report), methods=["GET"]),
    Route("/_sim/deliveries", control(deliveries), methods=["GET"]),
]
