"""Every Smartcar call a worker makes goes through `SmartcarGateway`.

It picks the vehicle's access token (refreshed ahead of expiry), takes a token from the shared rate
bucket, sends on one pooled httpx client, refreshes once and tries again on AUTHENTICATION, and turns
RATE_LIMIT answers into pauses that every worker sees. Signals are read from the v3 API (`sc-user-id`
header) or, for legacy vehicles, from v2 reads mapped onto the same signal codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx

from eventstore.vehicles import SignalUpdate
from smartcar_core import results as r
from smartcar_core.batch import BatchResponse
from smartcar_core.catalogue import RetryClass
from smartcar_core.client import ConnectionFilter, Smartcar
from smartcar_core.config import Origins
from smartcar_core.errors import RateLimitError, SmartcarError
from smartcar_core.v3 import Signal
from smartcar_core.vehicle import Vehicle
from workers.limits import RateLimiter
from workers.metrics import WorkerMetrics
from workers.tokens import TokenStore

R = TypeVar("R")
_APP_PAUSE_DEFAULT = 60.0
_VEHICLE_PAUSE_DEFAULT = 5.0
_CONNECT_TIMEOUT = 10.0
_PER_SIGNAL_ERRORS = frozenset({"COMPATIBILITY", "PERMISSION", "RESOURCE_NOT_FOUND"})
_MIN_TIMEOUT = 1.0


def _ms(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


@dataclass(frozen=True, slots=True)
class FetchedSignals:
    """Signals read from Smartcar: values as `SignalUpdate`s, per-signal failures as `{code: error}`."""

    updates: list[SignalUpdate]
    errors: dict[str, dict[str, Any]]


# v2 reads that stand in for signal codes on legacy vehicles: code -> (path, body from the typed result).
V2_SIGNALS: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "tractionbattery-stateofcharge": (
        "/battery",
        lambda b: {"unit": "percent", "value": round(b.percent_remaining * 100, 2)},
    ),
    "tractionbattery-range": ("/battery", lambda b: {"unit": "km", "value": b.range}),
    "charge-ischarging": ("/charge", lambda c: {"value": c.state == "CHARGING"}),
    "charge-ischargingcableconnected": ("/charge", lambda c: {"value": c.is_plugged_in}),
    "charge-detailedchargingstatus": ("/charge", lambda c: {"value": c.state}),
    "charge-chargelimits": (
        "/charge/limit",
        lambda c: {"activeLimit": round(c.limit * 100, 2), "unit": "percent"},
    ),
    "closure-islocked": ("/security", lambda s: {"value": s.is_locked}),
    "odometer-traveleddistance": ("/odometer", lambda o: {"unit": "km", "value": o.distance}),
    "location-preciselocation": (
        "/location",
        lambda loc: {"latitude": loc.latitude, "longitude": loc.longitude},
    ),
    "internalcombustionengine-fuellevel": (
        "/fuel",
        lambda f: {"unit": "percent", "value": round(f.percent_remaining * 100, 2)},
    ),
}


def v2_readings(batch: BatchResponse, paths: Mapping[str, Sequence[str]] | None = None) -> FetchedSignals:
    """The signal codes of `V2_SIGNALS` in v2 answers (a batch call's, or a legacy webhook's), as updates;
    `paths` maps each path to the codes wanted from it (None: every code of every path the batch holds)."""
    if paths is None:
        paths = {path: [code for code, (at, _) in V2_SIGNALS.items() if at == path] for path in batch.paths}
    now_ms = int(time.time() * 1000)
    updates: list[SignalUpdate] = []
    errors: dict[str, dict[str, Any]] = {}
    for path, path_codes in paths.items():
        try:
            result = batch.get(path)
        except SmartcarError as error:
            for code in path_codes:
                errors[code] = {"type": error.type, "code": error.code, "status": error.status_code}
            continue
        except KeyError:
            for code in path_codes:
                errors[code] = {"status": "MISSING"}
            continue
        meta: r.Meta = result.meta
        oem = _ms(meta.data_age)
        updates.extend(
            SignalUpdate(code, V2_SIGNALS[code][1](result), oem, now_ms, source="v2") for code in path_codes
        )
    return FetchedSignals(updates, errors)


class SmartcarGateway:
    def __init__(
        self,
        *,
        tokens: TokenStore,
        limiter: RateLimiter,
        origins: Origins,
        http: httpx.Client,
        read_timeout: float,
        command_timeout: float,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.tokens = tokens
        self.metrics = metrics
        self.limiter = limiter
        self.origins = origins
        self.http = http
        self.read_timeout = read_timeout
        self.command_timeout = command_timeout

    def _timeout(self, seconds: float, deadline: float | None) -> httpx.Timeout:
        if deadline is not None:
            seconds = max(_MIN_TIMEOUT, min(seconds, deadline - time.monotonic()))
        return httpx.Timeout(seconds, connect=min(seconds, _CONNECT_TIMEOUT))

    def call(
        self,
        vehicle_id: str,
        action: Callable[[Vehicle], R],
        *,
        command: bool = False,
        deadline: float | None = None,
    ) -> R:
        """Run `action` on the vehicle with a valid token; one refresh and one more try on AUTHENTICATION.

        A second AUTHENTICATION error is raised as is: the grant needs the user (policy: never retry).
        """
        access = self.tokens.access_token(vehicle_id)
        timeout = self._timeout(self.command_timeout if command else self.read_timeout, deadline)
        refreshed = False
        while True:
            self.limiter.take(vehicle_id)
            vehicle = Vehicle(vehicle_id, access.token, origins=self.origins, http=self.http, timeout=timeout)
            try:
                return action(vehicle)
            except SmartcarError as error:
                if self.metrics is not None:
                    self.metrics.api_errors(error.type or "-", error.code or "-").inc()
                if error.retry_class is RetryClass.REFRESH_TOKEN and not refreshed:
                    access = self.tokens.refresh(access.grant_id, stale=access)
                    refreshed = True
                    continue
                self._throttle(vehicle_id, error)
                raise

    def call_as_application(self, vehicle_id: str, amt: str, action: Callable[[Vehicle], R]) -> R:
        """Run `action` on the vehicle authorised by the application management token, not the vehicle's
        (unsubscribe): it works for a vehicle whose tokens are gone. Rate bucket and pauses as `call`."""
        self.limiter.take(vehicle_id)
        timeout = self._timeout(self.read_timeout, None)
        vehicle = Vehicle(vehicle_id, amt, origins=self.origins, http=self.http, timeout=timeout)
        try:
            return action(vehicle)
        except SmartcarError as error:
            self._throttle(vehicle_id, error)
            raise

    def connections(
        self,
        amt: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
        vehicle_id: str | None = None,
    ) -> r.GetConnections:
        """One page of the application's connections (Management API, newest first), or the one of
        `vehicle_id`. Not taken from the rate bucket: Smartcar's limit is on the vehicle API."""
        timeout = self._timeout(self.read_timeout, None)
        client = Smartcar(origins=self.origins, http=self.http, timeout=timeout)
        chosen: ConnectionFilter = {"vehicle_id": vehicle_id} if vehicle_id else {}
        return client.get_connections(amt, chosen, {"limit": limit, "cursor": cursor})

    def _throttle(self, vehicle_id: str, error: SmartcarError) -> None:
        if not isinstance(error, RateLimitError):
            return
        if error.application_wide:
            self.limiter.pause_app(error.retry_after or _APP_PAUSE_DEFAULT)
        elif error.code == "VEHICLE":
            self.limiter.pause_vehicle(vehicle_id, error.retry_after or _VEHICLE_PAUSE_DEFAULT)

    def fetch_signals(
        self,
        vehicle_id: str,
        codes: Sequence[str],
        *,
        user_id: str | None,
        api: str = "v3",
        deadline: float | None = None,
    ) -> FetchedSignals:
        if api == "v2" or user_id is None:
            return self._fetch_v2(vehicle_id, codes, deadline)
        return self._fetch_v3(vehicle_id, codes, user_id, deadline)

    def _fetch_v3(
        self, vehicle_id: str, codes: Sequence[str], user_id: str, deadline: float | None
    ) -> FetchedSignals:
        wanted = list(dict.fromkeys(codes))
        signals: list[Signal]
        if len(wanted) == 1:
            code = wanted[0]
            try:
                one = self.call(vehicle_id, lambda v: v.get_signal(code, user_id=user_id), deadline=deadline)
            except SmartcarError as error:
                if error.type not in _PER_SIGNAL_ERRORS:
                    raise
                # This vehicle cannot give this signal (the list endpoint says so per signal, this one
                # with an error status): a fact about the signal, not a failure of the event.
                return FetchedSignals([], {code: {"type": error.type, "code": error.code}})
            signals = [one.signal]
        else:
            every = self.call(vehicle_id, lambda v: v.get_signals(user_id=user_id), deadline=deadline)
            signals = every.signals
        updates: list[SignalUpdate] = []
        errors: dict[str, dict[str, Any]] = {}
        for signal in signals:
            if signal.code not in wanted:
                continue
            if signal.body is not None and signal.status in (None, "SUCCESS"):
                updates.append(
                    SignalUpdate(
                        signal.code,
                        signal.body,
                        _ms(signal.oem_updated_at),
                        _ms(signal.retrieved_at) or int(time.time() * 1000),
                        source="v3",
                    )
                )
            else:
                errors[signal.code] = signal.error or {"status": signal.status}
        for code in wanted:
            if code not in errors and all(update.code != code for update in updates):
                errors[code] = {"status": "MISSING"}
        return FetchedSignals(updates, errors)

    def _fetch_v2(self, vehicle_id: str, codes: Sequence[str], deadline: float | None) -> FetchedSignals:
        errors: dict[str, dict[str, Any]] = {}
        paths: dict[str, list[str]] = {}
        for code in dict.fromkeys(codes):
            if code in V2_SIGNALS:
                paths.setdefault(V2_SIGNALS[code][0], []).append(code)
            else:
                errors[code] = {"type": "COMPATIBILITY", "code": "NO_V2_READ"}
        if not paths:
            return FetchedSignals([], errors)
        batch = self.call(vehicle_id, lambda v: v.batch(list(paths)), deadline=deadline)
        read = v2_readings(batch, paths)
        return FetchedSignals(read.updates, {**errors, **read.errors})
