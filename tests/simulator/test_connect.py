"""Connect's authorize page: validation, the user and vehicles it picks, and its error redirects."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import smartcar_core as sc
from simulator.support import first
from smartcar_simulator.testing import RunningSimulator

REDIRECT = "https://app.example/callback"


def _authorize(simulator: RunningSimulator, **params: str) -> httpx.Response:
    query = {"response_type": "code", "client_id": simulator.client_id, "redirect_uri": REDIRECT, **params}
    return httpx.get(f"{simulator.url}/oauth/authorize", params=query)


def _grant(simulator: RunningSimulator, **params: str) -> tuple[str, list[str]]:
    """Authorize, exchange the code, and say whose vehicles were shared."""
    answer = _authorize(simulator, **params)
    assert answer.status_code == 302
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    client = sc.AuthClient(simulator.client_id, simulator.client_secret, REDIRECT, origins=simulator.origins)
    token = client.exchange_code(code).access_token
    smartcar = sc.Smartcar(origins=simulator.origins)
    return smartcar.get_user(token).id, smartcar.get_vehicles(token).vehicles


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"response_type": "token"}, "response_type"),
        ({"client_id": "someone-else"}, "client_id"),
        ({"redirect_uri": "ftp://nope"}, "redirect_uri"),
        ({"mode": "production"}, "mode"),
    ],
)
def test_invalid_requests_get_an_error_page(
    simulator: RunningSimulator, params: dict[str, str], problem: str
) -> None:
    answer = _authorize(simulator, **params)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
    assert problem in answer.text


def test_single_select_vin_shares_that_vehicle(simulator: RunningSimulator) -> None:
    vehicle = first(simulator, "ICE")
    assert _grant(simulator, single_select="true", single_select_vin=vehicle["vin"]) == (
        vehicle["user_id"],
        [vehicle["id"]],
    )


def test_make_and_single_select_narrow_the_vehicles(simulator: RunningSimulator) -> None:
    vehicles = simulator.control.vehicles()
    make = vehicles[0]["make"]
    _, shared = _grant(simulator, make=make.lower())
    assert shared
    assert {v["make"] for v in vehicles if v["id"] in shared} == {make}
    _, one = _grant(simulator, single_select="true", mode="simulated")
    assert len(one) == 1


def test_the_same_user_name_logs_in_the_same_owner_and_others_take_turns(simulator: RunningSimulator) -> None:
    alice, _ = _grant(simulator, user="alice@example.com")
    again, _ = _grant(simulator, user="alice@example.com")
    assert alice == again
    owners = {_grant(simulator)[0] for _ in range(3)}
    assert len(owners) == 3


def test_scope_state_and_existing_query_are_kept(simulator: RunningSimulator) -> None:
    answer = _authorize(
        simulator, redirect_uri=REDIRECT + "?tenant=7", state="xyz", scope="read_vin read_odometer"
    )
    target = urlsplit(answer.headers["location"])
    query = parse_qs(target.query)
    assert (query["tenant"], query["state"]) == (["7"], ["xyz"])
    client = sc.AuthClient(
        simulator.client_id, simulator.client_secret, REDIRECT + "?tenant=7", origins=simulator.origins
    )
    token = client.exchange_code(query["code"][0]).access_token
    vehicle_id = sc.Smartcar(origins=simulator.origins).get_vehicles(token).vehicles[0]
    assert sc.Vehicle(vehicle_id, token, origins=simulator.origins).permissions().permissions == [
        "read_odometer",
        "read_vin",
    ]


def test_connect_errors_come_back_on_the_redirect(simulator: RunningSimulator) -> None:
    for params, error in (
        ({"single_select_vin": "1FTFW1E50PFA00000"}, "no_vehicles"),
        ({"make": "DELOREAN"}, "no_vehicles"),
        ({"sim_error": "access_denied"}, "access_denied"),
    ):
        answer = _authorize(simulator, state="s", **params)
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        assert (query["error"], query["state"]) == ([error], ["s"])
        assert "code" not in query
