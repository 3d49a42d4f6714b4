"""Malformed or impossible API calls get Smartcar's error for them, in the caller's body shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulator.support import first
from smartcar_simulator.auth import MAX_FORM_BYTES
from smartcar_simulator.control import MAX_CONTROL_BODY
from smartcar_simulator.testing import RunningSimulator, run_simulator

VEHICLE = "{vehicle}"


@pytest.mark.parametrize(
    ("call", "status", "error"),
    [
        (("GET", "/v2.0/vehicles?limit=abc", None), 400, ("VALIDATION", "PARAMETER")),
        (("GET", "/v2.0/vehicles?limit=0", None), 400, ("VALIDATION", "PARAMETER")),
        (
            ("GET", f"/v2.0/vehicles/{VEHICLE}/service/history?start_date=yesterday", None),
            400,
            ("VALIDATION", "PARAMETER"),
        ),
        (("POST", f"/v2.0/vehicles/{VEHICLE}/batch", {"requests": []}), 400, ("VALIDATION", None)),
        (
            ("POST", f"/v2.0/vehicles/{VEHICLE}/batch", {"requests": [{"url": "/odometer"}]}),
            400,
            ("VALIDATION", None),
        ),
        (
            ("POST", f"/v2.0/vehicles/{VEHICLE}/batch", {"requests": [{"path": "/x"}] * 51}),
            400,
            ("VALIDATION", None),
        ),
        (
            ("POST", f"/v2.0/vehicles/{VEHICLE}/navigation/destination", {"latitude": 91, "longitude": 0}),
            400,
            ("VALIDATION", "PARAMETER"),
        ),
        (("POST", f"/v2.0/vehicles/{VEHICLE}/teleport", {}), 404, ("RESOURCE_NOT_FOUND", "PATH")),
        (("DELETE", f"/v2.0/vehicles/{VEHICLE}/security", None), 404, ("RESOURCE_NOT_FOUND", "PATH")),
        (("GET", f"/v3/vehicles/{VEHICLE}/commands", None), 404, ("RESOURCE_NOT_FOUND", "PATH")),
        (
            ("GET", f"/v3/vehicles/{VEHICLE}/signals/charge-fluxcapacitor", None),
            404,
            ("RESOURCE_NOT_FOUND", "PATH"),
        ),
        (
            ("GET", f"/v3/vehicles/{VEHICLE}/signals/internalcombustionengine-fuellevel", None),
            501,
            ("COMPATIBILITY", "VEHICLE_NOT_CAPABLE"),
        ),
        (("GET", "/v2.0/vehicles/not-a-vehicle/odometer", None), 403, ("PERMISSION", None)),
    ],
)
def test_vehicle_api_refusals(
    simulator: RunningSimulator, call: tuple[str, str, Any], status: int, error: tuple[str, str | None]
) -> None:
    method, path, body = call
    vehicle_id = first(simulator, "BEV")["id"]
    token = simulator.control.mint_tokens([vehicle_id]).access_token
    answer = httpx.request(
        method,
        simulator.url + path.replace(VEHICLE, vehicle_id),
        json=body,
        headers={"authorization": f"Bearer {token}"},
    )
    assert answer.status_code == status
    payload = answer.json()
    item = payload["errors"][0] if "errors" in payload else payload
    assert (item["type"], item["code"]) == error
    if "errors" in payload:
        assert item["status"] == str(status)  # v3 states it as a string


def test_a_batch_reports_each_path_with_its_own_code(simulator: RunningSimulator) -> None:
    vehicle_id = first(simulator, "BEV")["id"]
    token = simulator.control.mint_tokens([vehicle_id], scope=["read_odometer"]).access_token
    simulator.control.add_fault(
        vehicle_id=vehicle_id,
        path="location",
        count=1,
        error={"type": "RATE_LIMIT", "code": "VEHICLE", "retry_after": 3},
    )
    answer = httpx.post(
        f"{simulator.url}/v2.0/vehicles/{vehicle_id}/batch",
        json={
            "requests": [{"path": "odometer"}, {"path": "/location"}, {"path": "/battery"}, {"path": "/nope"}]
        },
        headers={"authorization": f"Bearer {token}", "sc-unit-system": "imperial"},
    )
    items = {item["path"]: item for item in answer.json()["responses"]}
    assert {path: item["code"] for path, item in items.items()} == {
        "/odometer": 200,
        "/location": 429,
        "/battery": 403,
        "/nope": 404,
    }
    assert items["/location"]["headers"]["retry-after"] == "3"
    assert items["/odometer"]["headers"]["sc-unit-system"] == "imperial"
    assert {"sc-data-age", "sc-fetched-at"} <= set(items["/odometer"]["headers"])
    assert answer.headers["sc-request-id"] == items["/battery"]["body"]["requestId"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("compatibility", {"vin": "short", "scope": "read_odometer"}, "vin"),
        ("compatibility", {"vin": "5YJ3E1EA7KF000000", "scope": ""}, "scope"),
        ("compatibility", {"vin": "5YJ3E1EA7KF000000", "scope": "read_minds"}, "scope"),
        ("compatibility/matrix", {"region": "MARS"}, "region"),
    ],
)
def test_compatibility_refusals(
    simulator: RunningSimulator, path: str, params: dict[str, str], field: str
) -> None:
    answer = httpx.get(
        f"{simulator.url}/v2.0/{path}", params=params, auth=(simulator.client_id, simulator.client_secret)
    )
    assert answer.status_code == 400
    assert answer.json()["detail"][0]["field"] == field
    wrong = httpx.get(f"{simulator.url}/v2.0/{path}", params=params, auth=(simulator.client_id, "nope"))
    assert (wrong.status_code, wrong.json()["type"]) == (401, "AUTHENTICATION")


def test_unsubscribing_takes_the_amt_as_a_bearer_token_only(simulator: RunningSimulator) -> None:
    url = f"{simulator.url}/v2.0/vehicles/{first(simulator, 'BEV')['id']}/webhooks/wh-edge"
    for scheme in ("Basic", "Token"):
        refused = httpx.delete(url, headers={"authorization": f"{scheme} {simulator.amt}"})
        assert (refused.status_code, refused.json()["type"]) == (401, "AUTHENTICATION")
    accepted = httpx.delete(url, headers={"authorization": f"Bearer {simulator.amt}"})
    assert (accepted.status_code, accepted.json()) == (200, {"status": "success"})


def _chunks(size: int, chunk: int = 65_536) -> Iterator[bytes]:
    """`size` bytes sent chunked (no Content-Length): the limit must hold while the body streams in."""
    for start in range(0, size, chunk):
        yield b" " * min(chunk, size - start)


def test_every_body_limit_holds_with_or_without_a_content_length() -> None:
    with run_simulator(vehicles=1, max_body_bytes=1000) as simulator:
        vehicle_id = simulator.vehicle_ids[0]
        token = simulator.control.mint_tokens([vehicle_id]).access_token
        command = f"{simulator.url}/v2.0/vehicles/{vehicle_id}/security"
        bearer = {"authorization": f"Bearer {token}"}
        for body in (b" " * 1001, _chunks(1001, chunk=100)):
            refused = httpx.post(command, content=body, headers=bearer)
            assert (refused.status_code, refused.json()["type"]) == (400, "VALIDATION")
            assert refused.json()["description"] == "request body larger than 1000 bytes"
        lock = httpx.post(command, content=b'{"action": "LOCK"}' + b" " * 982, headers=bearer)
        assert lock.status_code == 200

        form = httpx.post(
            f"{simulator.url}/oauth/token",
            content=b"grant_type=refresh_token&refresh_token=" + b"x" * (MAX_FORM_BYTES - 38),
            auth=(simulator.client_id, simulator.client_secret),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert (form.status_code, form.json()["error"]) == (400, "invalid_request")

        control = httpx.post(f"{simulator.url}/_sim/tokens", content=_chunks(MAX_CONTROL_BODY + 1))
        assert (control.status_code, control.json()["error"]) == (
            413,
            f"body larger than {MAX_CONTROL_BODY} bytes",
        )
