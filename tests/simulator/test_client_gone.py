"""A caller that goes away while its call waits out the latency, and where in that latency a call takes
effect (`apply_at`): every call is recorded (`client_gone`, with the status it would have answered), none
logs an error, and a command reaches the car at the start, the middle or the end of its latency whether
or not its caller is still there."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import pytest

from simulator.support import first
from smartcar_simulator.control_client import ControlCallError, SimulatorControl
from smartcar_simulator.latency import ApplyAt, split
from smartcar_simulator.settings import SimulatorSettings
from smartcar_simulator.state import RecordedRequest
from smartcar_simulator.testing import RunningSimulator, run_simulator
from testsupport import free_port, wait_until

# Sleeps never end early; the simulator's clock (wall time) and a call's duration (perf_counter) are
# read microseconds apart, so a lower bound of a wait holds within this much.
SLACK = 0.05


class Reachable(Protocol):
    """A running simulator as these tests reach it: `run_simulator`'s, or one in another process."""

    @property
    def url(self) -> str: ...

    @property
    def control(self) -> SimulatorControl: ...


@dataclass(frozen=True, slots=True)
class Remote:
    url: str
    control: SimulatorControl


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def simulator_log() -> Iterator[list[logging.LogRecord]]:
    """Every record the simulator logs meanwhile: uvicorn's (where 'Exception in ASGI application'
    goes) and ours, down to debug. Enter it after the simulator started: uvicorn's start-up replaces the
    handlers of its loggers."""
    handler = _Records()
    ours = logging.getLogger("smartcar_simulator")
    loggers = [logging.getLogger("uvicorn.error"), logging.getLogger("uvicorn"), ours]
    level = ours.level
    ours.setLevel(logging.DEBUG)
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        ours.setLevel(level)


