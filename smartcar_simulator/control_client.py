"""`SimulatorControl`: a small synchronous client for the simulator's `/_sim/` endpoints.

control = SimulatorControl("http://127.0.0.1:8010")
tokens = control.mint_tokens(vehicle_ids=[vehicle_id])
control.add_fault(vehicle_id=vehicle_id, path="charge", count=3,
                      error={"type": "UPSTREAM", "code": "NO_RESPONSE"})
assert len(control.requests(vehicle_id=vehicle_id, path="charge", method="POST")) == 1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import httpx

from smartcar_simulator.emitter import DeliveryAttempt
from smartcar_simulator.faults import FaultKind
from smartcar_simulator.latency import ApplyAt, Distribution
from smartcar_simulator.state import RecordedRequest


class ControlCallError(Exception):
    """A control endpoint refused the call (bad input, unknown vehicle...)."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(f"simulator control answered {status_code}: {body}")
        self.status_code = status_code
        self.body = body


@dataclass(frozen=True, slots=True, repr=False)
class SimTokens:
    """Tokens minted by `POST /_sim/tokens` (or a token exchange); `repr` hides them."""

    access_token: str
    refresh_token: str
    expires_in: int
    user_id: str
    vehicle_ids: list[str]
    scope: list[str]

    def __repr__(self) -> str:
        return f"SimTokens(user_id={self.user_id!r}, vehicle_ids={self.vehicle_ids!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery(DeliveryAttempt):
    """A delivery attempt as `GET /_sim/deliveries` reports it: the emitter's record, and its webhook."""

    webhook_id: str


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class SimulatorControl:
    """Typed methods for every control endpoint. Pass `http` to reuse a client, `token` if one is set."""

    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout, trust_env=False)
        self._headers = headers

    def __repr__(self) -> str:
        return f"SimulatorControl({self.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def _call(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        response = self._http.request(
            method,
            f"{self.base_url}/_sim/{path}",
            json=json,
            params=_drop_none(params or {}),
            headers=self._headers,
        )
        body = response.json() if response.content else None
        if response.is_error:
            raise ControlCallError(response.status_code, body)
        return body

    # Fleet
    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "health")
        return result

    def vehicles(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "vehicles")["vehicles"]
        return result

    def vehicle(self, vehicle_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"vehicles/{vehicle_id}")
        return result

    def patch_vehicle(self, vehicle_id: str, **state: Any) -> dict[str, Any]:
        """Set state fields: soc, charging, plugged_in, charge_limit, locked, doors_open, asleep, online..."""
        result: dict[str, Any] = self._call("PATCH", f"vehicles/{vehicle_id}", json=state)
        return result

    def users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "users")["users"]
        return result

    # Tokens
    def mint_tokens(
        self,
        vehicle_ids: Sequence[str] | None = None,
        *,
        user_id: str | None = None,
        scope: Sequence[str] | None = None,
        expires_in: float | None = None,
    ) -> SimTokens:
        body = _drop_none(
            {
                "vehicle_ids": list(vehicle_ids) if vehicle_ids is not None else None,
                "user_id": user_id,
                "scope": list(scope) if scope is not None else None,
                "expires_in": expires_in,
            }
        )
        answer = self._call("POST", "tokens", json=body)
        return SimTokens(**{key: answer[key] for key in SimTokens.__dataclass_fields__})

    # Faults, latency, rate limits
    def add_fault(
        self,
        *,
        vehicle_id: str | None = None,
        path: str | None = None,
        method: str | None = None,
        count: int | None = None,
        probability: float | None = None,
        error: Mapping[str, Any] | None = None,
        kind: FaultKind | None = None,
        status: int | None = None,
        seconds: float | None = None,
        after_effect: bool = False,
    ) -> str:
        """Inject a fault; returns its id. `error` is `{"type", "code", "status"?, "retry_after"?}`."""
        body = _drop_none(
            {
                "vehicle_id": vehicle_id,
                "path": path,
                "method": method,
                "count": count,
                "probability": probability,
                "error": dict(error) if error is not None else None,
                "kind": kind,
                "status": status,
                "seconds": seconds,
                "after_effect": after_effect or None,
            }
        )
        fault_id: str = self._call("POST", "faults", json=body)["id"]
        return fault_id

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "faults")["faults"]
        return result

    def remove_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"faults/{fault_id}")

    def clear_faults(self) -> int:
        cleared: int = self._call("DELETE", "faults")["cleared"]
        return cleared

    def set_latency(
        self,
        distribution: Distribution = "fixed",
        *,
        seconds: float | None = None,
        low: float | None = None,
        high: float | None = None,
        median: float | None = None,
        p99: float | None = None,
    ) -> dict[str, Any]:
        body = _drop_none(
            {
                "distribution": distribution,
                "seconds": seconds,
                "low": low,
                "high": high,
                "median": median,
                "p99": p99,
            }
        )
        result: dict[str, Any] = self._call("PUT", "latency", json=body)
        return result

    def latency(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "latency")
        return result

    def set_apply_at(self, apply_at: ApplyAt) -> ApplyAt:
        """When within its latency a call takes effect (a command reaches the car, a read is taken):
        `start`, `middle` or `end` (the default). The answer leaves at the end of the latency either way,
        so `start` or `middle` opens a window between "the car obeyed" and "the caller heard"."""
        chosen: ApplyAt = self._call("PUT", "apply-at", json={"apply_at": apply_at})["apply_at"]
        return chosen

    def apply_at(self) -> ApplyAt:
        chosen: ApplyAt = self._call("GET", "apply-at")["apply_at"]
        return chosen

    def rate_limits(self) -> dict[str, Any]:
        """The limits in force, and `app_tokens_left` in the application's bucket."""
        result: dict[str, Any] = self._call("GET", "rate-limits")
        return result

    def set_rate_limits(
        self, *, per_vehicle: Mapping[str, Any] | None = None, app: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """`per_vehicle={"limit", "window_seconds", "retry_after"?}`, `app={"bucket", "refill_per_minute"}`;
        None switches a limit off."""
        body = {
            "per_vehicle": dict(per_vehicle) if per_vehicle is not None else None,
            "app": dict(app) if app is not None else None,
        }
        result: dict[str, Any] = self._call("PUT", "rate-limits", json=body)
        return result

    # The record of API calls
    def requests(
        self,
        *,
        vehicle_id: str | None = None,
        path: str | None = None,
        method: str | None = None,
        since: float | None = None,
    ) -> list[RecordedRequest]:
        """The API calls received (the simulator's own record of each), oldest first; a call whose caller
        went away before its answer is there too, with `client_gone` set."""
        params = {"vehicle_id": vehicle_id, "path": path, "method": method, "since": since}
        found = self._call("GET", "requests", params=params)["requests"]
        return [
            RecordedRequest(**{key: item[key] for key in RecordedRequest.__dataclass_fields__})
            for item in found
        ]

    def clear_requests(self) -> int:
        cleared: int = self._call("DELETE", "requests")["cleared"]
        return cleared

    # Time and reset
    def now(self) -> float:
        now: float = self._call("GET", "clock")["now"]
        return now

    def advance_clock(self, seconds: float) -> float:
        """Move the simulator's clock forward: tokens expire, batteries charge."""
        now: float = self._call("POST", "clock", json={"advance": seconds})["now"]
        return now

    def reset(self) -> None:
        """Back to the start (seeded fleet, configured latency, limits, faults); tokens, record and
        subscriptions cleared."""
        self._call("POST", "reset")

    # Webhooks
    def configure_webhook(
        self,
        webhook_id: str,
        *,
        target_url: str | None = None,
        amt: str | None = None,
        time_scale: float | None = None,
        shape: Literal["A", "B"] | None = None,
        vehicle_ids: Sequence[str] | None = None,
        signals: Sequence[str] | None = None,
        triggers: Sequence[str] | None = None,
        timeout: float | None = None,
        verify: bool | None = None,
    ) -> dict[str, Any]:
        body = _drop_none(
            {
                "target_url": target_url,
                "amt": amt,
                "time_scale": time_scale,
                "shape": shape,
                "vehicle_ids": list(vehicle_ids) if vehicle_ids is not None else None,
                "signals": list(signals) if signals is not None else None,
                "triggers": list(triggers) if triggers is not None else None,
                "timeout": timeout,
                "verify": verify,
            }
        )
        result: dict[str, Any] = self._call("PUT", f"webhooks/{webhook_id}", json=body)
        return result

    def webhooks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "webhooks")["webhooks"]
        return result

    def webhook(self, webhook_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"webhooks/{webhook_id}")
        return result

    def emit(self, webhook_id: str, event_type: str, **fields: Any) -> str:
        """Emit one event (VERIFY, VEHICLE_STATE, VEHICLE_ERROR, LEGACY_*...); returns its event id."""
        event_id: str = self._call(
            "POST", f"webhooks/{webhook_id}/emit", json={"type": event_type, **fields}
        )["event_id"]
        return event_id

    def burst(self, webhook_id: str, *, count: int, rate: float, **options: Any) -> dict[str, Any]:
        """Start a burst; `wait=True` answers with the report, else `{"burst_id"}` (see `burst_report`)."""
        result: dict[str, Any] = self._call(
            "POST", f"webhooks/{webhook_id}/burst", json={"count": count, "rate": rate, **options}
        )
        return result

    def burst_report(self, burst_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"bursts/{burst_id}")
        return result

    def deliveries(self, *, event_id: str | None = None, webhook_id: str | None = None) -> list[Delivery]:
        found = self._call("GET", "deliveries", params={"event_id": event_id, "webhook_id": webhook_id})
        return [
            Delivery(**{key: item[key] for key in Delivery.__dataclass_fields__})
            for item in found["deliveries"]
        ]
