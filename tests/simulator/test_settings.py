"""Settings from the environment, AMT rotation, webhooks configured at start, and the async runner."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import smartcar_core as sc
from smartcar_core.events import parse_envelope
from smartcar_simulator.control_client import ControlCallError
from smartcar_simulator.settings import SimulatorSettings
from smartcar_simulator.testing import run_simulator, run_simulator_async
from smartcar_simulator.tokens import ALL_SCOPES, Grant
from testsupport import serve_asgi, wait_until


def test_settings_come_from_the_shared_variables_and_hide_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCAR_CLIENT_ID", "env-id")
    monkeypatch.setenv("SMARTCAR_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("SMARTCAR_AMT", "new-amt, old-amt")
    monkeypatch.setenv("SMARTCAR_WEBHOOK_ID", "wh-env")
    monkeypatch.setenv("SIMULATOR_LATENCY", "uniform:0.1,0.3")
    monkeypatch.setenv("SIMULATOR_VEHICLES", "3")
    monkeypatch.setenv("CLIENT_ID", "not-ours")  # an unprefixed name is never read
    settings = SimulatorSettings()
    assert (settings.client_id, settings.webhook_id, settings.vehicles) == ("env-id", "wh-env", 3)
    assert settings.amts == ("new-amt", "old-amt")
    assert settings.signing_amt == "new-amt"
    assert (settings.latency.distribution, settings.latency.high) == ("uniform", 0.3)
    assert "env-secret" not in repr(settings)
    assert "new-amt" not in repr(settings)
    assert SimulatorSettings(vehicles=1, latency=0.5).latency.seconds == 0.5
    with pytest.raises(ValueError, match="latency"):
        SimulatorSettings(latency="sometimes")


def test_every_amt_of_the_rotation_is_accepted() -> None:
    with run_simulator(vehicles=2, amt="current,previous") as simulator:
        vehicle_id = simulator.vehicle_ids[0]
        token = simulator.control.mint_tokens([vehicle_id]).access_token
        vehicle = sc.Vehicle(vehicle_id, token, origins=simulator.origins)
        vehicle.subscribe("wh")
        assert vehicle.unsubscribe("previous", "wh").status == "success"
        with pytest.raises(sc.AuthenticationError):
            vehicle.unsubscribe("unknown", "wh")
        smartcar = sc.Smartcar(origins=simulator.origins)
        assert len(smartcar.get_connections("previous").connections) == 2
        assert simulator.amt == "current"


def test_a_webhook_configured_at_start_receives_every_vehicle() -> None:
    received: list[bytes] = []

    async def hook(request: Request) -> Response:
        received.append(await request.body())
        return Response(status_code=204)

    with serve_asgi(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        settings = SimulatorSettings(
            vehicles=3,
            webhook_id="wh-start",
            webhook_url=f"{url}/hook",
            subscribe_all=True,
            webhook_shape="B",
        )
        with run_simulator(settings) as simulator:
            webhook = simulator.control.webhook("wh-start")
            assert sorted(webhook["vehicle_ids"]) == sorted(simulator.vehicle_ids)
            assert webhook["shape"] == "B"
            wait_until(lambda: len(received) >= 3, timeout=10)  # one FIRST_DELIVERY per vehicle
            envelopes = [parse_envelope(body) for body in received]
            assert {e.vehicle_id for e in envelopes} == set(simulator.vehicle_ids)
            assert {tuple(e.trigger_codes) for e in envelopes} == {("FIRST_DELIVERY",)}
            assert simulator.control.webhooks()[0]["webhook_id"] == "wh-start"


def test_webhook_configuration_is_validated() -> None:
    with run_simulator(vehicles=1) as simulator:
        control = simulator.control
        with pytest.raises(ControlCallError) as unknown:
            control.configure_webhook("wh", signals=["charge-flux-capacitor"])
        assert unknown.value.status_code == 400
        with pytest.raises(ControlCallError) as stray:
            control.configure_webhook("wh", signals=["closure-islocked"], triggers=["charge-ischarging"])
        assert stray.value.status_code == 400
        control.configure_webhook("wh", signals=["closure-islocked"])
        with pytest.raises(ControlCallError) as no_target:
            control.emit("wh", "VERIFY")
        assert no_target.value.status_code == 409
        with pytest.raises(ControlCallError) as no_burst:
            control.burst("wh", count=1, rate=1)
        assert no_burst.value.status_code == 409
        with pytest.raises(ControlCallError) as unknown_webhook:
            control.webhook("never-configured")
        assert unknown_webhook.value.status_code == 404
        with pytest.raises(ControlCallError) as unknown_vehicle:
            control.configure_webhook("wh", vehicle_ids=["nope"])
        assert unknown_vehicle.value.status_code == 404


@pytest.mark.anyio
async def test_the_simulator_runs_in_the_test_event_loop() -> None:
    async with run_simulator_async(vehicles=2, seed=4) as simulator, httpx.AsyncClient() as http:
        vehicle_id = simulator.vehicle_ids[0]
        owner = simulator.sim.fleet.vehicles[vehicle_id].user_id
        grant = simulator.sim.tokens.issue(Grant(owner, (vehicle_id,), frozenset(ALL_SCOPES)))
        vehicle = sc.AsyncVehicle(vehicle_id, grant["access_token"], origins=simulator.origins, http=http)
        assert (await vehicle.attributes()).id == vehicle_id
        health = await asyncio.to_thread(simulator.control.health)
        assert health["vehicles"] == 2


def test_faults_and_rate_limits_can_be_set_at_start_and_reset_restores_them() -> None:
    settings = SimulatorSettings(
        vehicles=2,
        faults=[{"path": "odometer", "count": 1, "error": {"type": "UPSTREAM", "code": "NO_RESPONSE"}}],
        rate_limits={"per_vehicle": {"limit": 1, "window_seconds": 3600}},
    )
    with run_simulator(settings) as simulator:
        for _ in range(2):
            vehicle_ids = simulator.vehicle_ids
            tokens = simulator.control.mint_tokens(vehicle_ids[:1])
            vehicle = sc.Vehicle(vehicle_ids[0], tokens.access_token, origins=simulator.origins)
            with pytest.raises(sc.UpstreamError):
                vehicle.odometer()
            with pytest.raises(sc.RateLimitError) as limited:
                vehicle.odometer()
            assert limited.value.code == "VEHICLE"
            simulator.control.reset()
