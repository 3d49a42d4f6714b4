"""The admin HTTP API against real Redis: off by default (the process exits 78 with one line), the bearer
token missing / wrong / right, every route's answer and its 4xx, a replay planned and started through the
API and seen planned, running and done (run by an in-process `ReplayRunner`, as a worker runs it), pause
then resume, a Redis that does not answer (503), and the process itself on a real socket."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import structlog

from eventstore.client import connect
from eventstore.events import EventStore
from eventstore.keys import KeySpace
from eventstore.pauses import Pauses, PauseState
from eventstore.replays import ReplayStore
from service_base.settings import SettingsError
from testsupport import free_port, wait_until
from testsupport.workers import ended_event, settings_environment
from workers.admin_api import OFF, AdminSettings, create_app
from workers.replay import ReplayRunner
from workers.settings import WorkerSettings

TOKEN = "admin-test-token-0123456789abcdef-XYZ"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
ASLEEP = {"class": "VehicleStateError", "type": "VEHICLE_STATE", "code": "ASLEEP", "status": 409}
BILLING = {"class": "BillingError", "type": "BILLING", "code": "VEHICLE_LIMIT", "status": 429}
MINUTE = 60.0
V1 = "/admin/v1"
Params = dict[str, str | list[str]]


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _app(settings: WorkerSettings, client: redis.Redis, **admin: Any) -> httpx.AsyncClient:
    """The app (over httpx's ASGI transport: no socket), on `client`; `admin`: its settings."""
    values: dict[str, Any] = {"token": TOKEN, **admin}
    app = create_app(AdminSettings(**values), settings, client)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("192.0.2.7", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://admin")


@pytest.fixture
async def api(settings: WorkerSettings, client: redis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with _app(settings, client) as http:
        http.headers.update(RIGHT)
        yield http


@pytest.fixture
def fleet(client: redis.Redis, key_prefix: str) -> dict[str, str]:
    """Four events, ended by the store's own transitions at known times before now."""
    store = EventStore(client, KeySpace(key_prefix), retention=3600)
    now = time.time()
    made = functools.partial(ended_event, store, user="u1", webhook="wh1")
    return {
        "done": made(at=now - 90 * MINUTE, vehicle="v1", end="done"),
        "asleep": made(at=now - 60 * MINUTE, vehicle="v1", end="dead", error=ASLEEP, reason="gave up"),
        "billing": made(at=now - 30 * MINUTE, vehicle="v2", end="dead", error=BILLING, reason="never"),
        "received": made(at=now - 1 * MINUTE, vehicle="v2", end=None),
    }


def _ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [event["id"] for event in answer.json()["events"]]


def _problem(answer: httpx.Response, status: int, *words: str) -> str:
    """The error of a 4xx answer, checked to be JSON naming every one of `words`."""
    assert answer.status_code == status, answer.text
    message = str(answer.json()["error"])
    assert all(word in message for word in words), message
    assert "Traceback" not in answer.text
    return message


# ---- off by default, and the token ------------------------------------------------------------------


def _run_module(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ADMIN_")}
    return subprocess.run(
        [sys.executable, "-m", "workers.admin_api"],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_off_by_default_the_process_exits_78_with_one_line(tmp_path: Path) -> None:
    done = _run_module({}, tmp_path)
    assert (done.returncode, done.stderr, done.stdout) == (78, f"{OFF}\n", "")
    assert _run_module({"ADMIN_TOKEN": ""}, tmp_path).stderr == f"{OFF}\n"  # set empty: still off


def test_a_short_token_is_refused_in_one_line_that_does_not_echo_it(tmp_path: Path) -> None:
    done = _run_module({"ADMIN_TOKEN": "short-secret-value"}, tmp_path)
    assert done.returncode == 78
    [line] = done.stderr.splitlines()
    assert "ADMIN_TOKEN" in line
    assert "at least 32 characters" in line
    assert "short-secret-value" not in done.stderr


def test_the_app_is_not_built_without_a_token(settings: WorkerSettings, client: redis.Redis) -> None:
    with pytest.raises(SettingsError, match="the admin API is off"):
        create_app(AdminSettings(token=None), settings, client)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/events"),
        ("GET", "/events/some-id"),
        ("POST", "/replays/plan"),
        ("POST", "/replays"),
        ("GET", "/replays/some-job"),
        ("POST", "/replays/some-job/cancel"),
        ("GET", "/stats"),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("GET", "/no-such-route"),
    ],
)
async def test_every_route_wants_the_token_and_missing_and_wrong_look_alike(
    settings: WorkerSettings, client: redis.Redis, method: str, path: str
) -> None:
    async with _app(settings, client) as http:
        answers = [
            (await http.request(method, V1 + path, headers=headers))
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token"},
                {"Authorization": f"Bearer {TOKEN}x"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": TOKEN},
            )
        ]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.content == answers[0].content  # no hint of which was wrong
        assert TOKEN not in answer.text
    assert "Bearer" in answers[0].json()["error"]
    assert Pauses(client, KeySpace(settings.event_key_prefix)).current() is None  # nothing was done


async def test_the_right_token_passes_and_healthz_needs_none(
    api: httpx.AsyncClient, settings: WorkerSettings
) -> None:
    assert (await api.get(f"{V1}/events")).status_code == 200
    assert (await api.get(f"{V1}/events", headers={"Authorization": f"bearer  {TOKEN}"})).status_code == 200
    assert (await api.get("/healthz", headers={"Authorization": ""})).json() == {"status": "ok"}
    _problem(await api.get(f"{V1}/no-such-route"), 404, "Not Found")
    _problem(await api.delete(f"{V1}/events"), 405, "Method Not Allowed")


# ---- events -----------------------------------------------------------------------------------------

FILTERS = [
    ({"status": "failed"}, ["billing", "asleep"]),
    ({"status": ["failed", "done"]}, ["billing", "asleep", "done"]),
    ({"vehicle": "v1"}, ["asleep", "done"]),
    ({"error_type": "VEHICLE_STATE", "error_code": "ASLEEP"}, ["asleep"]),
    ({"reason": "GAVE"}, ["asleep"]),
    ({"since": "45m"}, ["received", "billing"]),
    ({"until": "45m", "type": "VEHICLE_STATE"}, ["asleep", "done"]),
    ({}, ["received", "billing", "asleep", "done"]),
]


@pytest.mark.parametrize(("params", "expected"), FILTERS, ids=[json.dumps(f[0]) for f in FILTERS])
async def test_events_take_the_filters_of_events_list(
    api: httpx.AsyncClient, fleet: dict[str, str], params: Params, expected: list[str]
) -> None:
    assert _ids(await api.get(f"{V1}/events", params=params)) == [fleet[name] for name in expected]


async def test_events_page_with_a_cursor_and_answer_the_cli_summary(
    api: httpx.AsyncClient, fleet: dict[str, str]
) -> None:
    first = (await api.get(f"{V1}/events", params={"limit": 3})).json()
    assert [event["id"] for event in first["events"]] == [fleet[n] for n in ("received", "billing", "asleep")]
    billing = first["events"][1]
    assert billing["status"] == "failed"
    assert billing["error"] == {
        "class": "BillingError",
        "type": "BILLING",
        "code": "VEHICLE_LIMIT",
        "status": 429,
    }
    assert billing["dead_reason"] == "never"
    rest = (await api.get(f"{V1}/events", params={"limit": 3, "cursor": first["cursor"]})).json()
    assert ([event["id"] for event in rest["events"]], rest["cursor"]) == ([fleet["done"]], None)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"status": "dead"}, ["status", "expected one of", "'dead'"]),
        ({"since": "soon"}, ["since", "a duration like 2h or an ISO time", "'soon'"]),
        ({"since": "1h", "until": "2h"}, ["since: after until"]),
        ({"error_code": "ASLEEP"}, ["error_code: give error_type too"]),
        ({"limit": "5000"}, ["limit", "1000"]),
        ({"limit": "many"}, ["limit", "integer"]),
        ({"cursor": "nonsense"}, ["cursor", "not a cursor"]),
        ({"colour": "red"}, ["colour", "not permitted"]),
        ({"type": ["A", "B"]}, ["type: given more than once"]),
    ],
)
async def test_bad_event_filters_are_a_400_naming_the_problem(
    api: httpx.AsyncClient, params: Params, words: list[str]
) -> None:
    _problem(await api.get(f"{V1}/events", params=params), 400, *words)


