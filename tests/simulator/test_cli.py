"""`smartcar-simulator` / `python -m smartcar_simulator`: flags over the environment, a clear refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
from typer.testing import CliRunner

from smartcar_simulator.__main__ import cli
from testsupport import free_port, wait_until


def test_bad_settings_are_refused_with_a_clear_message() -> None:
    result = CliRunner().invoke(cli, ["--vehicles", "-3"])
    assert result.exit_code == 2
    assert "vehicles" in result.output
    result = CliRunner().invoke(cli, ["--latency", "gauss:1"])
    assert result.exit_code == 2
    assert "latency" in result.output
    result = CliRunner().invoke(cli, ["--apply-at", "sideways"])
    assert result.exit_code == 2
    assert "apply_at" in result.output
    result = CliRunner().invoke(cli, ["--faults", "[{not json"])
    assert result.exit_code == 2
    assert "--faults is not JSON" in result.output
    result = CliRunner().invoke(cli, ["--rate-limits", '{"per_vehicle": {"limit": 0}}'])
    assert result.exit_code == 2
    assert "per_vehicle" in result.output


def test_the_module_serves_with_flags_over_the_environment() -> None:
    port = free_port()
    env = {**os.environ, "SIMULATOR_VEHICLES": "7", "SIMULATOR_SEED": "3", "SMARTCAR_CLIENT_ID": "from-env"}
    process = subprocess.Popen(  # noqa: S603 - our own module, with our interpreter
        [sys.executable, "-m", "smartcar_simulator", "--port", str(port), "--vehicles", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def health() -> Any:
        assert process.poll() is None, "the simulator exited"
        return httpx.get(f"http://127.0.0.1:{port}/_sim/health").json()

    try:
        answered = wait_until(
            health, timeout=20, what="the simulator to answer", ignoring=(httpx.TransportError,)
        )
        assert answered["vehicles"] == 4  # the flag beats SIMULATOR_VEHICLES
        authorize = httpx.get(
            f"http://127.0.0.1:{port}/oauth/authorize",
            params={"response_type": "code", "client_id": "from-env", "redirect_uri": "http://localhost/cb"},
        )
        assert authorize.status_code == 302  # the client id came from SMARTCAR_CLIENT_ID
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert b"SMARTCAR_API_ORIGIN" in stderr
