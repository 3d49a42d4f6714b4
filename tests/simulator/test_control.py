"""The `/_sim/` control endpoints and the typed client, and the API's wire details they steer."""

from __future__ import annotations

import time

import httpx
import pytest

from simulator.support import first
from smartcar_simulator.clock import ManualClock, SimClock
from smartcar_simulator.control_client import ControlCallError, SimulatorControl
from smartcar_simulator.testing import RunningSimulator, run_simulator


def _get(simulator: RunningSimulator, path: str, token: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{simulator.url}{path}", headers={"authorization": f"Bearer {token}", **headers})


def test_health_vehicles_and_patch_validation(simulator: RunningSimulator) -> None:
    control = simulator.control
    assert control.health()["vehicles"] == len(control.vehicles()) == 12
    vehicle = control.vehicles()[0]
    assert control.vehicle(vehicle["id"])["vin"] == vehicle["vin"]
    patched = control.patch_vehicle(vehicle["id"], locked=not vehicle["state"]["locked"], odometer_km=1.0)
    assert set(patched["changed"]) == {"locked", "odometer_km"}
    with pytest.raises(ControlCallError) as unknown_field:
        control.patch_vehicle(vehicle["id"], wings=True)
    assert unknown_field.value.status_code == 400
    assert unknown_field.value.body["detail"][0]["loc"] == ["wings"]
    with pytest.raises(ControlCallError) as out_of_range:
        control.patch_vehicle(vehicle["id"], soc=1.5)
    assert out_of_range.value.status_code == 400
    with pytest.raises(ControlCallError) as missing:
        control.vehicle("no-such-vehicle")
    assert missing.value.status_code == 404


def test_minting_tokens(simulator: RunningSimulator) -> None:
    control = simulator.control
    users = control.users()
    by_user = control.mint_tokens(user_id=users[0]["id"], scope=["read_odometer"], expires_in=90)
    assert (by_user.vehicle_ids, by_user.scope, by_user.expires_in) == (
        users[0]["vehicle_ids"],
        ["read_odometer"],
        90,
    )
    assert by_user.access_token not in repr(by_user)
    mixed = [users[0]["vehicle_ids"][0], users[1]["vehicle_ids"][0]]
    for kwargs, status in (
        ({"vehicle_ids": mixed}, 400),
        ({"vehicle_ids": ["nope"]}, 404),
        ({"user_id": "nope"}, 404),
        ({}, 400),
        ({"vehicle_ids": users[0]["vehicle_ids"][:1], "user_id": users[1]["id"]}, 400),
    ):
        with pytest.raises(ControlCallError) as raised:
            control.mint_tokens(**kwargs)
        assert raised.value.status_code == status, kwargs


def test_faults_by_count_probability_method_and_glob(simulator: RunningSimulator) -> None:
    control = simulator.control
    vehicle_id = first(simulator, "BEV")["id"]
    token = control.mint_tokens([vehicle_id]).access_token
    base = f"/v2.0/vehicles/{vehicle_id}"
    always = control.add_fault(path="signals/*", probability=1.0, kind="http_status", status=503)
    assert _get(simulator, f"/v3/vehicles/{vehicle_id}/signals/closure-islocked", token).status_code == 503
    assert _get(simulator, f"/v3/vehicles/{vehicle_id}/signals/closure-islocked", token).status_code == 503
    assert _get(simulator, f"/v3/vehicles/{vehicle_id}/signals", token).status_code == 200
    control.remove_fault(always)
    control.add_fault(
        vehicle_id=vehicle_id, method="POST", count=1, error={"type": "SERVER", "code": "INTERNAL"}
    )
    assert _get(simulator, f"{base}/odometer", token).status_code == 200  # a GET: not matched
    listed = control.faults()
    assert (listed[0]["method"], listed[0]["remaining"], listed[0]["fired"]) == ("POST", 1, 0)
    lock = httpx.post(
        f"{simulator.url}{base}/security",
        json={"action": "LOCK"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert (lock.status_code, lock.json()["code"]) == (500, "INTERNAL")
    assert control.faults() == []
    control.add_fault(path="oauth/token", count=1, kind="gateway_html", status=504)
    refused = httpx.post(
        f"{simulator.url}/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x"}
    )
    assert refused.status_code == 504
    assert refused.headers["content-type"].startswith("text/html")
    control.add_fault(vehicle_id=vehicle_id, probability=0.0, kind="drop")
    assert control.clear_faults() == 1
    with pytest.raises(ControlCallError):
        control.add_fault(kind="slow")  # slow needs seconds
    with pytest.raises(ControlCallError):
        control.remove_fault("fault-unknown")


def test_after_effect_applies_the_command_before_failing(simulator: RunningSimulator) -> None:
    control = simulator.control
    vehicle_id = first(simulator, "BEV")["id"]
    control.patch_vehicle(vehicle_id, plugged_in=True, soc=0.2, charge_limit=0.9, charging=False)
    token = control.mint_tokens([vehicle_id]).access_token
    control.add_fault(
        vehicle_id=vehicle_id,
        path="charge",
        method="POST",
        count=1,
        after_effect=True,
        error={"type": "UPSTREAM", "code": "NO_RESPONSE"},
    )
    answer = httpx.post(
        f"{simulator.url}/v2.0/vehicles/{vehicle_id}/charge",
        json={"action": "START"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert (answer.status_code, answer.json()["code"]) == (502, "NO_RESPONSE")
    assert control.vehicle(vehicle_id)["state"]["charging"] is True
    calls = control.requests(vehicle_id=vehicle_id, path="charge", method="POST")
    assert [(call.status, call.sub_path) for call in calls] == [(502, "charge")]


def test_latency_is_applied_and_reported(simulator: RunningSimulator) -> None:
    control = simulator.control
    vehicle_id = first(simulator, "ICE")["id"]
    token = control.mint_tokens([vehicle_id]).access_token
    assert control.set_latency("fixed", seconds=0.25)["seconds"] == 0.25
    started = time.perf_counter()
    assert _get(simulator, f"/v2.0/vehicles/{vehicle_id}/odometer", token).status_code == 200
    assert time.perf_counter() - started >= 0.25
    assert control.set_latency("longtail", median=0.01, p99=0.05)["distribution"] == "longtail"
    with pytest.raises(ControlCallError):
        control.set_latency("uniform", low=0.5, high=0.1)
    assert control.latency()["p99"] == 0.05
    control.set_latency(seconds=0)


def test_rate_limits_per_vehicle_and_for_the_application(simulator: RunningSimulator) -> None:
    control = simulator.control
    bev, ice = first(simulator, "BEV")["id"], first(simulator, "ICE")["id"]
    token_bev, token_ice = control.mint_tokens([bev]).access_token, control.mint_tokens([ice]).access_token
    control.set_rate_limits(per_vehicle={"limit": 2, "window_seconds": 60, "retry_after": 9})
    answers = [_get(simulator, f"/v2.0/vehicles/{bev}/odometer", token_bev) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert (answers[2].json()["code"], answers[2].headers["retry-after"]) == ("VEHICLE", "9")
    assert _get(simulator, f"/v2.0/vehicles/{ice}/odometer", token_ice).status_code == 200
    limits = control.set_rate_limits(app={"bucket": 2, "refill_per_minute": 0})
    assert limits["app_tokens_left"] == 2
    answers = [_get(simulator, f"/v2.0/vehicles/{ice}/odometer", token_ice) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["code"] == "SMARTCAR_API"
    assert control.rate_limits()["app_tokens_left"] < 1
    assert "retry-after" not in answers[2].headers
    control.set_rate_limits()
    assert _get(simulator, f"/v2.0/vehicles/{ice}/odometer", token_ice).status_code == 200


def test_the_request_record(simulator: RunningSimulator) -> None:
    control = simulator.control
    vehicle_id = first(simulator, "BEV")["id"]
    token = control.mint_tokens([vehicle_id]).access_token
    since = control.now()
    _get(simulator, f"/v2.0/vehicles/{vehicle_id}/odometer/", token)  # the trailing slash is the same path
    _get(simulator, "/v2.0/user", token)
    control.add_fault(vehicle_id=vehicle_id, count=1, kind="drop")
    with pytest.raises(httpx.TransportError):
        _get(simulator, f"/v2.0/vehicles/{vehicle_id}/location", token)
    calls = control.requests(since=since)
    assert [(c.method, c.sub_path, c.status) for c in calls] == [
        ("GET", "odometer", 200),
        ("GET", None, 200),
        ("GET", "location", None),
    ]
    assert [c.path for c in control.requests(path="user")] == ["/v2.0/user"]
    assert len(control.requests(vehicle_id=vehicle_id, method="get")) == 2
    assert control.clear_requests() == 3
    assert control.requests() == []
    bad_since = httpx.get(f"{simulator.url}/_sim/requests", params={"since": "yesterday"})
    assert (bad_since.status_code, bad_since.json()["error"]) == (
        400,
        "since must be epoch seconds (a number)",
    )


def test_reset_forgets_tokens_and_the_clock_moves_state() -> None:
    # A clock that only the test moves: wall time spent between the calls must not charge the battery.
    with run_simulator(vehicles=6, seed=3, clock=SimClock(ManualClock())) as simulator:
        control = simulator.control
        vehicle_id = first(simulator, "BEV")["id"]
        token = control.mint_tokens([vehicle_id]).access_token
        control.patch_vehicle(vehicle_id, plugged_in=True, soc=0.1, charge_limit=1.0, charging=True)
        before = control.now()
        assert control.advance_clock(7200) >= before + 7200
        assert control.vehicle(vehicle_id)["state"]["soc"] == pytest.approx(0.6)
        control.reset()
        assert _get(simulator, "/v2.0/user", token).status_code == 401


def test_wire_details(simulator: RunningSimulator) -> None:
    vehicle_id = first(simulator, "BEV")["id"]
    token = simulator.control.mint_tokens([vehicle_id]).access_token
    read = _get(simulator, f"/v2.0/vehicles/{vehicle_id}/battery", token, **{"sc-unit-system": "imperial"})
    assert {"sc-request-id", "sc-data-age", "sc-fetched-at"} <= set(read.headers)
    assert read.headers["sc-unit-system"] == "imperial"
    command = httpx.post(
        f"{simulator.url}/v2.0/vehicles/{vehicle_id}/security/",
        json={"action": "UNLOCK"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert command.json() == {"status": "success", "message": "Successfully sent request to vehicle"}
    assert "sc-data-age" not in command.headers
    unknown = _get(simulator, "/v2.0/no/such/thing", token)
    assert (unknown.status_code, unknown.json()["type"], unknown.json()["code"]) == (
        404,
        "RESOURCE_NOT_FOUND",
        "PATH",
    )
    assert unknown.json()["requestId"] == unknown.headers["sc-request-id"]
    bad_json = httpx.post(
        f"{simulator.url}/v2.0/vehicles/{vehicle_id}/security",
        content=b"{not json",
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    assert (bad_json.status_code, bad_json.json()["type"]) == (400, "VALIDATION")
    management = httpx.get(
        f"{simulator.url}/v2.0/management/connections",
        params={"cursor": "garbage"},
        auth=("default", simulator.amt),
    )
    assert management.status_code == 400
    deleting_all = httpx.delete(
        f"{simulator.url}/v2.0/management/connections", auth=("default", simulator.amt)
    )
    assert deleting_all.status_code == 400


def test_a_control_token_guards_the_control_endpoints() -> None:
    with run_simulator(vehicles=1, control_token="let-me-in") as simulator:
        assert httpx.get(f"{simulator.url}/_sim/health").status_code == 401
        assert simulator.control.health()["status"] == "ok"  # the running simulator's client carries it
        with (
            SimulatorControl(simulator.url, token="wrong") as wrong,
            pytest.raises(ControlCallError) as raised,
        ):
            wrong.health()
        assert raised.value.status_code == 401


def test_a_webhook_update_naming_an_unknown_vehicle_changes_nothing() -> None:
    with run_simulator(vehicles=2, seed=1) as simulator:
        known = simulator.vehicle_ids[0]
        before = simulator.control.configure_webhook("wh-edit", shape="A")
        with pytest.raises(ControlCallError) as raised:
            simulator.control.configure_webhook("wh-edit", shape="B", vehicle_ids=[known, "no-such-vehicle"])
        assert raised.value.status_code == 404
        assert "no-such-vehicle" in raised.value.body["error"]
        assert simulator.control.webhook("wh-edit") == before
        assert before["shape"] == "A"
        assert before["vehicle_ids"] == []


def test_a_webhooks_amt_stays_out_of_its_repr() -> None:
    with run_simulator(vehicles=1) as simulator:
        simulator.control.configure_webhook("wh-secret", amt="amt-that-must-not-leak")
        webhook = simulator.app.state.webhooks.webhooks["wh-secret"]
        assert webhook.amt == "amt-that-must-not-leak"
        assert "amt-that-must-not-leak" not in repr(webhook)
        assert "wh-secret" in repr(webhook)
