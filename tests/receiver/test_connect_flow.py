"""Smartcar Connect through the receiver as a browser goes through it: a real uvicorn, the real simulator's
Connect and token endpoint over HTTP, the real Redis. The tokens end where the workers read them, one
subscribe job per vehicle is asked for, and every state that is not this browser's, fresh and unused is
refused before anything is exchanged (the simulator's record of calls shows no token request)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis
import uvicorn
from cryptography.fernet import Fernet

import smartcar_core as sc
from eventstore.connect import new_token
from eventstore.keys import KeySpace
from eventstore.lifecycle import LifecycleStore
from eventstore.tokens_at_rest import cipher_of, unseal
from receiver.app import create_app
from receiver.settings import ReceiverSettings
from service_base.logs import configure_logging
from smartcar_simulator.serving import SERVE_DEFAULTS, bound_socket, serve_in_thread, url_of
from smartcar_simulator.testing import RunningSimulator, run_simulator
from testsupport import wait_until
from workers.tokens import TokenStore

CONNECT_ERRORS = {  # what the simulator's Connect can be told to answer, and the page's status for each
    "access_denied": 200,
    "no_vehicles": 200,
    "vehicle_incompatible": 200,
    "invalid_subscription": 200,
    "configuration_error": 502,
    "server_error": 502,
}
REFUSED = "This Connect session cannot be finished"


@pytest.fixture(scope="module")
def shared_simulator() -> Iterator[RunningSimulator]:
    with run_simulator(vehicles=8, seed=5) as running:
        yield running


@pytest.fixture
def sim(shared_simulator: RunningSimulator) -> RunningSimulator:
    shared_simulator.control.reset()
    return shared_simulator


@dataclass
class Live:
    """A receiver with Connect on, serving on a real port, and what its tests read back."""

    url: str
    sim: RunningSimulator
    settings: ReceiverSettings
    logs: io.StringIO
    store: redis.Redis
    keys: KeySpace
    key: str

    def browser(self) -> httpx.Client:
        return httpx.Client(timeout=30, trust_env=False)

    def authorize_url(self, browser: httpx.Client, **params: str) -> str:
        """GET /connect (not followed): where it sends the browser, its cookie now in the jar."""
        answer = browser.get(self.url + "/connect", params=params)
        assert answer.status_code == 302, answer.text
        location: str = answer.headers["location"]
        return location

    def connect(self, browser: httpx.Client, **params: str) -> httpx.Response:
        return browser.get(self.url + "/connect", params=params, follow_redirects=True)

    def tokens(self) -> TokenStore:
        return TokenStore(self.store, cipher_of(self.key), keys=self.keys)

    def token_requests(self) -> int:
        return len(self.sim.control.requests(path="oauth/token", method="POST"))

    def metric(self, name: str, label: str, value: str) -> float:
        text = httpx.get(self.url + "/metrics").text
        found = re.search(rf'^{name}{{{label}="{value}"}} (\S+)$', text, re.MULTILINE)
        return float(found[1]) if found else 0.0

    def states_left(self) -> list[Any]:
        return list(self.store.scan_iter(self.keys.connect_state("*")))


@pytest.fixture
def live(
    sim: RunningSimulator,
    make_settings: Callable[..., ReceiverSettings],
    store: redis.Redis,
    keys: KeySpace,
) -> Iterator[Callable[..., Live]]:
    """`live(**settings)`: a receiver with Connect configured against the simulator, until the test ends."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> Live:
            sock = bound_socket()
            url = url_of(sock)
            key = Fernet.generate_key().decode()
            settings = make_settings(
                smartcar_client_id=sim.client_id,
                smartcar_client_secret=sim.client_secret,
                smartcar_redirect_uri=url + "/callback",
                token_encryption_key=key,
                **overrides,
            )
            logs = io.StringIO()
            configure_logging("json", "debug", stream=logs)
            app = create_app(settings, configure_logs=False, origins=sim.origins)
            server = uvicorn.Server(uvicorn.Config(app, **SERVE_DEFAULTS))
            stack.enter_context(serve_in_thread(server, sock, what="the receiver"))
            return Live(url, sim, settings, logs, store, keys, key)

        yield start