async def test_an_event_shown_whole_and_an_unknown_one_is_404(
    api: httpx.AsyncClient, fleet: dict[str, str]
) -> None:
    shown = (await api.get(f"{V1}/events/{fleet['asleep']}")).json()
    assert shown["record"]["status"] == "failed"
    assert shown["payload"]["eventId"] == fleet["asleep"]
    assert [entry["outcome"] for entry in shown["attempts"]] == ["dead"]
    assert shown["commands"] == {}
    _problem(await api.get(f"{V1}/events/no-such-event"), 404, "no event no-such-event")


# ---- replays ----------------------------------------------------------------------------------------


async def test_a_replay_planned_started_and_seen_running_then_done(
    api: httpx.AsyncClient, fleet: dict[str, str], settings: WorkerSettings, client: redis.Redis
) -> None:
    failed = [fleet["billing"], fleet["asleep"]]
    plan = await api.post(f"{V1}/replays/plan", json={"ids": [*failed, fleet["done"], "gone"], "rate": 20})
    assert plan.status_code == 200, plan.text
    assert plan.json()["events"] == 2
    assert plan.json()["by_error"] == {"BILLING:VEHICLE_LIMIT": 1, "VEHICLE_STATE:ASLEEP": 1}
    assert set(plan.json()["skipped"]) == {
        "done (since it failed, or never failed)",
        "not stored (never received, or past its retention)",
    }
    by_filter = (await api.post(f"{V1}/replays/plan", json={"filter": {"vehicle": "v2"}})).json()
    assert (by_filter["events"], by_filter["estimated_seconds"]) == (1, 0.1)  # failed only, at 10/s

    with structlog.testing.capture_logs() as logs:
        started = await api.post(f"{V1}/replays", json={"filter": {"since": "2h"}, "rate": 50})
    assert started.status_code == 201, started.text
    job_id = started.json()["job"]
    assert (started.json()["events"], started.json()["workers_asked"]) == (2, True)
    assert started.json()["status"]["status"] == "planned"
    assert started.json()["status"]["reason"] == "operator replay (admin API)"
    [audit] = [line for line in logs if line["event"] == "admin_replay_started"]
    assert (audit["job"], audit["events"], audit["rate"]) == (job_id, 2, 50.0)
    assert TOKEN not in json.dumps(logs)

    again = await api.post(f"{V1}/replays", json={"ids": failed})
    _problem(again, 409, "nothing to replay")
    assert again.json()["plan"]["skipped"] == {f"already in replay {job_id}": 2}

    runner = ReplayRunner(ReplayStore(client, KeySpace(settings.event_key_prefix)), settings)
    job = runner.replays.take(job_id, owner=runner.owner, lease=30)
    assert job is not None
    assert (await api.get(f"{V1}/replays/{job_id}")).json()["status"] == "running"
    assert runner.run(job).finished
    status = (await api.get(f"{V1}/replays/{job_id}")).json()
    assert (status["status"], status["done"], status["total"]) == ("done", 2, 2)
    assert status["counts"]["replayed"] == 2
    _problem(await api.post(f"{V1}/replays/{job_id}/cancel"), 409, "had ended (done): nothing to cancel")