def _no_error(records: list[logging.LogRecord]) -> None:
    errors = [r for r in records if r.levelno >= logging.WARNING or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


def _leave_early(simulator: Reachable, method: str, path: str, token: str, **kwargs: Any) -> None:
    """A call whose caller gives up waiting for the answer after 0.2 s and closes its connection, as a
    killed worker's would (connecting and sending may take their time: the call must arrive)."""
    with httpx.Client(timeout=httpx.Timeout(10.0, read=0.2)) as http, pytest.raises(httpx.TimeoutException):
        http.request(method, f"{simulator.url}{path}", headers={"authorization": f"Bearer {token}"}, **kwargs)


def _recorded(simulator: Reachable, vehicle_id: str, sub_path: str) -> RecordedRequest:
    """The one recorded call to this vehicle's path, once it has ended."""
    calls = wait_until(
        lambda: simulator.control.requests(vehicle_id=vehicle_id, path=sub_path),
        timeout=10,
        what=f"the call to {sub_path} in /_sim/requests",
    )
    assert len(calls) == 1, calls
    return calls[0]


def _locked_car(simulator: RunningSimulator) -> tuple[str, str]:
    vehicle_id = first(simulator, "BEV")["id"]
    simulator.control.patch_vehicle(vehicle_id, locked=True, doors_open=False, in_motion=False)
    return vehicle_id, simulator.control.mint_tokens([vehicle_id]).access_token


def _unlocked_at(simulator: Reachable, vehicle_id: str) -> float | None:
    """When the car obeyed the unlock (the simulator's clock), or None while it is still locked."""
    vehicle = simulator.control.vehicle(vehicle_id)
    return None if vehicle["state"]["locked"] else float(vehicle["updated_at"]["locked"])


def test_a_caller_gone_during_the_latency_is_recorded_and_logs_no_error(simulator: RunningSimulator) -> None:
    vehicle_id, token = _locked_car(simulator)
    simulator.control.set_latency(seconds=1.0)
    base = f"/v2.0/vehicles/{vehicle_id}"
    with simulator_log() as records:
        _leave_early(simulator, "POST", f"{base}/security", token, json={"action": "UNLOCK"})
        _leave_early(simulator, "GET", f"{base}/odometer", token)
        command = _recorded(simulator, vehicle_id, "security")
        read = _recorded(simulator, vehicle_id, "odometer")
    assert (command.method, command.status, command.client_gone) == ("POST", 200, True)
    assert (read.method, read.status, read.client_gone) == ("GET", 200, True)
    assert command.duration >= 1.0 - SLACK  # the call waited out its latency without its caller
    _no_error(records)
    gone = [r for r in records if r.name == "smartcar_simulator.gateway"]
    assert [(r.levelno, r.getMessage()) for r in gone] == [(logging.INFO, "simulator_client_gone")] * 2
    as_listed = httpx.get(f"{simulator.url}/_sim/requests", params={"path": "security"}).json()
    assert as_listed["requests"][0]["client_gone"] is True
    stayed = httpx.get(f"{simulator.url}{base}/odometer", headers={"authorization": f"Bearer {token}"})
    assert stayed.status_code == 200
    assert simulator.control.requests(vehicle_id=vehicle_id, path="odometer")[-1].client_gone is False


def test_a_command_applied_at_the_start_reaches_the_car_before_its_caller_leaves(
    simulator: RunningSimulator,
) -> None:
    vehicle_id, token = _locked_car(simulator)
    simulator.control.set_latency(seconds=30)  # far longer than the test waits: only `start` passes
    assert simulator.control.set_apply_at("start") == "start"
    with simulator_log() as records:
        _leave_early(
            simulator, "POST", f"/v2.0/vehicles/{vehicle_id}/security", token, json={"action": "UNLOCK"}
        )
        wait_until(lambda: _unlocked_at(simulator, vehicle_id), timeout=5, what="the car to unlock")
        call = _recorded(simulator, vehicle_id, "security")
    assert (call.status, call.client_gone) == (200, True)
    assert call.duration < 30  # with its caller gone, nobody is left to wait for the answer
    _no_error(records)


@pytest.mark.parametrize("apply_at", ["middle", "end"])
def test_a_command_reaches_the_car_at_its_point_even_after_its_caller_left(
    simulator: RunningSimulator, apply_at: ApplyAt
) -> None:
    """The ambiguous case: the caller gave up (at 0.2 s), the car obeyed later (at 0.6 or 1.2 s)."""
    vehicle_id, token = _locked_car(simulator)
    simulator.control.set_latency(seconds=1.2)
    simulator.control.set_apply_at(apply_at)
    with simulator_log() as records:
        _leave_early(
            simulator, "POST", f"/v2.0/vehicles/{vehicle_id}/security", token, json={"action": "UNLOCK"}
        )
        call = _recorded(simulator, vehicle_id, "security")
    assert (call.status, call.client_gone) == (200, True)
    unlocked_at = _unlocked_at(simulator, vehicle_id)
    assert unlocked_at is not None
    before, _after = split(1.2, apply_at)
    assert unlocked_at - (call.time - call.duration) >= before - SLACK
    _no_error(records)


@pytest.mark.parametrize("apply_at", ["start", "middle", "end"])
def test_a_command_takes_effect_at_its_point_of_the_latency_and_is_answered_at_the_end(
    simulator: RunningSimulator, apply_at: ApplyAt
) -> None:
    vehicle_id, token = _locked_car(simulator)
    latency = 0.6
    simulator.control.set_latency(seconds=latency)
    simulator.control.set_apply_at(apply_at)
    answer = httpx.post(
        f"{simulator.url}/v2.0/vehicles/{vehicle_id}/security",
        json={"action": "UNLOCK"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200
    call = _recorded(simulator, vehicle_id, "security")
    assert call.client_gone is False
    unlocked_at = _unlocked_at(simulator, vehicle_id)
    assert unlocked_at is not None
    before, after = split(latency, apply_at)
    assert unlocked_at - (call.time - call.duration) >= before - SLACK  # not earlier than its point
    assert call.time - unlocked_at >= after - SLACK  # and the answer waited for the rest


def test_a_drop_leaves_when_the_answer_would_and_a_gone_caller_is_not_dropped(
    simulator: RunningSimulator,
) -> None:
    vehicle_id, token = _locked_car(simulator)
    control = simulator.control
    control.set_latency(seconds=0.5)
    control.set_apply_at("start")
    control.add_fault(vehicle_id=vehicle_id, path="security", count=2, kind="drop", after_effect=True)
    started = time.perf_counter()
    with pytest.raises(httpx.TransportError):
        httpx.post(
            f"{simulator.url}/v2.0/vehicles/{vehicle_id}/security",
            json={"action": "UNLOCK"},
            headers={"authorization": f"Bearer {token}"},
        )
    assert time.perf_counter() - started >= 0.5 - SLACK  # closed at the end of the latency
    assert _unlocked_at(simulator, vehicle_id) is not None  # the command took effect at the start
    dropped = _recorded(simulator, vehicle_id, "security")
    assert (dropped.status, dropped.client_gone) == (None, False)
    control.clear_requests()
    control.patch_vehicle(vehicle_id, locked=True)
    control.set_latency(seconds=1.0)  # the caller leaves (0.2 s) well before the drop would (1 s)
    _leave_early(simulator, "POST", f"/v2.0/vehicles/{vehicle_id}/security", token, json={"action": "UNLOCK"})
    gone = _recorded(simulator, vehicle_id, "security")
    assert (gone.status, gone.client_gone) == (None, True)


def test_a_caller_gone_before_its_body_arrived_is_recorded_and_changes_nothing(
    simulator: RunningSimulator,
) -> None:
    vehicle_id, token = _locked_car(simulator)
    host, port = simulator.url.removeprefix("http://").split(":")
    head = (
        f"POST /v2.0/vehicles/{vehicle_id}/security HTTP/1.1\r\nhost: {host}\r\n"
        f"authorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
    )
    with simulator_log() as records:
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(head.encode() + b'{"action": ')  # 11 of the 100 bytes announced, then gone
        call = _recorded(simulator, vehicle_id, "security")
    assert (call.status, call.client_gone) == (None, True)
    assert _unlocked_at(simulator, vehicle_id) is None
    _no_error(records)


def test_a_body_longer_than_the_limit_is_drained_while_the_call_waits() -> None:
    with run_simulator(vehicles=2, seed=1, latency=0.3, max_body_bytes=1000) as simulator:
        vehicle_id = simulator.vehicle_ids[0]
        token = simulator.control.mint_tokens([vehicle_id]).access_token
        refused = httpx.post(
            f"{simulator.url}/v2.0/vehicles/{vehicle_id}/security",
            content=b"x" * 200_000,
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        assert (refused.status_code, refused.json()["type"]) == (400, "VALIDATION")
        assert simulator.control.requests()[0].client_gone is False


def test_apply_at_is_a_setting_the_control_endpoint_changes_and_reset_restores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SimulatorSettings().apply_at == "end"
    monkeypatch.setenv("SIMULATOR_APPLY_AT", "middle")
    assert SimulatorSettings().apply_at == "middle"
    with pytest.raises(ValueError, match="apply_at"):
        SimulatorSettings(apply_at="sometime")
    with run_simulator(vehicles=1, apply_at="start") as simulator:
        control = simulator.control
        assert control.apply_at() == "start"
        assert control.set_apply_at("end") == "end"
        assert control.apply_at() == "end"
        with pytest.raises(ControlCallError) as refused:
            control.set_apply_at("later")  # type: ignore[arg-type]
        assert refused.value.status_code == 400
        control.reset()
        assert control.apply_at() == "start"


def test_the_command_line_serves_apply_at_and_logs_no_error_for_a_gone_caller() -> None:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own module, with our interpreter
        [
            sys.executable,
            "-m",
            "smartcar_simulator",
            "--port",
            str(port),
            "--vehicles",
            "2",
            "--latency",
            "30",
            "--apply-at",
            "start",
            "--log-level",
            "info",
        ],
        env={**os.environ, "SIMULATOR_APPLY_AT": "end"},  # the flag wins
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def health() -> Any:
        assert process.poll() is None, "the simulator exited"
        return httpx.get(f"{url}/_sim/health").json()

    try:
        wait_until(health, timeout=20, what="the simulator to answer", ignoring=(httpx.TransportError,))
        with SimulatorControl(url) as control:
            simulator = Remote(url, control)
            assert control.apply_at() == "start"
            vehicle_id = control.vehicles()[0]["id"]
            control.patch_vehicle(vehicle_id, locked=True, doors_open=False, in_motion=False)
            token = control.mint_tokens([vehicle_id]).access_token
            _leave_early(
                simulator, "POST", f"/v2.0/vehicles/{vehicle_id}/security", token, json={"action": "UNLOCK"}
            )
            call = _recorded(simulator, vehicle_id, "security")
            assert (call.status, call.client_gone) == (200, True)
            assert _unlocked_at(simulator, vehicle_id) is not None
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    log = stderr.decode()
    assert "Application startup complete" in log  # the log at info level was captured
    for sign_of_an_error in ("Traceback", "Exception in ASGI application", "ClientDisconnect", "ERROR"):
        assert sign_of_an_error not in log