def _logged(text: str, **fields: str) -> bool:
    """Whether a JSON line of `text` has each of `fields` (other lines, not JSON, are skipped)."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return any(all(line.get(name) == value for name, value in fields.items()) for line in lines)


def vehicles_on(page: httpx.Response) -> list[str]:
    return re.findall(r"<code>([^<]+)</code>", page.text)


def test_a_browser_connects_and_the_workers_can_use_the_tokens(live: Callable[..., Live]) -> None:
    receiver = live()
    with receiver.browser() as browser:
        page = receiver.connect(browser, user="alice@example.com")
    assert page.status_code == 200, page.text
    assert "Vehicle connected" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    started, at_connect = page.history
    cookie = started.headers["set-cookie"]
    for attribute in ("HttpOnly", "Max-Age=600", "Path=/;", "SameSite=lax"):
        assert attribute in cookie
    assert "Secure" not in cookie  # SMARTCAR_ENV=development: the test's plain http
    code = parse_qs(urlsplit(at_connect.headers["location"]).query)["code"][0]
    state = parse_qs(urlsplit(at_connect.headers["location"]).query)["state"][0]

    vehicles = vehicles_on(page)
    assert vehicles
    assert page.text.count("subscription pending") == len(vehicles)
    tokens = receiver.tokens()
    access = tokens.access_token(vehicles[0])
    assert {tokens.access_token(vehicle).grant_id for vehicle in vehicles} == {access.grant_id}
    vehicle = sc.Vehicle(vehicles[0], access.token, origins=receiver.sim.origins)
    assert vehicle.vin().vin
    info = tokens.info(access.grant_id)
    assert info is not None
    assert sorted(info.vehicles) == sorted(vehicles)
    assert info.user_id == sc.Smartcar(origins=receiver.sim.origins).get_user(access.token).id

    lifecycle = LifecycleStore(receiver.store, receiver.keys)
    jobs = [lifecycle.get("subscribe", vehicle) for vehicle in vehicles]
    assert all(job is not None and job.reason == "connect" and job.user_id == info.user_id for job in jobs)
    assert len(lifecycle.waiting()) == len(vehicles)
    assert receiver.token_requests() == 1
    assert receiver.states_left() == []
    assert receiver.metric("smartcar_connect_total", "outcome", "started") == 1
    assert receiver.metric("smartcar_connect_total", "outcome", "connected") == 1

    pair = tokens.grants.pair(access.grant_id)
    assert pair.data is not None
    refresh = unseal(cipher_of(receiver.key), pair.data).refresh_token
    logs = receiver.logs.getvalue()
    assert _logged(logs, event="connect_completed")
    binding = cookie.partition("=")[2].partition(";")[0]
    for secret in (access.token, refresh, code, state, binding, receiver.sim.client_secret):
        assert secret not in page.text
        assert secret not in logs


def test_the_connect_url_carries_the_configured_options(live: Callable[..., Live]) -> None:
    receiver = live(
        connect_scopes=["read_vin", "read_odometer"],
        connect_mode="simulated",
        connect_single_select=True,
        connect_flags={"country": "DE", "beta": True},
        connect_force_prompt=True,
        connect_user="owner-7",
    )
    fleet_make = receiver.sim.control.vehicles()[0]["make"]
    with receiver.browser() as browser:
        query = parse_qs(urlsplit(receiver.authorize_url(browser)).query)
        assert query["scope"] == ["read_vin read_odometer"]
        assert query["mode"] == ["simulated"]
        assert query["single_select"] == ["true"]
        assert query["flags"] == ["country:DE beta:true"]
        assert query["approval_prompt"] == ["force"]
        assert query["user"] == ["owner-7"]
        assert query["redirect_uri"] == [receiver.settings.smartcar_redirect_uri]
        assert query["client_id"] == [receiver.sim.client_id]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", query["state"][0])
        assert "make" not in query
        given = parse_qs(urlsplit(receiver.authorize_url(browser, user="someone-else")).query)
        assert given["user"] == ["someone-else"]
        page = receiver.connect(browser)
    assert page.status_code == 200
    assert len(vehicles_on(page)) == 1  # single select
    bypass = live(connect_make_bypass=fleet_make)
    with bypass.browser() as browser:
        query = parse_qs(urlsplit(bypass.authorize_url(browser)).query)
        assert query["make"] == [fleet_make]
        assert "scope" not in query  # none configured: the Dashboard's
        assert query["mode"] == ["live"]
        assert query["approval_prompt"] == ["auto"]


def test_a_reconsent_link_asks_again_for_the_one_vehicle_and_finishes_here(live: Callable[..., Live]) -> None:
    """The URL the workers give an owner whose access was lost (`workers.access.reconsent_url`)."""
    receiver = live()
    vin = "5YJ3E1EA7KF000001"
    with receiver.browser() as browser:
        query = parse_qs(urlsplit(receiver.authorize_url(browser, reconsent="1", vin=vin)).query)
        assert query["approval_prompt"] == ["force"]
        assert (query["single_select"], query["single_select_vin"]) == (["true"], [vin])
        without_vin = parse_qs(urlsplit(receiver.authorize_url(browser, reconsent="1")).query)
        assert (without_vin["approval_prompt"], without_vin["single_select"]) == (["force"], ["true"])
        assert "single_select_vin" not in without_vin
        page = receiver.connect(browser, reconsent="1")  # the simulator approves; the callback stores it
        assert page.status_code == 200, page.text
        assert len(vehicles_on(page)) == 1
        for bad in ("5YJ3E1EA7KF00000", "5YJ3E1EA7KF00000I", "<script>alert(1)</script>"):
            answer = browser.get(receiver.url + "/connect", params={"reconsent": "1", "vin": bad})
            assert answer.status_code == 400
            assert "The vin must be 17 letters and digits" in answer.text
            assert "<script>" not in answer.text


def test_forged_malformed_and_missing_states_are_refused_before_any_exchange(
    live: Callable[..., Live],
) -> None:
    receiver = live()
    with receiver.browser() as browser:
        receiver.authorize_url(browser)  # this browser has a cookie, for a state it never brings back
        for query in (
            {"code": "a-code", "state": new_token()},
            {"code": "a-code", "state": "not-a-state"},
            {"code": "a-code"},
            {"error": "access_denied", "state": new_token()},
            {"code": "a-code", "state": "%ff" * 20},
        ):
            answer = browser.get(receiver.url + "/callback", params=query)
            assert answer.status_code == 400, query
            assert REFUSED in answer.text
    assert receiver.token_requests() == 0
    assert receiver.metric("smartcar_connect_total", "outcome", "refused_state") == 5
    logs = receiver.logs.getvalue()
    assert _logged(logs, reason="unknown")
    assert _logged(logs, reason="missing")


def test_a_replayed_callback_is_refused(live: Callable[..., Live]) -> None:
    receiver = live()
    with receiver.browser() as browser:
        page = receiver.connect(browser)
        assert page.status_code == 200
        again = browser.get(str(page.url))
    assert again.status_code == 400
    assert REFUSED in again.text
    assert receiver.token_requests() == 1
    grant = receiver.tokens().access_token(vehicles_on(page)[0]).grant_id
    info = receiver.tokens().info(grant)
    assert info is not None
    assert info.generation == 1


def test_an_expired_state_is_refused(live: Callable[..., Live]) -> None:
    receiver = live()
    with receiver.browser() as browser:
        location = receiver.authorize_url(browser)
        state = parse_qs(urlsplit(location).query)["state"][0]
        key = receiver.keys.connect_state(state)
        receiver.store.pexpire(key, 1)
        wait_until(lambda: not receiver.store.exists(key), timeout=5, what="the state expired")
        answer = browser.get(location, follow_redirects=True)
    assert answer.status_code == 400
    assert REFUSED in answer.text
    assert receiver.token_requests() == 0


def test_another_browsers_cookie_is_refused_and_spends_the_state(live: Callable[..., Live]) -> None:
    receiver = live()
    with receiver.browser() as owner, receiver.browser() as attacker, receiver.browser() as bare:
        location = receiver.authorize_url(owner)
        receiver.authorize_url(attacker)  # a cookie of its own
        assert attacker.get(location, follow_redirects=True).status_code == 400
        assert owner.get(location, follow_redirects=True).status_code == 400  # spent by the first try
        assert bare.get(receiver.authorize_url(owner), follow_redirects=True).status_code == 400
        assert receiver.token_requests() == 0
        # Two tabs of one browser share its cookie: both finish.
        first, second = receiver.authorize_url(owner), receiver.authorize_url(owner)
        assert owner.get(second, follow_redirects=True).status_code == 200
        late = owner.get(first, follow_redirects=True)
        assert late.status_code == 200, (late.text, receiver.logs.getvalue())
    assert _logged(receiver.logs.getvalue(), reason="other_browser")


@pytest.mark.parametrize(("error", "status"), sorted(CONNECT_ERRORS.items()))
def test_each_connect_error_gets_a_clear_page_a_log_line_and_a_metric(
    live: Callable[..., Live], error: str, status: int
) -> None:
    receiver = live()
    with receiver.browser() as browser:
        location = receiver.authorize_url(browser) + f"&sim_error={error}"
        page = browser.get(location, follow_redirects=True)
    assert page.status_code == status
    assert "No vehicle was connected" in page.text
    assert receiver.metric("smartcar_connect_errors_total", "error", error) == 1
    assert receiver.metric("smartcar_connect_total", "outcome", "connect_error") == 1
    assert _logged(receiver.logs.getvalue(), error=error)
    assert receiver.token_requests() == 0


def test_an_unknown_connect_error_is_counted_as_other_and_never_echoed(live: Callable[..., Live]) -> None:
    receiver = live()
    with receiver.browser() as browser:
        state = parse_qs(urlsplit(receiver.authorize_url(browser)).query)["state"][0]
        query = {"state": state, "error": "<b>new</b>", "error_description": "<script>x</script>" * 50}
        page = browser.get(receiver.url + "/callback", params=query)
    assert page.status_code == 502
    assert "<b>new" not in page.text
    assert "script" not in page.text
    assert receiver.metric("smartcar_connect_errors_total", "error", "other") == 1


def test_reconnecting_is_idempotent(live: Callable[..., Live]) -> None:
    receiver = live()
    lifecycle = LifecycleStore(receiver.store, receiver.keys)
    with receiver.browser() as browser:
        first = receiver.connect(browser, user="bob@example.com")
        vehicles = vehicles_on(first)
        grant = receiver.tokens().access_token(vehicles[0]).grant_id
        # Half connected: the tokens are stored, the subscribe jobs were lost.
        for vehicle in vehicles:
            receiver.store.delete(receiver.keys.lifecycle_job("subscribe", vehicle))
        receiver.store.delete(receiver.keys.lifecycle)
        second = receiver.connect(browser, user="bob@example.com")
        third = receiver.connect(browser, user="bob@example.com")
    assert first.status_code == second.status_code == third.status_code == 200
    assert vehicles_on(second) == vehicles_on(third) == vehicles
    info = receiver.tokens().info(grant)
    assert info is not None
    assert info.generation == 3
    assert sorted(info.vehicles) == sorted(vehicles)
    assert len(list(receiver.store.scan_iter(receiver.keys.grant("*")))) == 1
    assert sorted(job.vehicle_id for job, _due in lifecycle.waiting()) == sorted(vehicles)


def test_transient_smartcar_failures_are_retried(live: Callable[..., Live]) -> None:
    receiver = live()
    control = receiver.sim.control
    control.add_fault(path="oauth/token", count=1, kind="http_status", status=503)
    control.add_fault(path="vehicles", count=1, error={"type": "SERVER", "code": "INTERNAL"})
    with receiver.browser() as browser:
        page = receiver.connect(browser)
    assert page.status_code == 200, page.text
    assert receiver.token_requests() == 2
    assert len(control.requests(path="vehicles", method="GET")) == 2


def test_smartcar_failing_for_good_leaves_nothing_and_a_reconnect_works(live: Callable[..., Live]) -> None:
    receiver = live()
    control = receiver.sim.control
    fault = control.add_fault(path="vehicles", error={"type": "SERVER", "code": "INTERNAL"})
    with receiver.browser() as browser:
        page = receiver.connect(browser)
        assert page.status_code == 502
        assert "Smartcar did not answer" in page.text
        assert len(control.requests(path="vehicles", method="GET")) == 3
        assert list(receiver.store.scan_iter(receiver.keys.grant("*"))) == []
        assert receiver.metric("smartcar_connect_total", "outcome", "smartcar_unavailable") == 1
        control.remove_fault(fault)
        assert receiver.connect(browser).status_code == 200
    assert _logged(receiver.logs.getvalue(), event="connect_smartcar_failed")


def test_a_code_smartcar_no_longer_takes_gets_an_expired_page(live: Callable[..., Live]) -> None:
    receiver = live()
    with receiver.browser() as browser:
        at_connect = browser.get(receiver.authorize_url(browser))
        receiver.sim.control.advance_clock(3600)  # past the code's life
        page = browser.get(at_connect.headers["location"])
    assert page.status_code == 400
    assert "This Connect session has expired" in page.text
    assert receiver.token_requests() == 1  # refused, not retried
    assert receiver.metric("smartcar_connect_total", "outcome", "code_refused") == 1


def test_bad_input_gets_a_clear_4xx_page(live: Callable[..., Live]) -> None:
    receiver = live()
    with receiver.browser() as browser:
        for user in ("x" * 256, "line\nbreak"):
            answer = browser.get(receiver.url + "/connect", params={"user": user})
            assert answer.status_code == 400
            assert "This link does not work" in answer.text
        for extra in ({}, {"code": ""}, {"code": "c" * 2000}):
            state = parse_qs(urlsplit(receiver.authorize_url(browser)).query)["state"][0]
            answer = browser.get(receiver.url + "/callback", params={"state": state, **extra})
            assert answer.status_code == 400
            assert "lacks an authorization code" in answer.text
        assert browser.post(receiver.url + "/callback").status_code == 405
        # A HEAD (a link checker's) spends nothing: the owner's GET still finishes.
        location = receiver.authorize_url(browser)
        callback = browser.get(location).headers["location"]
        assert browser.head(callback).status_code == 200
        assert browser.head(receiver.url + "/connect").status_code == 200
        assert browser.get(callback).status_code == 200
    assert receiver.token_requests() == 1
    assert receiver.metric("smartcar_connect_total", "outcome", "bad_request") == 5
