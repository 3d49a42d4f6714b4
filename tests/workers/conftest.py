"""Fixtures of the workers' tests: settings and runtimes under the test's own key prefix, payloads."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

from smartcar_core.config import Origins
from smartcar_simulator import payloads
from smartcar_simulator.testing import RunningSimulator, run_simulator
from testsupport import delete_keys
from testsupport.workers import WorkerLauncher, store_minted
from workers.assembly import load_handlers
from workers.registry import HandlerRegistry
from workers.runtime import Runtime
from workers.settings import WorkerSettings

FERNET_KEY = Fernet.generate_key().decode()
WEBHOOK_ID = "wh-test"
# Nothing listens here: a test that reaches Smartcar without a simulator fails loudly.
NOWHERE = Origins(
    api="http://127.0.0.1:9",
    auth="http://127.0.0.1:9",
    connect="http://127.0.0.1:9",
    management="http://127.0.0.1:9",
    vehicle_v3="http://127.0.0.1:9",
)
SIGNAL_NAMES = {
    "tractionbattery-stateofcharge": ("StateOfCharge", "TractionBattery"),
    "charge-ischarging": ("IsCharging", "Charge"),
    "charge-ischargingcableconnected": ("IsChargingCableConnected", "Charge"),
    "closure-islocked": ("IsLocked", "Closure"),
    "odometer-traveleddistance": ("TraveledDistance", "Odometer"),
}


def settings_values(redis_url: str, prefix: str, **overrides: Any) -> dict[str, Any]:
    """Settings for one test: every key (events, broker) under `prefix`, tiny delays, no app rate limit."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "token_encryption_key": FERNET_KEY,
        "event_key_prefix": prefix,
        "queue": f"{prefix}queue",
        "broker_key_prefix": prefix,
        "retry_base_delay": 0.05,
        "retry_max_delay": 0.2,
        "retry_long_base_delay": 0.3,
        "retry_long_max_delay": 0.6,
        "retry_max_retry_after": 5.0,
        "app_rate_bucket": 0,
        "vehicle_lock_wait": 2.0,
        "command_timeout": 10.0,
        "vehicle_lock_lease": 12.0,
        "task_soft_time_limit": 20.0,
        "task_time_limit": 25.0,
        "max_countdown": 2.0,
        "visibility_timeout": 30.0,
        "smartcar_client_id": "test-client",
        "smartcar_client_secret": "test-secret",
    }
    values.update(overrides)
    return values


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> WorkerSettings:
    return WorkerSettings(**settings_values(redis_url, key_prefix))


@pytest.fixture
def make_runtime(redis_url: str, key_prefix: str) -> Iterator[Callable[..., Runtime]]:
    """Build runtimes for this test, closed afterwards: `make_runtime(handlers=..., **settings)`."""
    built: list[Runtime] = []

    def build(
        *,
        handlers: HandlerRegistry | None = None,
        origins: Origins | None = None,
        enqueue: Any = None,
        **overrides: Any,
    ) -> Runtime:
        settings = WorkerSettings(**settings_values(redis_url, key_prefix, **overrides))
        runtime = Runtime.build(
            settings,
            handlers=handlers if handlers is not None else load_handlers(settings),
            origins=origins or NOWHERE,
            enqueue=enqueue,
        )
        built.append(runtime)
        return runtime

    yield build
    for runtime in built:
        runtime.close()


def _car(vehicle_id: str | None = None, user_id: str | None = None) -> dict[str, Any]:
    return {
        "id": vehicle_id or str(uuid.uuid4()),
        "make": "TESLA",
        "model": "Model 3",
        "year": 2022,
        "user_id": user_id or str(uuid.uuid4()),
    }


def _state_event(
    car: Mapping[str, Any],
    signals: Mapping[str, Any],
    *,
    triggers: Sequence[str] | None = None,
    mode: str = "LIVE",
    oem_ms: int | Mapping[str, int] | None = None,
    shape: payloads.Shape = "A",
) -> dict[str, Any]:
    """A VEHICLE_STATE for `car` carrying `signals` ({code: value}); `oem_ms` sets oemUpdatedAt."""
    now = payloads.now_ms()
    items = []
    for code, value in signals.items():
        name, group = SIGNAL_NAMES.get(code, (code, code.split("-", 1)[0]))
        oem = oem_ms.get(code, now) if isinstance(oem_ms, Mapping) else (oem_ms or now)
        body = value if isinstance(value, dict) else {"value": value}
        items.append(
            payloads.signal_item(
                code, name=name, group=group, body=body, oem_updated_at=oem, retrieved_at=now
            )
        )
    return payloads.vehicle_state_event(
        car,
        items,
        webhook_id=WEBHOOK_ID,
        triggers=list(triggers) if triggers is not None else [items[0]["code"]],
        mode=mode,
        shape=shape,
    )


