"""Webhooks as Smartcar runs them: targets, subscriptions, and events when subscribed vehicles change.

A subscription sends a FIRST_DELIVERY VEHICLE_STATE; afterwards a VEHICLE_STATE goes out whenever one of
the webhook's trigger signals changes (a command, a PATCH, charging progress), carrying every
subscribed signal. A vehicle going offline, to sleep, or losing remote access sends a VEHICLE_ERROR
(ERROR), and its recovery another (RESOLVED). Delivery, signing and retries are the emitter's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx

from smartcar_simulator import payloads
from smartcar_simulator.emitter import WebhookEmitter
from smartcar_simulator.fleet import Vehicle
from smartcar_simulator.signals import (
    BY_CODE,
    DEFAULT_WEBHOOK_SIGNALS,
    SignalReading,
    read_signal,
    read_signals,
)
from smartcar_simulator.state import Simulator

Shape = Literal["A", "B"]
T = TypeVar("T")
# (state field, value meaning trouble) -> the VEHICLE_ERROR it raises
ERROR_CONDITIONS: tuple[tuple[str, bool, str, str], ...] = (
    ("online", False, "VEHICLE_STATE", "UNREACHABLE"),
    ("asleep", True, "VEHICLE_STATE", "ASLEEP"),
    ("remote_access_disabled", True, "VEHICLE_STATE", "REMOTE_ACCESS_DISABLED"),
)


@dataclass(slots=True)
class Webhook:
    id: str
    name: str
    target_url: str | None
    amt: str = field(repr=False)
    time_scale: float
    timeout: float
    shape: Shape
    signals: tuple[str, ...]
    triggers: tuple[str, ...]
    emitter: WebhookEmitter | None = None
    last_values: dict[str, dict[str, str]] = field(default_factory=dict)  # vehicle -> trigger code -> value
    active_errors: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    @property
    def default_trigger(self) -> str:
        """The trigger of an event nothing in particular set off (a control emit, a burst)."""
        return self.triggers[0] if self.triggers else payloads.FIRST_DELIVERY

    def as_dict(self, subscribed: set[str]) -> dict[str, Any]:
        return {
            "webhook_id": self.id,
            "name": self.name,
            "target_url": self.target_url,
            "time_scale": self.time_scale,
            "timeout": self.timeout,
            "shape": self.shape,
            "signals": list(self.signals),
            "triggers": list(self.triggers),
            "vehicle_ids": sorted(subscribed),
            "pending": self.emitter.pending if self.emitter else 0,
        }


class WebhookHub:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.webhooks: dict[str, Webhook] = {}
        self.bursts: dict[str, dict[str, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._rng = random.Random(sim.settings.seed)  # noqa: S311 - picks vehicles for bursts
        sim.change_listeners.append(self.on_change)
        sim.subscribe_listeners.append(self.on_subscribe)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        settings = self.sim.settings
        if settings.webhook_id and settings.webhook_url:
            self.configure(settings.webhook_id, target_url=settings.webhook_url)
            if settings.subscribe_all:
                for vehicle_id in list(self.sim.fleet.vehicles):
                    self.sim.subscribe(settings.webhook_id, self.sim.fleet.require(vehicle_id))

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for webhook in self.webhooks.values():
            if webhook.emitter is not None:
                await webhook.emitter.aclose()

    def has_subscribers(self) -> bool:
        return any(self.sim.subscriptions.get(webhook_id) for webhook_id in self.webhooks)

    def configure(
        self,
        webhook_id: str,
        *,
        target_url: str | None = None,
        amt: str | None = None,
        time_scale: float | None = None,
        timeout: float | None = None,
        shape: Shape | None = None,
        signals: list[str] | None = None,
        triggers: list[str] | None = None,
        name: str | None = None,
    ) -> Webhook:
        """Create or update a webhook; a new target, AMT, timeout or time scale gets a new emitter."""
        settings = self.sim.settings
        old = self.webhooks.get(webhook_id)
        unknown = [code for code in (signals or []) + (triggers or []) if code not in BY_CODE]
        if unknown:
            raise ValueError(f"unknown signal codes: {', '.join(unknown)}")
        chosen_signals = (
            tuple(signals) if signals is not None else (old.signals if old else DEFAULT_WEBHOOK_SIGNALS)
        )
        chosen_triggers = (
            tuple(triggers) if triggers is not None else (old.triggers if old else chosen_signals)
        )
        if not set(chosen_triggers).issubset(chosen_signals):
            raise ValueError("every trigger must be one of the webhook's signals")
        webhook = Webhook(
            id=webhook_id,
            name=name or (old.name if old else payloads.DEFAULT_WEBHOOK_NAME),
            target_url=target_url if target_url is not None else (old.target_url if old else None),
            amt=amt or (old.amt if old else settings.signing_amt),
            time_scale=time_scale
            if time_scale is not None
            else (old.time_scale if old else settings.time_scale),
            timeout=timeout or (old.timeout if old else settings.webhook_timeout),
            shape=shape or (old.shape if old else settings.webhook_shape),
            signals=chosen_signals,
            triggers=chosen_triggers,
            last_values=old.last_values if old else {},
            active_errors=old.active_errors if old else {},
        )
        reuse = (
            old is not None
            and old.emitter is not None
            and all(
                getattr(old, name) == getattr(webhook, name)
                for name in ("target_url", "amt", "time_scale", "timeout")
            )
        )
        if reuse and old is not None:
            webhook.emitter = old.emitter
        elif webhook.target_url:
            webhook.emitter = WebhookEmitter(
                target_url=webhook.target_url,
                amt=webhook.amt,
                timeout=webhook.timeout,
                time_scale=webhook.time_scale,
            )
        if old is not None and old.emitter is not None and old.emitter is not webhook.emitter:
            self._spawn(old.emitter.aclose())
        self.webhooks[webhook_id] = webhook
        return webhook

    def _spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coroutine` in the background; `aclose` cancels it if it is still running."""
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def send(self, webhook: Webhook, event: dict[str, Any] | bytes) -> None:
        """Hand an event to the webhook's emitter (from the server's loop or any thread)."""
        emitter = webhook.emitter
        if emitter is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(emitter.send, event)
            return
        emitter.send(event)

    # Building events
    def signal_items(
        self, webhook: Webhook, vehicle: Vehicle, taken: Sequence[SignalReading] = ()
    ) -> list[dict[str, Any]]:
        """Every subscribed signal as `data.signals`; readings already `taken` (the triggers') are reused."""
        now_ms = int(self.sim.clock.now() * 1000)
        have = {reading.code: reading for reading in taken}
        readings = [have.get(code) or read_signal(BY_CODE[code], vehicle) for code in webhook.signals]
        return [self._item(reading, now_ms, webhook.shape) for reading in readings]

    @staticmethod
    def _item(reading: SignalReading, now_ms: int, shape: Shape) -> dict[str, Any]:
        return payloads.signal_item(
            reading.code,
            name=reading.name,
            group=reading.group,
            body=reading.body,
            oem_updated_at=reading.oem_updated_at or None,
            retrieved_at=now_ms if reading.error is None else None,
            shape=shape,
            error=reading.error,
        )

    def state_event(
        self,
        webhook: Webhook,
        vehicle: Vehicle,
        triggers: list[str],
        *,
        shape: Shape | None = None,
        mode: str = "LIVE",
        taken: Sequence[SignalReading] = (),
    ) -> dict[str, Any]:
        return payloads.vehicle_state_event(
            vehicle.identity(),
            self.signal_items(webhook, vehicle, taken),
            webhook_id=webhook.id,
            triggers=triggers,
            shape=shape or webhook.shape,
            mode=mode,
            webhook_name=webhook.name,
        )

    def error_event(
        self, webhook: Webhook, vehicle: Vehicle, errors: list[tuple[str, str | None, str]]
    ) -> dict[str, Any]:
        refs = [
            {"code": code, "name": BY_CODE[code].name, "group": BY_CODE[code].group}
            for code in webhook.signals
        ]
        items = [payloads.error_item(kind, code, state=state, signals=refs) for kind, code, state in errors]
        return payloads.vehicle_error_event(
            vehicle.identity(), items, webhook_id=webhook.id, webhook_name=webhook.name
        )

    # Reacting to the fleet
    def on_subscribe(self, vehicle: Vehicle, webhook_id: str) -> None:
        webhook = self.webhooks.get(webhook_id)
        if webhook is None:
            return
        triggers = read_signals(vehicle, webhook.triggers)
        webhook.last_values[vehicle.id] = {reading.code: reading.value_key() for reading in triggers}
        webhook.active_errors[vehicle.id] = self._errors(vehicle)
        self.send(webhook, self.state_event(webhook, vehicle, [payloads.FIRST_DELIVERY], taken=triggers))

    @staticmethod
    def _errors(vehicle: Vehicle) -> set[tuple[str, str]]:
        state = vehicle.state
        return {(kind, code) for name, bad, kind, code in ERROR_CONDITIONS if getattr(state, name) == bad}

    def on_change(self, vehicle: Vehicle, _cause: str) -> None:
        for webhook_id, webhook in self.webhooks.items():
            if vehicle.id not in self.sim.subscriptions.get(webhook_id, ()):
                continue
            before = webhook.last_values.get(vehicle.id, {})
            triggers = read_signals(vehicle, webhook.triggers)
            now = {reading.code: reading.value_key() for reading in triggers}
            changed = [code for code in webhook.triggers if now.get(code) != before.get(code)]
            webhook.last_values[vehicle.id] = now
            if changed:
                self.send(webhook, self.state_event(webhook, vehicle, changed, taken=triggers))
            was, errors = webhook.active_errors.get(vehicle.id, set()), self._errors(vehicle)
            webhook.active_errors[vehicle.id] = errors
            transitions: list[tuple[str, str | None, str]] = [
                (k, c, "ERROR") for k, c in sorted(errors - was)
            ]
            transitions += [(k, c, "RESOLVED") for k, c in sorted(was - errors)]
            if transitions:
                self.send(webhook, self.error_event(webhook, vehicle, transitions))

    # Load generation
    def burst_events(self, webhook: Webhook, count: int) -> Iterator[dict[str, Any]]:
        subscribed = sorted(self.sim.subscriptions.get(webhook.id, ())) or list(self.sim.fleet.vehicles)
        if not subscribed:
            raise ValueError("the fleet is empty")
        for _ in range(count):
            vehicle = self.sim.fleet.require(self._rng.choice(subscribed))
            yield self.state_event(webhook, vehicle, [webhook.default_trigger])

    def start_burst(
        self, webhook: Webhook, *, count: int, rate: float, concurrency: int, retries: bool
    ) -> tuple[str, asyncio.Task[dict[str, Any]]]:
        if webhook.emitter is None:
            raise ValueError("the webhook has no target_url")
        emitter = webhook.emitter
        burst_id = f"burst-{uuid.uuid4().hex[:12]}"
        record: dict[str, Any] = {
            "burst_id": burst_id,
            "webhook_id": webhook.id,
            "status": "running",
            "report": None,
        }

        async def run() -> dict[str, Any]:
            try:
                report = await emitter.burst(
                    self.burst_events(webhook, count), rate=rate, concurrency=concurrency, retries=retries
                )
            except Exception as error:
                record.update(status="failed", error=f"{type(error).__name__}: {error}")
                raise
            record.update(status="done", report={**dataclasses.asdict(report), "rate": report.rate})
            return record

        task = self._spawn(run())
        self.bursts[burst_id] = record
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return burst_id, task

    def schedule_resolve(
        self, webhook: Webhook, vehicle: Vehicle, kind: str, code: str | None, delay: float
    ) -> None:
        async def later() -> None:
            await asyncio.sleep(delay * webhook.time_scale)
            self.send(webhook, self.error_event(webhook, vehicle, [(kind, code, "RESOLVED")]))

        self._spawn(later())

    def deliveries(
        self, *, event_id: str | None = None, webhook_id: str | None = None
    ) -> list[dict[str, Any]]:
        found = []
        for webhook in self.webhooks.values():
            if webhook.emitter is None or (webhook_id is not None and webhook.id != webhook_id):
                continue
            attempts = webhook.emitter.attempts_for(event_id) if event_id else webhook.emitter.attempts
            found += [{"webhook_id": webhook.id, **attempt.as_dict()} for attempt in attempts]
        return sorted(found, key=lambda item: item["sent_at"])
