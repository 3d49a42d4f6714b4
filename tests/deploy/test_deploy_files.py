"""The Procfile, docker-compose.yml, deploy/Dockerfile and .env.example, read and held to the contract:
every command exists, every setting named is real and listed in .env.example with its true default, every
health check asks a path the app serves, and the receiver runs with the same flags everywhere."""

from __future__ import annotations

import importlib
import re
import subprocess
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from deploy.support import (
    BIN,
    LAUNCH_VARIABLES,
    ORIGIN_DEFAULTS,
    REPO,
    after,
    command_problems,
    compose,
    dockerfile_command,
    dockerfile_instructions,
    env_example,
    env_names,
    known_names,
    normalise,
    procfile,
    pyproject,
    receiver_paths,
    service_settings,
    simulator_paths,
    variables,
)
from smartcar_core.config import Origins
from smartcar_simulator.settings import SimulatorSettings
from workers.settings import WorkerSettings

WEB_FLAGS = {
    "--workers",
    "--http",
    "--ws",
    "--proxy-headers",
    "--forwarded-allow-ips",
    "--timeout-graceful-shutdown",
    "--limit-concurrency",
    "--timeout-keep-alive",
    "--no-access-log",
}
PROGRAMS = {"web": "uvicorn", "worker": "celery", "beat": "celery", "simulator": "smartcar-simulator"}
TASK_TIME_LIMIT = float(WorkerSettings.model_fields["task_time_limit"].default)
SOFT_SHUTDOWN = float(WorkerSettings.model_fields["soft_shutdown_timeout"].default)


def option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def web_command() -> list[str]:
    return after(normalise(procfile()["web"]), "uvicorn")


def graceful_shutdown() -> float:
    return float(option(web_command(), "--timeout-graceful-shutdown"))


def seconds(duration: str) -> float:
    """A compose duration (`90s`, `1m30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", duration)
    assert parts, duration
    return sum(float(value) * (0.001 if unit == "ms" else units[unit]) for value, unit in parts)


# ---- .env.example ----------------------------------------------------------------------------------


def test_env_example_lists_every_setting_of_the_receiver_and_the_workers_once() -> None:
    lines = env_example()
    missing = sorted(set(service_settings()) - set(lines))
    assert not missing, f".env.example lacks {missing}"
    unknown = sorted(set(lines) - known_names())
    assert not unknown, f".env.example names what nothing reads: {unknown}"
    repeated = sorted(name for name, found in lines.items() if len(found) > 1)
    assert not repeated


def test_env_example_holds_no_secret_and_sets_nothing_but_the_required_blanks() -> None:
    for name, [line] in env_example().items():
        if not line.commented:
            assert line.value == "", f"{name}: .env.example sets a value; show defaults commented out"


def test_env_example_shows_the_real_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `# NAME=value` line, read as the process would read it, gives the field's default."""
    for name in known_names():
        monkeypatch.delenv(name, raising=False)
    # The services' defaults where the simulator reads the same name (SMARTCAR_CLIENT_ID...).
    classes: dict[str, Any] = dict.fromkeys(env_names(SimulatorSettings), SimulatorSettings)
    classes.update({name: cls for name, (cls, _field) in service_settings().items()})
    required = {"SMARTCAR_AMT": "placeholder-amt", "TOKEN_ENCRYPTION_KEY": _fernet_key()}
    for name, [line] in env_example().items():
        if not line.commented or name in LAUNCH_VARIABLES:
            continue
        if name in ORIGIN_DEFAULTS:
            assert line.value == ORIGIN_DEFAULTS[name], name
            continue
        cls = classes[name]
        field = env_names(cls)[name]
        default = cls.model_fields[field].get_default(call_default_factory=True)
        if line.value == "":
            assert default in {None, ""}, f"{name}: shown unset, default {default!r}"
            continue
        with monkeypatch.context() as env:
            for key, value in {**required, name: line.value}.items():
                env.setenv(key, value)
            loaded = cls(_env_file=None)
        assert getattr(loaded, field) == default, f"{name}={line.value}: the default is {default!r}"


def _fernet_key() -> str:
    from cryptography.fernet import Fernet  # noqa: PLC0415 - only this test needs one

    return Fernet.generate_key().decode()


# ---- Procfile --------------------------------------------------------------------------------------


def test_procfile_runs_web_worker_and_beat_and_the_dev_one_adds_only_the_simulator() -> None:
    production, development = procfile(), procfile("Procfile.dev")
    assert set(production) == {"web", "worker", "beat"}
    assert set(development) == {*production, "simulator"}
    for name, line in production.items():
        assert development[name] == line, f"Procfile.dev's {name} differs from the Procfile's"


