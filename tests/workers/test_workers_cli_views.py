"""What `smartcar-events vehicle state` shows an operator about a vehicle's errors, after the workers
processed real VEHICLE_ERROR deliveries: a table of each error with its state, since when, and the message
to pass on to the user, beside the signals (or on its own when no signal is known yet)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from smartcar_simulator import payloads
from testsupport.workers import accept_event, settings_environment
from workers.cli import app
from workers.process import Outcome, process_event
from workers.runtime import Runtime
from workers.settings import WorkerSettings

runner = CliRunner()
Maker = Callable[..., dict[str, Any]]
DELIVERED_MS = 1_700_000_000_000


def _cells(table: str) -> str:
    """A rich table's text with its borders and layout gone (cells wrap at the console's width)."""
    return "".join(char for char in table if char.isascii() and not char.isspace())


@pytest.fixture
def env(settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)


def _unreachable(client: redis.Redis, key_prefix: str, runtime: Runtime, vehicle: dict[str, Any]) -> None:
    error = payloads.vehicle_error_event(
        vehicle, [{"type": "VEHICLE_STATE", "code": "UNREACHABLE", "state": "ERROR"}], webhook_id="wh"
    )
    error["meta"]["deliveredAt"] = DELIVERED_MS
    assert process_event(runtime, accept_event(client, key_prefix, error)).outcome is Outcome.DONE


def test_vehicle_state_lists_errors_beside_the_signals(
    env: None,
    client: redis.Redis,
    key_prefix: str,
    *,
    make_runtime: Callable[..., Runtime],
    car: Maker,
    state_event: Maker,
) -> None:
    runtime = make_runtime()
    vehicle = car()
    body = state_event(vehicle, {"tractionbattery-stateofcharge": 71})
    assert process_event(runtime, accept_event(client, key_prefix, body)).outcome is Outcome.DONE
    _unreachable(client, key_prefix, runtime, vehicle)
    message = runtime.vehicles.errors(vehicle["id"])["VEHICLE_STATE:UNREACHABLE"]["suggested_user_message"]
    result = runner.invoke(app, ["vehicle", "state", vehicle["id"]])
    assert result.exit_code == 0, result.output
    signals, errors = result.stdout.split(" errors ")
    assert "tractionbattery-stateofcharge" in _cells(signals)
    since = datetime.fromtimestamp(DELIVERED_MS / 1000, UTC).isoformat(timespec="seconds")
    # One row, read across: nothing cut, only the user message wraps (within its own column).
    row = f"error state since (UTC) user message VEHICLE_STATE:UNREACHABLE ERROR {since} {message}"
    assert _cells(errors) == _cells(row)


def test_a_vehicle_known_only_by_its_errors_is_shown(
    env: None, client: redis.Redis, key_prefix: str, *, make_runtime: Callable[..., Runtime], car: Maker
) -> None:
    runtime = make_runtime()
    vehicle = car()
    _unreachable(client, key_prefix, runtime, vehicle)
    result = runner.invoke(app, ["vehicle", "state", vehicle["id"]])
    assert result.exit_code == 0, result.output
    assert "VEHICLE_STATE:UNREACHABLE" in _cells(result.stdout)
    assert "tractionbattery" not in result.stdout
