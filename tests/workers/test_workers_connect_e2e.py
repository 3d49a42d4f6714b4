"""The whole Connect round trip as a browser does it, through to the subscriptions: the receiver's
/connect and /callback, the simulator's Connect approving, the tokens stored, and the subscribe jobs
run by a real worker and beat, until the simulator lists every connected vehicle as subscribed."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import uvicorn

from eventstore.fleet import FleetStore, VehicleStatus
from eventstore.keys import KeySpace
from receiver.app import create_app
from receiver.settings import ReceiverSettings
from smartcar_simulator.serving import SERVE_DEFAULTS, bound_socket, serve_in_thread, url_of
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.workers import WorkerLauncher

WEBHOOK_ID = "wh-test"
AMT = "amt-e2e-0123456789"


def test_a_browser_connects_and_the_workers_subscribe_its_vehicles(
    sim: RunningSimulator, launch: Callable[..., WorkerLauncher], module_prefix: str
) -> None:
    prefix = f"{module_prefix}connect-e2e:"
    launcher = launch(
        event_key_prefix=prefix,
        queue=f"{prefix}queue",
        broker_key_prefix=prefix,
        origins=sim.origins,
        smartcar_client_id=sim.client_id,
        smartcar_client_secret=sim.client_secret,
        smartcar_webhook_id=WEBHOOK_ID,
        smartcar_amt=sim.amt,
        lifecycle_interval=0.5,
        reconcile_interval=0,
    )
    launcher.start("lifecycle")
    launcher.start_beat()
    sock = bound_socket()
    url = url_of(sock)
    settings = ReceiverSettings(
        smartcar_amt=AMT,
        redis_url=launcher.settings.redis_url,
        event_key_prefix=prefix,
        smartcar_client_id=sim.client_id,
        smartcar_client_secret=sim.client_secret,
        smartcar_redirect_uri=url + "/callback",
        token_encryption_key=launcher.settings.token_encryption_key.get_secret_value(),
        gc_freeze=False,
    )
    app = create_app(settings, configure_logs=False, origins=sim.origins)
    with serve_in_thread(uvicorn.Server(uvicorn.Config(app, **SERVE_DEFAULTS)), sock, what="the receiver"):
        with httpx.Client(timeout=30, trust_env=False) as browser:
            page = browser.get(url + "/connect", follow_redirects=True)
        assert page.status_code == 200, page.text
        vehicles = re.findall(r"<code>([^<]+)</code>", page.text)
        assert vehicles
        assert page.text.count("subscription pending") == len(vehicles)

        def subscribed() -> set[str]:
            return set(sim.sim.subscriptions.get(WEBHOOK_ID, set()))

        wait_until(lambda: subscribed() >= set(vehicles), timeout=30, what="the workers' subscribes")
    fleet = FleetStore(launcher.client, KeySpace(prefix))
    for vehicle_id in vehicles:
        known = fleet.get(vehicle_id)
        assert known is not None
        assert (known.status, known.webhook_id) == (VehicleStatus.SUBSCRIBED, WEBHOOK_ID)
        assert launcher.tokens.access_token(vehicle_id).token  # the workers read what the callback stored