async def test_a_replay_job_cancelled_through_the_api(api: httpx.AsyncClient, fleet: dict[str, str]) -> None:
    job_id = (
        await api.post(f"{V1}/replays", json={"ids": [fleet["asleep"]], "resend_commands": True})
    ).json()["job"]
    with structlog.testing.capture_logs() as logs:
        cancelled = await api.post(f"{V1}/replays/{job_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["resend_commands"]) == ("cancelled", True)
    assert [line["job"] for line in logs if line["event"] == "admin_replay_cancelled"] == [job_id]
    _problem(await api.post(f"{V1}/replays/no-such-job/cancel"), 404, "no replay job no-such-job")
    _problem(await api.get(f"{V1}/replays/no-such-job"), 404, "no replay job no-such-job")


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({}, 400, ["nothing selected", "since 2h or error_type"]),
        ({"ids": ["a"], "filter": {"since": "1h"}}, 400, ["ids or a filter, not both"]),
        ({"ids": ["a"], "rate": 0}, 400, ["rate: expected events a second above 0"]),
        ({"filter": {"status": "dead"}}, 400, ["status: expected one of"]),
        ({"filter": {"since": "yesterday"}}, 400, ["since: expected a duration"]),
        ({"filter": {"colour": "red"}}, 400, ["filter.colour", "not permitted"]),
        ({"ids": "abc"}, 400, ["ids", "list"]),
        ({"ids": ["a"], "limit": 0}, 400, ["limit"]),
        ({"ids": ["a"], "yes": True}, 400, ["yes", "not permitted"]),
        ({"ids": ["missing"]}, 409, ["nothing to replay"]),
    ],
)
async def test_bad_replay_requests_are_a_4xx_naming_the_problem(
    api: httpx.AsyncClient, body: dict[str, object], status: int, words: list[str]
) -> None:
    path = "/replays/plan" if status == 400 else "/replays"
    _problem(await api.post(V1 + path, json=body), status, *words)


