"""What operators rely on: health, readiness, metrics, settings that fail loudly at start-up, the CLI."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import RedisError
from starlette.applications import Starlette
from structlog.testing import capture_logs
from typer.testing import CliRunner

import receiver.app
from eventstore.durability import read_durability
from receiver.app import DETAIL_CHARACTERS, STARTUP_FAILURE, create_app, redis_problem
from receiver.cli import cli
from receiver.settings import ReceiverSettings, SettingsError, load_settings
from testsupport import free_port
from testsupport.receiver import Harness, asgi_client, deliver
from testsupport.redis_server import RedisServer

EventMaker = Callable[..., dict[str, Any]]

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


async def test_readyz_says_where_redis_is_and_why_it_does_not_answer_but_never_its_password(
    make_settings: Callable[..., ReceiverSettings], dead_redis_url: str
) -> None:
    url = dead_redis_url.replace("redis://", "redis://:secret-pw-0123456789@")
    async with asgi_client(create_app(make_settings(redis_url=url, redis_timeout=0.5))) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert set(body["redis"]) == {"address", "error", "detail"}
    assert body["redis"]["address"] == urlsplit(dead_redis_url).netloc + "/0"
    assert body["redis"]["error"] == "ConnectionError"
    assert f"Error 111 connecting to {urlsplit(dead_redis_url).netloc}" in body["redis"]["detail"]  # refused
    assert "secret-pw" not in ready.text


async def test_readyz_names_a_password_redis_no_longer_takes_without_showing_it(
    make_settings: Callable[..., ReceiverSettings],
    restricted_url: Callable[..., str],
    store: redis.Redis,
) -> None:
    url = restricted_url()
    parts = urlsplit(url)
    user = str(parts.username)
    async with asgi_client(create_app(make_settings(redis_url=url))) as http:
        assert (await http.get("/readyz")).json() == {"status": "ready"}
        store.acl_setuser(user, enabled=True, reset_passwords=True, passwords=["+another-pw-9876543210"])
        store.client_kill_filter(user=user)  # the receiver's pooled connections: it must log in again
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    problem = ready.json()["redis"]
    assert problem["error"] == "AuthenticationError"
    assert problem["address"] == f"{parts.hostname}:{parts.port}{parts.path}"
    assert "password" in problem["detail"]
    assert "pw-0123456789" not in ready.text


def test_the_redis_problem_shown_is_short_and_never_carries_the_password(
    make_settings: Callable[..., ReceiverSettings],
) -> None:
    settings = make_settings(redis_url="redis://user:p%40ss-secret@redis.internal:6380/2")
    said = RedisError("AUTH p@ss-secret (p%40ss-secret) refused: " + "x" * 500)  # as if Redis echoed it
    problem = redis_problem(settings, said)
    assert problem["address"] == "redis.internal:6380/2"
    assert problem["detail"].startswith("AUTH [redacted] ([redacted]) refused: xxx")
    assert len(problem["detail"]) == DETAIL_CHARACTERS
    assert "ss-secret" not in str(problem)


async def test_metrics_count_outcomes_reasons_duplicates_latency_and_sizes(
    harness: Harness, state_event: EventMaker
) -> None:
    event = state_event()
    await harness.deliver(event)
    await harness.deliver(event)
    await harness.deliver(state_event(), unsigned=True)
    await harness.deliver(b"{", amt=harness.amt)
    response = await harness.http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = samples(response.text)
    outcome = "smartcar_webhook_requests_total"
    assert values[outcome, (("outcome", "accepted"),)] == 1
    assert values[outcome, (("outcome", "duplicate"),)] == 1
    assert values[outcome, (("outcome", "unauthorized"),)] == 1
    assert values[outcome, (("outcome", "invalid"),)] == 1
    assert values[outcome, (("outcome", "unavailable"),)] == 0
    assert values["smartcar_webhook_signature_failures_total", (("reason", "missing"),)] == 1
    assert values["smartcar_webhook_duplicates_total", ()] == 1
    assert values["smartcar_webhook_store_seconds_count", ()] == 2
    assert values["smartcar_webhook_body_bytes_count", ()] == 4
    assert values["smartcar_webhook_body_bytes_sum", ()] > 2 * 500


def test_with_several_workers_metrics_add_up_across_processes(tmp_path: Path) -> None:
    """uvicorn --workers N: every process counts into PROMETHEUS_MULTIPROC_DIR, /metrics shows the sums."""
    count = (
        "from receiver.metrics import ReceiverMetrics, Outcome\n"
        "m = ReceiverMetrics(); m.outcomes[Outcome.ACCEPTED].inc(); m.store_seconds.observe(0.002)\n"
    )
    show = (
        "import sys; from receiver.metrics import ReceiverMetrics\n"
        "sys.stdout.write(ReceiverMetrics().exposition().decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=30)  # noqa: S603 - our code
    done = subprocess.run(  # noqa: S603 - our own code
        [sys.executable, "-c", show], env=env, check=True, timeout=30, capture_output=True, text=True
    )
    values = samples(done.stdout)
    assert values["smartcar_webhook_requests_total", (("outcome", "accepted"),)] == 2
    assert values["smartcar_webhook_store_seconds_count", ()] == 2


def test_load_settings_reads_the_contract_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCAR_AMT", " amt-new-123456 , amt-old-654321 ,")
    monkeypatch.setenv("REDIS_URL", "redis://redis.internal:6380/2")
    monkeypatch.setenv("EVENT_KEY_PREFIX", "fleet:")
    monkeypatch.setenv("EVENT_DEDUPE_SECONDS", str(14 * 24 * 3600))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("LOG_FORMAT", "Console")
    monkeypatch.setenv("RECEIVER_MAX_BODY_BYTES", "65536")
    monkeypatch.setenv("RECEIVER_VERIFY_WINDOW_UNTIL", "2030-01-31T12:00:00Z")
    monkeypatch.setenv("RECEIVER_VERIFY_UNSIGNED_PER_MINUTE", "12")
    settings = load_settings()
    assert settings.verify_unsigned_per_minute == 12
    assert settings.amts == ("amt-new-123456", "amt-old-654321")
    assert (settings.redis_url, settings.event_key_prefix) == ("redis://redis.internal:6380/2", "fleet:")
    assert (settings.log_level, settings.log_format, settings.max_body_bytes) == ("warning", "console", 65536)
    assert settings.delivery_age_limit == 13 * 24 * 3600
    assert settings.verify_window_until is not None
    assert settings.verify_window_open(datetime.fromisoformat("2029-12-31T00:00:00+00:00"))
    assert "amt-new" not in repr(settings)


def test_settings_passed_by_name_are_reported_by_their_environment_name() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(smartcar_amt="amt-valid-0123456789", redis_url="redis-host", max_body_bytes=5)
    assert "REDIS_URL: " in str(caught.value)
    assert "RECEIVER_MAX_BODY_BYTES: " in str(caught.value)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://:secret-pw@redis.internal:6380/2", "redis.internal:6380/2"),
        ("rediss://user:secret-pw@redis.internal", "redis.internal:6379/0"),
        ("unix:///run/redis.sock?db=3", "/run/redis.sock/3"),
    ],
)
def test_the_redis_address_in_logs_and_messages_has_no_password(url: str, address: str) -> None:
    assert load_settings(smartcar_amt="amt-valid-0123456789", redis_url=url).redis_address == address


@pytest.mark.parametrize("value", [None, "", " , "])
def test_a_missing_amt_fails_with_a_message_that_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("SMARTCAR_AMT", raising=False)
    else:
        monkeypatch.setenv("SMARTCAR_AMT", value)
    with pytest.raises(SettingsError, match=r"SMARTCAR_AMT is not set.*Application Management Token"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("RECEIVER_MAX_BODY_BYTES", "lots", "RECEIVER_MAX_BODY_BYTES"),
        ("EVENT_DEDUPE_SECONDS", "3600", "EVENT_DEDUPE_SECONDS"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL"),
        ("RECEIVER_VERIFY_WINDOW_UNTIL", "2030-01-31T12:00:00", "timezone"),
        ("RECEIVER_VERIFY_UNSIGNED_PER_MINUTE", "0", "RECEIVER_VERIFY_UNSIGNED_PER_MINUTE"),
        ("SMARTCAR_AMT", "short", "at least 8 characters"),
        ("REDIS_URL", "redis-host:6379", "REDIS_URL: .* schemes"),
        (
            "REDIS_URL",
            "redis://:secret-pw@redis-host:6379/0?socket_timeout=soon",
            "REDIS_URL: .*socket_timeout",
        ),
    ],
)
def test_invalid_settings_fail_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str
) -> None:
    monkeypatch.setenv("SMARTCAR_AMT", "amt-valid-0123456789")
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=words) as caught:
        load_settings()
    assert "amt-valid" not in str(caught.value)
    assert "secret-pw" not in str(caught.value)


def run_uvicorn(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    """`uvicorn receiver.app:app` run to its exit, with no SMARTCAR_* or RECEIVER_* variable but `env`'s."""
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("SMARTCAR_", "RECEIVER_"))},
        **env,
    }
    command = [sys.executable, "-m", "uvicorn", "receiver.app:app", "--port", str(free_port()), *options]
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [*command, "--no-access-log"], env=env, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("env", "words"),
    [
        pytest.param({}, "SMARTCAR_AMT is not set", id="no AMT"),
        pytest.param(
            {"SMARTCAR_AMT": "amt-valid-0123456789", "RECEIVER_MAX_BODY_BYTES": "lots"},
            "RECEIVER_MAX_BODY_BYTES",
            id="an invalid setting",
        ),
    ],
)
def test_uvicorn_refuses_to_start_with_one_line_that_says_what_to_set(
    env: dict[str, str], words: str
) -> None:
    done = run_uvicorn(env)
    assert done.returncode == STARTUP_FAILURE
    assert done.stderr.splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert done.stderr.startswith("receiver: configuration error: ")
    assert words in done.stderr
    assert "amt-valid" not in done.stderr