@pytest.mark.parametrize("name", ["web", "worker", "beat", "simulator"])
def test_each_procfile_command_exists(name: str) -> None:
    line = procfile("Procfile.dev")[name]
    assert command_problems(after(normalise(line), PROGRAMS[name])) == []
    names = variables(line)
    assert names <= known_names(), sorted(names - known_names())
    assert names <= set(env_example()), sorted(names - set(env_example()))


def test_web_has_the_production_flags_and_a_fresh_metrics_directory() -> None:
    line = procfile()["web"]
    words = web_command()
    assert set(words) >= WEB_FLAGS, sorted(WEB_FLAGS - set(words))
    assert option(words, "--workers") == "$WEB_CONCURRENCY"
    assert option(words, "--port") == "$PORT"
    assert option(words, "--forwarded-allow-ips") == "$FORWARDED_ALLOW_IPS"
    # The public port's limits (receiver.http), and no WebSocket handshake: the receiver serves none.
    assert option(words, "--http") == "receiver.http:LimitedHttpToolsProtocol"
    assert option(words, "--ws") == "none"
    # Exported to uvicorn, and emptied (of its files only) before it starts.
    assert "export PROMETHEUS_MULTIPROC_DIR=" in line
    assert 'rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db' in line


PREFLIGHT = "python -m receiver preflight && exec uvicorn "


def test_web_checks_it_can_start_before_uvicorn_wherever_it_runs() -> None:
    """uvicorn's supervisor exits 0 when its processes fail to start: the check before it exits 3."""
    for line in (procfile()["web"], procfile("Procfile.dev")["web"], dockerfile_command()):
        assert PREFLIGHT in line, line