async def test_a_body_that_is_not_a_json_object_or_too_large_is_refused(
    settings: WorkerSettings, client: redis.Redis
) -> None:
    async with _app(settings, client, max_body_bytes=2048) as http:
        http.headers.update(RIGHT)
        _problem(await http.post(f"{V1}/replays/plan", content=b"{not json"), 400, "not JSON")
        _problem(await http.post(f"{V1}/replays/plan", json=["a"]), 400, "a JSON object")
        big = json.dumps({"ids": ["x" * 100] * 30}).encode()
        _problem(await http.post(f"{V1}/replays/plan", content=big), 413, "over 2048 bytes")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it is read
            for start in range(0, len(big), 512):
                yield big[start : start + 512]

        _problem(await http.post(f"{V1}/replays/plan", content=chunks()), 413, "over 2048 bytes")


# ---- stats, pause, resume ---------------------------------------------------------------------------


async def test_pause_then_resume_globally_and_per_vehicle(
    api: httpx.AsyncClient, settings: WorkerSettings, client: redis.Redis
) -> None:
    pauses = Pauses(client, KeySpace(settings.event_key_prefix))
    with structlog.testing.capture_logs() as logs:
        assert (await api.post(f"{V1}/pause", json={"reason": "maintenance"})).json()["paused"] == "global"
        paused = pauses.current()
        assert paused is not None
        assert (paused.state, paused.reason) == (PauseState.PAUSED, "maintenance")
        assert (await api.get(f"{V1}/stats")).json()["pause"]["global"]["reason"] == "maintenance"
        resumed = (await api.post(f"{V1}/resume", json={"rate": 5})).json()
        assert resumed == {"resumed": "global", "was_paused": True, "rate": 5.0}
        drain = pauses.current()
        assert drain is not None
        assert (drain.state, drain.rate) == (PauseState.DRAINING, 5.0)
        assert (await api.post(f"{V1}/resume", json={})).json()["was_paused"] is True
        assert pauses.current() is None

        assert (await api.post(f"{V1}/pause", json={"vehicle": ["v1", "v2", "v1"]})).json()["paused"] == [
            "v1",
            "v2",
        ]
        assert set(pauses.paused_vehicles()) == {"v1", "v2"}
        answer = (await api.post(f"{V1}/resume", json={"vehicle": "v1", "rate": 2})).json()
        assert answer == {"resumed": ["v1"], "released": 0, "rate": 2.0}
        assert set(pauses.paused_vehicles()) == {"v2"}
    events = [(line["event"], line.get("vehicles")) for line in logs if line["event"].startswith("admin_")]
    assert events == [
        ("admin_paused", None),
        ("admin_resumed", None),
        ("admin_resumed", None),
        ("admin_paused", ["v1", "v2"]),
        ("admin_resumed", ["v1"]),
    ]
    _problem(await api.post(f"{V1}/resume", json={"rate": 0}), 400, "rate: a rate must be more than 0")
    _problem(await api.post(f"{V1}/pause", json={"rate": 3}), 400, "rate: a rate is for resume")
    _problem(await api.post(f"{V1}/resume", json={"reason": "x"}), 400, "reason: a reason is for pause")
    _problem(await api.post(f"{V1}/pause", json={"vehicle": ["bad id"]}), 400, "not a vehicle id: 'bad id'")
    _problem(await api.post(f"{V1}/pause", json={"vehicles": ["v1"]}), 400, "vehicles", "not permitted")
    assert set(pauses.paused_vehicles()) == {"v2"}  # the refused requests changed nothing


