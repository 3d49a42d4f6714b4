"""Run the simulator inside a test: uvicorn in a thread on a socket bound first (or in the running event
loop); `serve_asgi` serves any small app the same way (`smartcar_simulator.serving`).

    with run_simulator(vehicles=5, seed=1) as sim:
        tokens = sim.control.mint_tokens(vehicle_ids=[sim.vehicle_ids[0]])
        vehicle = Vehicle(sim.vehicle_ids[0], tokens.access_token, origins=sim.origins)

`sim.env` holds the `SMARTCAR_*` variables (origins and credentials) for a subprocess or an SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from smartcar_core.config import Origins
from smartcar_simulator.app import SimulatorApp, create_app
from smartcar_simulator.clock import SimClock
from smartcar_simulator.control_client import SimulatorControl
from smartcar_simulator.serving import START_TIMEOUT, bound_socket, serve_asgi, serve_in_thread, url_of
from smartcar_simulator.settings import SimulatorSettings
from smartcar_simulator.state import Simulator

__all__ = ["RunningSimulator", "run_simulator", "run_simulator_async", "serve_asgi"]


@dataclass(frozen=True, slots=True, repr=False)
class RunningSimulator:
    url: str
    origins: Origins
    control: SimulatorControl
    settings: SimulatorSettings
    app: SimulatorApp

    def __repr__(self) -> str:
        return f"RunningSimulator(url={self.url!r})"

    @property
    def sim(self) -> Simulator:
        """The live state, for in-process tests (the server's loop owns it: prefer the control client)."""
        return self.app.sim

    @property
    def client_id(self) -> str:
        return self.settings.client_id

    @property
    def client_secret(self) -> str:
        return self.settings.client_secret.get_secret_value()

    @property
    def amt(self) -> str:
        return self.settings.signing_amt

    @property
    def vehicle_ids(self) -> list[str]:
        return list(self.app.sim.fleet.vehicles)

    @property
    def env(self) -> dict[str, str]:
        """The environment an SDK or a service needs to talk to this simulator."""
        return {
            "SMARTCAR_API_ORIGIN": self.url,
            "SMARTCAR_AUTH_ORIGIN": f"{self.url}/oauth/token",
            "SMARTCAR_CONNECT_ORIGIN": self.url,
            "SMARTCAR_MANAGEMENT_API_ORIGIN": self.url,
            "SMARTCAR_VEHICLE_API_V3_ORIGIN": self.url,
            "SMARTCAR_CLIENT_ID": self.client_id,
            "SMARTCAR_CLIENT_SECRET": self.client_secret,
            "SMARTCAR_AMT": self.amt,
        }


def _settings(settings: SimulatorSettings | None, overrides: dict[str, Any]) -> SimulatorSettings:
    if settings is None:
        return SimulatorSettings(**overrides)
    return type(settings)(**{**dict(settings), **overrides}) if overrides else settings


def _server(app: SimulatorApp, settings: SimulatorSettings) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        lifespan="on",
        access_log=settings.access_log,
        log_level=settings.log_level,
        ws="none",
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)


def _running(app: SimulatorApp, sock: socket.socket, settings: SimulatorSettings) -> RunningSimulator:
    url = url_of(sock)
    origins = Origins(api=url, auth=url, connect=url, management=url, vehicle_v3=url)
    token = settings.control_token.get_secret_value() if settings.control_token else None
    return RunningSimulator(url, origins, SimulatorControl(url, token=token), settings, app)


@contextlib.contextmanager
def run_simulator(
    settings: SimulatorSettings | None = None, *, clock: SimClock | None = None, **overrides: Any
) -> Iterator[RunningSimulator]:
    """The simulator served by uvicorn in a thread on a free port of 127.0.0.1, stopped on exit.

    Keyword arguments are settings (`vehicles=5, seed=1, latency=0.0, access_token_ttl=7200, ...`).
    """
    chosen = _settings(settings, {"host": "127.0.0.1", "port": 0, **overrides})
    app = create_app(chosen, clock=clock)
    sock = bound_socket(chosen.host)
    running = _running(app, sock, chosen)
    try:
        with serve_in_thread(_server(app, chosen), sock, what="the simulator"):
            yield running
    finally:
        running.control.close()


@contextlib.asynccontextmanager
async def run_simulator_async(
    settings: SimulatorSettings | None = None, *, clock: SimClock | None = None, **overrides: Any
) -> AsyncIterator[RunningSimulator]:
    """The same, served in the running event loop (for async tests; control calls block: use them
    through `asyncio.to_thread`, or talk to `sim.sim` directly)."""
    chosen = _settings(settings, {"host": "127.0.0.1", "port": 0, **overrides})
    app = create_app(chosen, clock=clock)
    sock = bound_socket(chosen.host)
    server = _server(app, chosen)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    running = _running(app, sock, chosen)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start")
            await asyncio.sleep(0.01)
        yield running
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, START_TIMEOUT)
        running.control.close()
        sock.close()