@pytest.fixture
def car() -> Callable[..., dict[str, Any]]:
    """`car(vehicle_id=None, user_id=None)`: a vehicle mapping as the simulator's payload builders take."""
    return _car


@pytest.fixture
def state_event() -> Callable[..., dict[str, Any]]:
    """`state_event(car, {code: value}, triggers=None, mode="LIVE", oem_ms=None)`: a VEHICLE_STATE."""
    return _state_event


@pytest.fixture(scope="module")
def module_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix for a test module's workers (events, tokens and kombu's keys); deleted afterwards."""
    prefix = f"test:wk:{uuid.uuid4().hex[:10]}:"
    yield prefix
    with redis.Redis.from_url(redis_url) as client:
        delete_keys(client, f"{prefix}*")


@pytest.fixture(scope="module")
def launch(
    redis_url: str, module_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., WorkerLauncher]]:
    """`launch(origins=None, redis_url=None, **settings)` -> a `WorkerLauncher` (on the test Redis unless
    `redis_url` names another); every process it started is stopped after."""
    launchers: list[WorkerLauncher] = []

    def make(*, origins: Origins | None = None, **overrides: Any) -> WorkerLauncher:
        where = overrides.pop("redis_url", None) or redis_url
        settings = WorkerSettings(**settings_values(where, module_prefix, **overrides))
        extra = origin_environment(origins or NOWHERE)
        launcher = WorkerLauncher(settings, tmp_path_factory.mktemp("workers"), extra_env=extra)
        launchers.append(launcher)
        return launcher

    yield make
    for launcher in launchers:
        launcher.close()


def origin_environment(origins: Origins) -> dict[str, str]:
    return {
        "SMARTCAR_API_ORIGIN": origins.api,
        "SMARTCAR_AUTH_ORIGIN": origins.auth,
        "SMARTCAR_CONNECT_ORIGIN": origins.connect,
        "SMARTCAR_MANAGEMENT_API_ORIGIN": origins.management,
        "SMARTCAR_VEHICLE_API_V3_ORIGIN": origins.vehicle_v3,
    }


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    """One simulator per test module (uvicorn in a thread); `sim` resets it for each test."""
    with run_simulator(vehicles=12, seed=7) as running:
        yield running


@pytest.fixture
def sim(simulator: RunningSimulator) -> RunningSimulator:
    simulator.control.reset()
    return simulator


@pytest.fixture
def sim_runtime(make_runtime: Callable[..., Runtime], sim: RunningSimulator) -> Callable[..., Runtime]:
    """`sim_runtime(**settings)`: a runtime whose Smartcar is the simulator (its client id and secret)."""

    def build(**overrides: Any) -> Runtime:
        values = {
            "smartcar_client_id": sim.client_id,
            "smartcar_client_secret": sim.client_secret,
            **overrides,
        }
        return make_runtime(origins=sim.origins, **values)

    return build


def _connect(runtime: Runtime, sim: RunningSimulator, index: int = 0, **state: Any) -> dict[str, Any]:
    vehicle = sim.control.vehicles()[index]
    if state:
        sim.control.patch_vehicle(vehicle["id"], **state)
    # A grant covers every vehicle of its user, as Connect's (non single-select) flow does.
    tokens = sim.control.mint_tokens(user_id=vehicle["user_id"])
    store_minted(runtime.tokens, tokens)
    return {**vehicle, "user_id": tokens.user_id}


@pytest.fixture
def connect(sim: RunningSimulator) -> Callable[..., dict[str, Any]]:
    """`connect(runtime, index=0, **state)`: tokens for the simulator's vehicle `index`, state patched."""
    return lambda runtime, index=0, **state: _connect(runtime, sim, index, **state)