async def test_stats_answer_the_cli_figures(api: httpx.AsyncClient, fleet: dict[str, str]) -> None:
    found = (await api.get(f"{V1}/stats", params={"sample": 10})).json()
    assert (found["statuses"]["failed"], found["statuses"]["done"], found["statuses"]["received"]) == (
        2,
        1,
        1,
    )
    assert found["dead_by_error"] == {"BILLING:VEHICLE_LIMIT": 1, "VEHICLE_STATE:ASLEEP": 1}
    assert found["backlog"]["dead_letters"] == 2
    _problem(await api.get(f"{V1}/stats", params={"sample": 0}), 400, "sample")
    _problem(await api.get(f"{V1}/stats", params={"colour": "red"}), 400, "colour")


async def test_a_redis_that_does_not_answer_is_a_503_in_one_line(settings: WorkerSettings) -> None:
    nowhere = connect(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    try:
        async with _app(settings, nowhere) as http:
            http.headers.update(RIGHT)
            _problem(await http.get(f"{V1}/stats"), 503, "did not answer")
            _problem(await http.get(f"{V1}/events"), 503, "did not answer")
            _problem(await http.post(f"{V1}/pause"), 503, "did not answer")
            assert (await http.get("/healthz")).status_code == 200
    finally:
        nowhere.close()


# ---- the process, on a real socket ------------------------------------------------------------------


def test_the_process_serves_its_own_port_with_the_token(
    settings: WorkerSettings, client: redis.Redis, fleet: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **settings_environment(settings),
        "ADMIN_TOKEN": TOKEN,
        "ADMIN_PORT": str(port),
        "LOG_FORMAT": "json",
    }
    log_path = tmp_path / "admin.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ADMIN_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.admin_api"],
            env={**clean, **env},
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=30, interval=0.1, what="the admin API's /healthz")
        assert httpx.get(f"{base}{V1}/events", timeout=5).status_code == 401
        listed = httpx.get(f"{base}{V1}/events", params={"status": "failed"}, headers=RIGHT, timeout=5)
        assert _ids(listed) == [fleet["billing"], fleet["asleep"]]
        assert httpx.post(f"{base}{V1}/pause", json={}, headers=RIGHT, timeout=5).status_code == 200
        assert Pauses(client, KeySpace(settings.event_key_prefix)).state() == "paused"
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(20)
    output = log_path.read_text()
    assert status in {0, -signal.SIGTERM}, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert {"admin_api_listening", "admin_unauthorized", "admin_paused"} <= {line["event"] for line in lines}
    assert TOKEN not in output
