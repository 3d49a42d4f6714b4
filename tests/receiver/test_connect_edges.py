"""Connect's edges: not configured (the receiver still starts), settings that cannot work, the cookie in
production, a Redis that does not answer, and an owner whose vehicles were gone before the list came."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis
import structlog
from cryptography.fernet import Fernet
from redis.asyncio import Redis as AsyncRedis
from starlette.applications import Starlette

import smartcar_core as sc
from eventstore.client import connect as connect_redis
from eventstore.connect import new_token
from eventstore.keys import KeySpace
from receiver.app import create_app
from receiver.connect import ConnectFlow
from receiver.metrics import ReceiverMetrics
from receiver.settings import ReceiverSettings, SettingsError, load_settings
from smartcar_simulator.testing import RunningSimulator, run_simulator
from testsupport import wait_until
from testsupport.receiver import asgi_client

pytestmark = pytest.mark.anyio
RECEIVER = "http://receiver.test"


@pytest.fixture(scope="module")
def shared_simulator() -> Iterator[RunningSimulator]:
    with run_simulator(vehicles=4, seed=11) as running:
        yield running


@pytest.fixture
def sim(shared_simulator: RunningSimulator) -> RunningSimulator:
    shared_simulator.control.reset()
    return shared_simulator


@pytest.fixture
def connect_settings(
    make_settings: Callable[..., ReceiverSettings], sim: RunningSimulator
) -> Callable[..., ReceiverSettings]:
    def make(**overrides: Any) -> ReceiverSettings:
        values = {
            "smartcar_client_id": sim.client_id,
            "smartcar_client_secret": sim.client_secret,
            "smartcar_redirect_uri": RECEIVER + "/callback",
            "token_encryption_key": Fernet.generate_key().decode(),
            **overrides,
        }
        return make_settings(**values)

    return make


@contextlib.asynccontextmanager
async def flow_app(
    settings: ReceiverSettings,
    sim: RunningSimulator,
    *,
    redis_url: str,
    store_client: redis.Redis | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, ReceiverMetrics]]:
    """The Connect routes alone in-process at RECEIVER, the simulator over HTTP beside them, one client
    for both (as a browser): the receiver's clients are chosen by the test."""
    connection = AsyncRedis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    metrics = ReceiverMetrics()
    flow = ConnectFlow(
        settings,
        redis_client=connection,
        metrics=metrics,
        log=structlog.get_logger("receiver"),
        origins=sim.origins,
        store_client=store_client,
    )
    app = Starlette(routes=flow.routes)
    mounts = {RECEIVER: httpx.ASGITransport(app=app)}
    async with httpx.AsyncClient(mounts=mounts, base_url=RECEIVER, follow_redirects=True) as browser:
        yield browser, metrics
    await flow.aclose()
    await connection.aclose()


def sample(metrics: ReceiverMetrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value("smartcar_connect_total", {"outcome": outcome})


async def test_without_connect_settings_both_routes_say_it_is_not_set_up(
    make_settings: Callable[..., ReceiverSettings],
) -> None:
    settings = make_settings()
    assert not settings.connect_enabled
    async with asgi_client(create_app(settings)) as http:
        for path in ("/connect", "/callback?code=x&state=y"):
            answer = await http.get(path)
            assert answer.status_code == 404
            assert "Smartcar Connect is not set up here" in answer.text
        assert (await http.get("/healthz")).status_code == 200
        metrics = (await http.get("/metrics")).text
    assert 'smartcar_connect_total{outcome="not_configured"} 2.0' in metrics


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"smartcar_client_id": None}, "also needs SMARTCAR_CLIENT_ID"),
        (
            {"smartcar_client_secret": "", "token_encryption_key": " "},
            "SMARTCAR_CLIENT_SECRET, TOKEN_ENCRYPTION_KEY",
        ),
        ({"smartcar_redirect_uri": "/callback"}, "absolute http(s) URL"),
        ({"smartcar_redirect_uri": "ftp://receiver.test/callback"}, "absolute http(s) URL"),
        ({"smartcar_redirect_uri": RECEIVER + "/callback?x=1"}, "no query or fragment"),
        ({"smartcar_redirect_uri": RECEIVER + "/oauth"}, "must end with /callback"),
        ({"smartcar_env": "production"}, "must be https with SMARTCAR_ENV=production"),
        ({"token_encryption_key": "secret-but-not-fernet"}, "TOKEN_ENCRYPTION_KEY key #1"),
        ({"connect_scopes": ["read_vin read_odometer"]}, "RECEIVER_CONNECT_SCOPES"),
        ({"connect_mode": "production"}, "RECEIVER_CONNECT_MODE"),
        ({"connect_state_seconds": 30}, "RECEIVER_CONNECT_STATE_SECONDS"),
    ],
)
def test_connect_settings_that_cannot_work_are_refused_at_start_up(
    connect_settings: Callable[..., ReceiverSettings], overrides: dict[str, Any], problem: str
) -> None:
    values = {**dict(connect_settings()), **overrides}
    with pytest.raises(SettingsError) as refused:
        ReceiverSettings.load(**values)
    assert problem in str(refused.value)
    assert "secret-but-not-fernet" not in str(refused.value)


