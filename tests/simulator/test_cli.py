"""`smartcar-simulator` / `python -m smartcar_simulator`: flags over the environment, a clear refusal."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

from smartcar_simulator.__main__ import cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_bad_settings_are_refused_with_a_clear_message() -> None:
    result = CliRunner().invoke(cli, ["--vehicles", "-3"])
    assert result.exit_code == 2
    assert "vehicles" in result.output
    result = CliRunner().invoke(cli, ["--latency", "gauss:1"])
    assert result.exit_code == 2
    assert "latency" in result.output
    result = CliRunner().invoke(cli, ["--faults", "[{not json"])
    assert result.exit_code == 2
    assert "--faults is not JSON" in result.output
    result = CliRunner().invoke(cli, ["--rate-limits", '{"per_vehicle": {"limit": 0}}'])
    assert result.exit_code == 2
    assert "per_vehicle" in result.output


def test_the_module_serves_with_flags_over_the_environment() -> None:
    port = _free_port()
    env = {**os.environ, "SIMULATOR_VEHICLES": "7", "SIMULATOR_SEED": "3", "SMARTCAR_CLIENT_ID": "from-env"}
    process = subprocess.Popen(  # noqa: S603 - our own module, with our interpreter
        [sys.executable, "-m", "smartcar_simulator", "--port", str(port), "--vehicles", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        health = None
        while health is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_sim/health").json()
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        assert health["vehicles"] == 4  # the flag beats SIMULATOR_VEHICLES
        authorize = httpx.get(
            f"http://127.0.0.1:{port}/oauth/authorize",
            params={"response_type": "code", "client_id": "from-env", "redirect_uri": "http://localhost/cb"},
        )
        assert authorize.status_code == 302  # the client id came from SMARTCAR_CLIENT_ID
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert b"SMARTCAR_API_ORIGIN" in stderr