def test_the_public_ports_protocol_refuses_an_invalid_limit_in_one_line() -> None:
    """uvicorn loads `--http receiver.http:LimitedHttpToolsProtocol` before the app: the same one line."""
    env = {"SMARTCAR_AMT": "amt-valid-0123456789", "RECEIVER_HEADER_TIMEOUT": "soon"}
    done = run_uvicorn(env, "--http", "receiver.http:LimitedHttpToolsProtocol")
    assert done.returncode == STARTUP_FAILURE
    assert done.stderr.splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert done.stderr.startswith("receiver: configuration error: invalid receiver settings: ")
    assert "RECEIVER_HEADER_TIMEOUT: " in done.stderr


def test_uvicorn_workers_stop_instead_of_restarting_forever_without_an_amt() -> None:
    done = run_uvicorn({}, "--workers", "2")  # a worker exiting otherwise is restarted, and fails again
    assert "failed to start, stopping the parent process" in done.stderr
    assert "receiver: configuration error: SMARTCAR_AMT is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_module_app_is_built_once_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("SMARTCAR_AMT", "amt-from-env-0123456789")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delitem(vars(receiver.app), "app", raising=False)
    try:
        built = receiver.app.app
        assert isinstance(built, Starlette)
        assert receiver.app.app is built
        assert built.state.receiver.settings.amts == ("amt-from-env-0123456789",)
    finally:
        vars(receiver.app).pop("app", None)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = receiver.app.nothing