def test_connect_is_read_from_the_environment_and_blank_means_unset(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., ReceiverSettings]
) -> None:
    for name in (
        "SMARTCAR_REDIRECT_URI",
        "SMARTCAR_CLIENT_ID",
        "SMARTCAR_CLIENT_SECRET",
        "TOKEN_ENCRYPTION_KEY",
    ):
        monkeypatch.setenv(name, "")
    assert not make_settings().connect_enabled
    monkeypatch.setenv("SMARTCAR_REDIRECT_URI", "https://cars.example/smartcar/callback")
    with pytest.raises(SettingsError, match="also needs SMARTCAR_CLIENT_ID, SMARTCAR_CLIENT_SECRET"):
        load_settings(smartcar_amt="amt-test-current-0123456789")
    monkeypatch.setenv("SMARTCAR_CLIENT_ID", "client")
    monkeypatch.setenv("SMARTCAR_CLIENT_SECRET", "secret")
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("RECEIVER_CONNECT_SCOPES", '["read_vin"]')
    monkeypatch.setenv("RECEIVER_CONNECT_FLAGS", '{"country": "DE"}')
    settings = load_settings(smartcar_amt="amt-test-current-0123456789", smartcar_env="production")
    assert settings.connect_enabled
    assert (settings.connect_scopes, settings.connect_flags) == (["read_vin"], {"country": "DE"})
    assert settings.connect_cookie_path == "/smartcar/"


async def test_in_production_the_cookie_is_secure(
    connect_settings: Callable[..., ReceiverSettings], sim: RunningSimulator, redis_url: str
) -> None:
    settings = connect_settings(
        smartcar_env="production", smartcar_redirect_uri="https://cars.example/callback"
    )
    async with flow_app(settings, sim, redis_url=redis_url) as (browser, _metrics):
        answer = await browser.get("/connect", follow_redirects=False)
    assert answer.status_code == 302
    cookie = answer.headers["set-cookie"]
    assert "Secure" in cookie
    assert "Path=/;" in cookie
    assert answer.headers["cache-control"] == "no-store"


async def test_a_redis_that_does_not_answer_gets_a_503_page_and_nothing_is_kept(
    *,
    connect_settings: Callable[..., ReceiverSettings],
    sim: RunningSimulator,
    redis_url: str,
    dead_redis_url: str,
    keys: KeySpace,
    store: redis.Redis,
) -> None:
    settings = connect_settings()
    async with flow_app(settings, sim, redis_url=dead_redis_url) as (browser, metrics):
        answer = await browser.get("/connect")
        assert answer.status_code == 503
        assert "cannot save your connection" in answer.text
        answer = await browser.get("/callback", params={"state": new_token(), "code": "a-code"})
        assert answer.status_code == 503
        assert sample(metrics, "store_unavailable") == 2
    dead_store = connect_redis(dead_redis_url, timeout=1)
    async with flow_app(settings, sim, redis_url=redis_url, store_client=dead_store) as (browser, _metrics):
        answer = await browser.get("/connect")  # the state is kept; the grant cannot be
        assert answer.status_code == 503
        assert "Nothing was kept" in answer.text
    dead_store.close()
    assert len(sim.control.requests(path="oauth/token", method="POST")) == 1
    assert list(store.scan_iter(keys.grant("*"))) == []


async def test_an_owner_whose_vehicles_are_gone_before_the_list_gets_the_no_vehicle_page(
    connect_settings: Callable[..., ReceiverSettings], sim: RunningSimulator, redis_url: str
) -> None:
    settings = connect_settings()
    sim.control.add_fault(path="user", kind="slow", seconds=1.0, count=1)

    def disconnect_everyone() -> None:
        # get_user, the call after the exchange, takes a second: the owner revokes every vehicle meanwhile.
        wait_until(lambda: sim.control.requests(path="oauth/token"), timeout=10, what="the code exchange")
        for vehicle_id in sim.vehicle_ids:
            sc.Smartcar(origins=sim.origins).delete_connections(sim.amt, {"vehicle_id": vehicle_id})

    revoker = threading.Thread(target=disconnect_everyone)
    async with flow_app(settings, sim, redis_url=redis_url) as (browser, metrics):
        location = (await browser.get("/connect", follow_redirects=False)).headers["location"]
        assert parse_qs(urlsplit(location).query)["state"]
        revoker.start()
        answer = await browser.get(location)
    revoker.join()
    assert answer.status_code == 200
    assert "No vehicle could be shared" in answer.text
    assert sample(metrics, "no_vehicles") == 1
