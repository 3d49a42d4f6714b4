"""`create_app(settings)`: the simulated Smartcar as one Starlette app on one port.

Connect, the token endpoint, API v1/v2, v3, the management API and the `/_sim/` control endpoints all
answer here, so every `SMARTCAR_*_ORIGIN` variable can point at the same URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from smartcar_simulator.api_v2 import ROUTES as V2_ROUTES
from smartcar_simulator.api_v3 import ROUTES as V3_ROUTES
from smartcar_simulator.auth import ROUTES as AUTH_ROUTES
from smartcar_simulator.clock import SimClock
from smartcar_simulator.compatibility import ROUTES as COMPATIBILITY_ROUTES
from smartcar_simulator.control import ROUTES as CONTROL_ROUTES
from smartcar_simulator.control_webhooks import ROUTES as WEBHOOK_CONTROL_ROUTES
from smartcar_simulator.errors import not_found
from smartcar_simulator.gateway import Ctx, api
from smartcar_simulator.management import ROUTES as MANAGEMENT_ROUTES
from smartcar_simulator.settings import SimulatorSettings
from smartcar_simulator.state import Simulator
from smartcar_simulator.webhooks import WebhookHub

logger = logging.getLogger(__name__)
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def _unknown_path(_ctx: Ctx) -> Response:
    raise not_found()


class SimulatorApp(Starlette):
    """Starlette, plus two things Smartcar's clients need: paths answer with or without a trailing slash
    (the SDKs differ), and the server connection is remembered so that a fault can drop it."""

    sim: Simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = {**scope, "path": path.rstrip("/") or "/"}
            # uvicorn's send is a method of the request's cycle, which holds the transport.
            scope["sim.cycle"] = getattr(send, "__self__", None)
        await super().__call__(scope, receive, send)


def routes() -> list[BaseRoute]:
    return [
        *CONTROL_ROUTES,
        *WEBHOOK_CONTROL_ROUTES,
        *AUTH_ROUTES,
        *V3_ROUTES,
        *COMPATIBILITY_ROUTES,
        *MANAGEMENT_ROUTES,
        *V2_ROUTES,
        Route("/{path:path}", api(_unknown_path, auth="none", rate_limited=False), methods=ALL_METHODS),
    ]


def create_app(settings: SimulatorSettings | None = None, *, clock: SimClock | None = None) -> SimulatorApp:
    """The simulator app; `app.sim` is its state (fleet, tokens, faults...), also `app.state.sim`."""
    settings = settings or SimulatorSettings()
    sim = Simulator(settings, clock=clock)
    hub = WebhookHub(sim)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        ticker = asyncio.get_running_loop().create_task(_tick(sim, hub))
        await hub.start()
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await hub.aclose()

    app = SimulatorApp(routes=routes(), lifespan=lifespan)
    app.state.sim = sim
    app.state.webhooks = hub
    app.sim = sim
    return app


async def _tick(sim: Simulator, hub: WebhookHub) -> None:
    """Move charging vehicles along; their subscribed signals' changes are emitted by the hub."""
    while True:
        await asyncio.sleep(sim.settings.tick_seconds)
        try:
            if hub.has_subscribers():
                for vehicle in sim.fleet.advance_all():
                    sim.changed(vehicle, "charging")
        except Exception:  # the ticker must survive a bad webhook configuration
            logger.exception("simulator_tick_failed")