def test_the_web_protocol_is_the_limited_httptools_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `--http` names imports, and is uvicorn's httptools protocol with the settings' limits (built
    here by the function the module attribute is built with, so that nothing is cached for other tests)."""
    module, _, attribute = option(web_command(), "--http").partition(":")
    loaded = importlib.import_module(module)
    assert attribute == "LimitedHttpToolsProtocol"
    monkeypatch.setenv("SMARTCAR_AMT", "placeholder-amt")
    monkeypatch.setenv("RECEIVER_MAX_HEADER_BYTES", "8192")
    protocol = loaded.from_environment()
    assert issubclass(protocol, HttpToolsProtocol)
    assert protocol.limits.max_header_bytes == 8192


def test_uvicorn_knows_every_flag_we_pass() -> None:
    shown = subprocess.run(  # noqa: S603 - our own virtualenv's uvicorn
        [BIN / "uvicorn", "--help"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    for flag in (word for word in web_command() if word.startswith("--")):
        assert re.search(rf"{re.escape(flag)}\b", shown), f"uvicorn has no {flag}"


def test_beat_keeps_its_schedule_in_a_state_directory_and_answers_pings() -> None:
    words = after(normalise(procfile()["beat"]), "celery")
    assert option(words, "--schedule").startswith("$STATE_DIRECTORY/")
    assert "--enable-remote-control" in words


def test_the_image_runs_the_receiver_with_the_procfile_flags() -> None:
    assert after(normalise(dockerfile_command()), "uvicorn") == web_command()


# ---- deploy/Dockerfile ------------------------------------------------------------------------------


def test_the_image_installs_from_the_lock_runs_unprivileged_and_checks_its_health() -> None:
    instructions = dockerfile_instructions()
    text = " ".join(arguments for _name, arguments in instructions)
    assert "requirements/lock.txt" in text
    assert "pip install --require-hashes -r" in text
    assert "pip install --no-deps" in text
    bases = [arguments for name, arguments in instructions if name == "FROM"]
    assert all("slim" in base for base in bases), bases
    users = [arguments for name, arguments in instructions if name == "USER"]
    assert users, "no USER: the image runs as root"
    assert users[-1] not in {"root", "0"}
    [check] = [arguments for name, arguments in instructions if name == "HEALTHCHECK"]
    [path] = re.findall(r"127\.0\.0\.1:%s(/\w+)", check)
    assert path == "/healthz"
    assert path in receiver_paths()


def test_the_image_holds_every_production_package() -> None:
    """The project wheel is built from what the Dockerfile copies: every package but the test helpers."""
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include} - {"testsupport"}
    copied = {
        arguments.split()[0]
        for name, arguments in dockerfile_instructions()
        if name == "COPY" and not arguments.startswith("--")
    }
    assert packages <= copied, sorted(packages - copied)
    assert all((REPO / package / "__init__.py").exists() for package in packages)


# ---- docker-compose.yml -----------------------------------------------------------------------------


def services() -> dict[str, Any]:
    return dict(compose()["services"])


def test_compose_runs_each_process_and_the_simulator_only_under_the_dev_profile() -> None:
    found = services()
    assert set(found) == {"redis", "receiver", "worker", "beat", "simulator", "prometheus"}
    assert found["simulator"]["profiles"] == ["dev"]
    assert found["prometheus"]["profiles"] == ["monitoring"]  # tests/deploy/test_deploy_monitoring.py
    optional = {"simulator", "prometheus"}
    assert all("profiles" not in service for name, service in found.items() if name not in optional)


def test_compose_redis_persists_every_write_never_evicts_and_restarts() -> None:
    redis = services()["redis"]
    words = redis["command"]
    assert option(words, "--appendonly") == "yes"
    assert option(words, "--appendfsync") == "everysec"
    assert option(words, "--maxmemory-policy") == "noeviction"
    assert re.fullmatch(r"\d+[kmg]b", option(words, "--maxmemory")), "maxmemory must be set"
    assert redis["restart"] == "unless-stopped"
    [volume] = redis["volumes"]
    assert volume.split(":")[1] == "/data"
    assert volume.split(":")[0] in compose()["volumes"]


def test_every_compose_service_has_a_health_check_and_a_restart_policy() -> None:
    for name, service in services().items():
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        assert service.get("restart") == "unless-stopped", name


def test_compose_gives_each_process_the_time_it_needs_to_stop() -> None:
    found = services()
    assert seconds(found["receiver"]["stop_grace_period"]) > graceful_shutdown()
    worker = seconds(found["worker"]["stop_grace_period"])
    assert worker >= SOFT_SHUTDOWN
    assert worker > TASK_TIME_LIMIT, "a warm shutdown lets a running task finish"
    for name in ("redis", "beat", "simulator"):
        assert "stop_grace_period" in found[name], name


def test_compose_health_checks_ask_what_the_processes_answer() -> None:
    found = services()
    receiver_check = " ".join(found["receiver"]["healthcheck"]["test"])
    simulator_check = " ".join(found["simulator"]["healthcheck"]["test"])
    assert set(re.findall(r"127\.0\.0\.1:8000(/\w+)", receiver_check)) <= receiver_paths()
    assert re.findall(r"127\.0\.0\.1:8010(/[\w/]+)", simulator_check)[0] in simulator_paths()
    for name, node in (("worker", "celery"), ("beat", "celerybeat")):
        [shell, line] = found[name]["healthcheck"]["test"]
        assert shell == "CMD-SHELL"
        words = normalise(line.replace("$$", "$"))
        assert command_problems(words) == []
        assert words[3:6] == ["inspect", "ping", "-d"]
        assert words[6] == f"{node}@$HOSTNAME"
    assert "--enable-remote-control" in found["beat"]["command"]


def test_compose_commands_exist() -> None:
    ours = compose()["x-app"]["image"]
    for name, service in services().items():
        if service.get("image") != ours:  # redis, prometheus
            assert name in {"redis", "prometheus"}, name
            continue
        command = service.get("command")
        if command is None:  # the image's CMD: the receiver
            assert name == "receiver"
            continue
        assert command_problems(list(command)) == [], name


def test_compose_names_only_real_settings_all_in_env_example() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    named = variables(text.replace("$$", ""))
    for service in services().values():
        named |= set(service.get("environment", {}))
    named -= {"HOSTNAME"}  # the container's, in the health checks
    assert named <= known_names(), sorted(named - known_names())
    assert named <= set(env_example()), sorted(named - set(env_example()))


def test_compose_runs_in_production_mode_against_the_dev_simulator_by_default() -> None:
    environment = services()["worker"]["environment"]
    assert environment["SMARTCAR_ENV"] == "production"
    assert environment["REDIS_URL"] == "redis://redis:6379/0"
    # `${NAME:-default}`: the default is the dev profile's simulator, in the form the README gives.
    defaults = {
        name: re.fullmatch(r"\$\{\w+:-(.*)\}", value)
        for name, value in environment.items()
        if name in ORIGIN_DEFAULTS
    }
    assert set(defaults) == set(ORIGIN_DEFAULTS)
    origins = {name: match[1] for name, match in defaults.items() if match}
    assert Origins(auth=origins["SMARTCAR_AUTH_ORIGIN"]).token_url == "http://simulator:8010/oauth/token"
    assert {value.removesuffix("/oauth/token") for value in origins.values()} == {"http://simulator:8010"}
    assert environment["SMARTCAR_AMT"].startswith("${SMARTCAR_AMT:?")
    assert environment["TOKEN_ENCRYPTION_KEY"].startswith("${TOKEN_ENCRYPTION_KEY:?")