async def test_start_up_says_when_the_test_redis_would_lose_events(
    make_settings: Callable[..., ReceiverSettings], store: redis.Redis
) -> None:
    expected = read_durability(store) or []  # whatever the test Redis runs with
    with capture_logs() as logs:
        async with asgi_client(create_app(make_settings(), configure_logs=False)):
            pass
    started = next(entry for entry in logs if entry["event"] == "receiver_started")
    assert started["redis_durable"] is (not expected)
    warnings = [entry["problems"] for entry in logs if entry["event"] == "redis_not_durable"]
    assert warnings == ([expected] if expected else [])


@pytest.mark.parametrize("smartcar_env", ["development", "production"])
def test_a_durable_redis_starts_without_a_warning(
    make_settings: Callable[..., ReceiverSettings], tmp_path: Path, smartcar_env: str
) -> None:
    with RedisServer(tmp_path) as server, capture_logs() as logs:
        create_app(make_settings(redis_url=server.url(), smartcar_env=smartcar_env), configure_logs=False)
    assert [entry for entry in logs if entry["log_level"] == "warning"] == []


def test_production_refuses_a_redis_that_would_lose_events(
    make_settings: Callable[..., ReceiverSettings], tmp_path: Path
) -> None:
    with RedisServer(tmp_path) as server, redis.Redis.from_url(server.url()) as client:
        client.config_set("appendonly", "no")
        with pytest.raises(SettingsError, match=r"would lose events \(SMARTCAR_ENV=production\).*appendonly"):
            create_app(make_settings(redis_url=server.url(), smartcar_env="production"), configure_logs=False)
        with capture_logs() as logs:  # development: served, and said
            create_app(make_settings(redis_url=server.url()), configure_logs=False)
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == ["redis_not_durable"]


