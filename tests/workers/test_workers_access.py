"""OAuth failures told apart, with real worker processes and the simulator's token endpoint: rejected client
credentials make events wait (never fail) until a worker with the right secret runs them; a refused
refresh token holds the grant's vehicles and their events until a new pair is stored, which replays them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from typer.testing import CliRunner

from eventstore.fleet import FleetStore, VehicleStatus
from eventstore.keys import KeySpace
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.workers import WorkerLauncher, accept_event, event_status, settings_environment, store_minted
from workers.cli import app
from workers.credentials import ClientVerdict, probe_client
from workers.settings import WorkerSettings

SOC = "tractionbattery-stateofcharge"
Launch = Callable[..., WorkerLauncher]
Maker = Callable[..., dict[str, Any]]


def _history(client: redis.Redis, prefix: str, event_id: str) -> list[dict[str, Any]]:
    from eventstore.events import EventStore  # noqa: PLC0415 - only to decode the record

    record = EventStore(client, KeySpace(prefix), retention=60).load(event_id)
    return record.history if record is not None else []


def _events(
    client: redis.Redis, prefix: str, vehicle: dict[str, Any], state_event: Maker, count: int
) -> list[str]:
    # Without the state of charge, which the workers then read from Smartcar (follow_up_signals).
    return [
        accept_event(client, prefix, state_event(vehicle, {"odometer-traveleddistance": 100 + n}))
        for n in range(count)
    ]


def test_a_rejected_client_secret_makes_events_wait_until_the_right_one_runs_them(
    launch: Launch, sim: RunningSimulator, client: redis.Redis, module_prefix: str, state_event: Maker
) -> None:
    values = {"origins": sim.origins, "follow_up_signals": {"*": [SOC]}, "smartcar_client_id": sim.client_id}
    wrong = launch(smartcar_client_secret="wrong-secret-value", client_rejected_delay=1.0, **values)
    vehicle = sim.control.vehicles()[0]
    # Stored as expiring within the refresh margin: the first call refreshes, and is refused for our client.
    store_minted(
        wrong.tokens, sim.control.mint_tokens(user_id=vehicle["user_id"]), expires_at=time.time() + 30
    )
    events = _events(client, module_prefix, vehicle, state_event, 3)
    worker = wrong.start("wrong-secret")

    def waited_twice() -> bool:
        return all(
            sum(entry["outcome"] == "waiting" for entry in _history(client, module_prefix, event_id)) >= 2
            for event_id in events
        )

    wait_until(waited_twice, timeout=40, interval=0.2, what="each event to wait twice")
    assert {event_status(client, module_prefix, event_id) for event_id in events} <= {
        "retrying",
        "processing",
        "queued",
    }
    assert client.zcard(KeySpace(module_prefix).dead) == 0
    entry = next(e for e in _history(client, module_prefix, events[0]) if e["outcome"] == "waiting")
    assert entry["error"]["class"] == "ClientRejectedError"
    assert "SMARTCAR_CLIENT_ID/SECRET" in entry["reason"]
    worker.stop()
    output = worker.output()
    assert "smartcar_client_rejected" in output
    assert "wrong-secret-value" not in output
    rejected = next(line for line in output.splitlines() if "smartcar_client_rejected" in line)
    assert json.loads(rejected)["level"] == "error"

    right = launch(smartcar_client_secret=sim.client_secret, client_rejected_delay=1.0, **values)
    running = right.start("right-secret")
    wait_until(
        lambda: all(event_status(client, module_prefix, event_id) == "done" for event_id in events),
        timeout=40,
        interval=0.2,
        what="the waiting events to be done with the right secret",
    )
    assert client.zcard(KeySpace(module_prefix).dead) == 0
    running.stop()  # the module's next test runs workers of other settings on the same queue


def test_a_refused_refresh_token_holds_the_vehicles_events_until_a_new_pair_replays_them(
    launch: Launch, sim: RunningSimulator, client: redis.Redis, module_prefix: str, state_event: Maker
) -> None:
    workers = launch(
        origins=sim.origins,
        follow_up_signals={"*": [SOC]},
        smartcar_client_id=sim.client_id,
        smartcar_client_secret=sim.client_secret,
        smartcar_redirect_uri="https://app.example/callback",
    )
    workers.start("reconsent")
    vehicle = sim.control.vehicles()[5]
    minted = sim.control.mint_tokens(vehicle_ids=[vehicle["id"]])
    spent = f"spent-{uuid.uuid4().hex}"  # a refresh token Smartcar does not know: invalid_grant
    workers.tokens.put(
        vehicle_ids=[vehicle["id"]],
        access_token=minted.access_token,
        refresh_token=spent,
        expires_at=time.time() + 30,
        user_id=minted.user_id,
    )
    events = _events(client, module_prefix, vehicle, state_event, 2)
    held = workers.tokens.held
    wait_until(lambda: held.events(vehicle["id"]) == sorted(events), timeout=30, what="both events held")
    wait_until(
        lambda: all(event_status(client, module_prefix, e) == "retrying" for e in events),
        timeout=30,
        what="both events parked",
    )
    for event_id in events:
        assert _history(client, module_prefix, event_id)[-1]["reason"] == "waiting for re-consent"
    assert client.zcard(KeySpace(module_prefix).dead) == 0
    known = FleetStore(client, KeySpace(module_prefix)).get(vehicle["id"])
    assert known is not None
    assert known.status is VehicleStatus.NEEDS_RECONSENT
    assert known.reconsent_url is not None
    assert known.reconsent_url == "https://app.example/connect?reconsent=1"  # the receiver's Connect
    assert len(sim.control.requests(path="/oauth/token")) == 1  # refused once, then not asked again

    # The driver reconnects: a new pair stored the way `tokens put` and the Connect callback store one.
    store_minted(workers.tokens, sim.control.mint_tokens(vehicle_ids=[vehicle["id"]]))
    assert held.since(vehicle["id"]) is None
    wait_until(
        lambda: all(event_status(client, module_prefix, e) == "done" for e in events),
        timeout=30,
        what="the held events to be replayed and done",
    )
    assert held.events(vehicle["id"]) == []


def test_check_asks_the_token_endpoint_whether_it_accepts_our_client(
    sim: RunningSimulator, settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = {"smartcar_client_id": sim.client_id, "smartcar_client_secret": SecretStr(sim.client_secret)}
    accepted = probe_client(settings.model_copy(update=ours), origins=sim.origins)
    assert accepted.verdict is ClientVerdict.ACCEPTED, accepted
    assert "invalid_grant" in accepted.detail
    wrong = {**ours, "smartcar_client_secret": SecretStr("nope")}
    assert (
        probe_client(settings.model_copy(update=wrong), origins=sim.origins).verdict is ClientVerdict.REJECTED
    )
    environment = settings_environment(settings)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SMARTCAR_AUTH_ORIGIN", sim.origins.auth)
    monkeypatch.setenv("SMARTCAR_CLIENT_ID", sim.client_id)
    monkeypatch.setenv("SMARTCAR_CLIENT_SECRET", "not-the-secret")
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 78
    assert "rejected SMARTCAR_CLIENT_ID/SECRET (invalid_client (HTTP 401)" in result.stderr
    assert "not-the-secret" not in result.output
    monkeypatch.setenv("SMARTCAR_CLIENT_SECRET", sim.client_secret)
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "accepted" in result.stdout
    monkeypatch.setenv("SMARTCAR_AUTH_ORIGIN", "http://127.0.0.1:9")  # nothing answers: said, not failed
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "not verified" in result.stdout