def test_a_redis_that_refuses_us_stops_the_start_in_one_line(redis_url: str) -> None:
    """A wrong database answers every request with an error: that is a configuration, not an outage."""
    wrong = redis_url.rsplit("/", 1)[0] + "/99"
    done = run_uvicorn({"SMARTCAR_AMT": "amt-valid-0123456789", "REDIS_URL": wrong})
    assert done.returncode == STARTUP_FAILURE
    assert done.stderr.splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert "REDIS_URL: Redis at " in done.stderr
    assert "/99 refused us: DB index is out of range" in done.stderr


@pytest.fixture
def restricted_url(store: redis.Redis, redis_url: str, key_prefix: str) -> Iterator[Callable[..., str]]:
    """`restricted_url("-info")`: the test Redis as a user who may run every command but those named (as
    some managed services set it up); the users are deleted afterwards."""
    users: list[str] = []

    def make(*denied: str) -> str:
        user = f"restricted-{len(users)}-" + key_prefix.strip(":").replace(":", "-")
        store.acl_setuser(
            user, enabled=True, passwords=["+pw-0123456789"], keys=["*"], commands=["+@all", *denied]
        )
        users.append(user)
        parts = urlsplit(redis_url)
        return f"redis://{user}:pw-0123456789@{parts.hostname}:{parts.port or 6379}{parts.path}"

    yield make
    for user in users:
        store.acl_deluser(user)


async def test_a_redis_that_refuses_info_is_served_without_a_warning(
    make_settings: Callable[..., ReceiverSettings],
    restricted_url: Callable[..., str],
    amt: str,
    state_event: EventMaker,
) -> None:
    app = create_app(make_settings(redis_url=restricted_url("-info")))
    with capture_logs() as logs:
        async with asgi_client(app) as http:
            response = await deliver(http, state_event(), amt=amt)
    assert response.status_code == 200
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == []
    assert next(entry for entry in logs if entry["event"] == "receiver_started")["redis_durable"] is True


async def test_gc_freeze_at_start_up(make_settings: Callable[..., ReceiverSettings]) -> None:
    try:
        async with asgi_client(create_app(make_settings(gc_freeze=True))) as http:
            assert gc.get_freeze_count() > 0
            assert (await http.get("/healthz")).status_code == 200
    finally:
        gc.unfreeze()


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str) -> None:
    monkeypatch.setenv("SMARTCAR_AMT", "amt-cli-0123456789")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("EVENT_KEY_PREFIX", key_prefix)
    monkeypatch.delenv("RECEIVER_VERIFY_REQUIRE_ARMED", raising=False)


def test_cli_check_reports_the_settings_and_redis(operator_env: None) -> None:
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 0, result.output
    assert "1 AMT(s)" in result.output
    assert "Redis answers" in result.output
    assert "amt-cli" not in result.output


@pytest.mark.parametrize("command", ["check", "arm-verify", "disarm-verify", "verify-status"])
def test_cli_commands_say_where_redis_does_not_answer(
    operator_env: None, monkeypatch: pytest.MonkeyPatch, dead_redis_url: str, command: str
) -> None:
    monkeypatch.setenv("REDIS_URL", dead_redis_url)
    result = CliRunner().invoke(cli, [command])
    assert (result.exit_code, type(result.exception)) == (1, SystemExit)  # not a traceback
    assert f"Redis does not answer at 127.0.0.1:{urlsplit(dead_redis_url).port}/0" in result.output


def test_cli_says_when_redis_refuses_a_command(
    operator_env: None, monkeypatch: pytest.MonkeyPatch, restricted_url: Callable[..., str]
) -> None:
    monkeypatch.setenv("REDIS_URL", restricted_url("-@write"))
    result = CliRunner().invoke(cli, ["arm-verify"])
    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert "Redis refused the command at " in result.output
    assert "NoPermissionError" in result.output
    assert "pw-0123456789" not in result.output


def test_cli_without_an_amt_says_what_to_set(operator_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMARTCAR_AMT")
    result = CliRunner().invoke(cli, ["arm-verify"])
    assert result.exit_code == 2
    assert "SMARTCAR_AMT is not set" in result.output


def test_cli_verify_status_without_arming_required(operator_env: None) -> None:
    runner = CliRunner()
    assert "answered whenever it is well-formed" in runner.invoke(cli, ["verify-status"]).output
    armed = runner.invoke(cli, ["arm-verify", "--minutes", "1"])
    assert "RECEIVER_VERIFY_REQUIRE_ARMED is off" in armed.output


def test_cli_verify_status_with_a_fixed_window(operator_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_VERIFY_REQUIRE_ARMED", "1")
    monkeypatch.setenv("RECEIVER_VERIFY_WINDOW_UNTIL", "2999-01-01T00:00:00Z")
    assert "RECEIVER_VERIFY_WINDOW_UNTIL" in CliRunner().invoke(cli, ["verify-status"]).output


def test_production_code_imports_no_test_helpers() -> None:
    """`testsupport.receiver` and the other packages' `testing` modules are for tests: the app loads none."""
    code = (
        "import importlib, pkgutil, sys, receiver\n"
        "for found in pkgutil.iter_modules(receiver.__path__):\n"
        "    if found.name not in {'testing', '__main__'}:\n"
        "        importlib.import_module('receiver.' + found.name)\n"
        "print('\\n'.join(sys.modules))\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    loaded = set(done.stdout.split())
    assert {"receiver.app", "receiver.cli", "receiver.writer"} <= loaded
    ours = {name for name in loaded if name.partition(".")[0] in {"receiver", "workers", "smartcar_core"}}
    assert {name for name in ours if name.endswith(".testing")} == set()


def test_python_dash_m_receiver_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0
    assert "arm-verify" in done.stdout


def _preflight(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", "preflight"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_preflight_says_the_receiver_can_start_or_refuses_as_its_start_would(
    redis_url: str, key_prefix: str
) -> None:
    good = {"SMARTCAR_AMT": "amt-cli-0123456789", "REDIS_URL": redis_url, "EVENT_KEY_PREFIX": key_prefix}
    started = _preflight(good)
    assert (started.returncode, started.stdout.strip()) == (0, "the receiver can start"), started.stderr
    for bad, named in (
        ({"RECEIVER_MAX_HEADERS": "1"}, "RECEIVER_MAX_HEADERS"),  # the public port's protocol
        ({"REDIS_URL": redis_url.rsplit("/", 1)[0] + "/99"}, "REDIS_URL"),  # a Redis that refuses us
    ):
        refused = _preflight({**good, **bad})
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == STARTUP_FAILURE
        assert "Traceback" not in refused.stderr
        assert named in lines[-1]
        assert "amt-cli" not in refused.stderr
