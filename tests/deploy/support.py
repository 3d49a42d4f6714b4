"""What the deployment tests read: the deployment files, and the contract they must keep.

The contract comes from the code, not from a copy: setting names from the settings classes (their aliases
and env prefixes), routes from the receiver's and the simulator's apps, console scripts from pyproject.toml.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from receiver.app import create_app
from receiver.settings import ReceiverSettings
from service_base.settings import ServiceSettings
from smartcar_simulator.app import routes as simulator_routes
from smartcar_simulator.settings import SimulatorSettings
from workers.admin_api import AdminSettings
from workers.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent

# Read by the launch commands (uvicorn, prometheus_client, the Procfile's shell), not by a settings class.
LAUNCH_VARIABLES = frozenset(
    {"PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "PROMETHEUS_MULTIPROC_DIR", "STATE_DIRECTORY"}
)
# smartcar_core.config.Origins.from_env: the official SDKs' names.
ORIGIN_DEFAULTS = {
    "SMARTCAR_API_ORIGIN": "https://api.smartcar.com",
    "SMARTCAR_AUTH_ORIGIN": "https://auth.smartcar.com",
    "SMARTCAR_CONNECT_ORIGIN": "https://connect.smartcar.com",
    "SMARTCAR_MANAGEMENT_API_ORIGIN": "https://management.smartcar.com",
    "SMARTCAR_VEHICLE_API_V3_ORIGIN": "https://vehicle.api.smartcar.com",
}
SERVICE_CLASSES: tuple[type[ServiceSettings], ...] = (ReceiverSettings, WorkerSettings, AdminSettings)


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment name -> field name, for every field of a settings class."""
    names = {}
    prefix = str(cls.model_config.get("env_prefix", ""))
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names[str(alias.choices[0])] = field
        elif isinstance(alias, str):
            names[alias] = field
        else:
            names[f"{prefix}{field}".upper()] = field
    return names


def service_settings() -> dict[str, tuple[type[ServiceSettings], str]]:
    """Every setting of the receiver, the workers and the admin API: environment name -> (a class reading
    it, field)."""
    found: dict[str, tuple[type[ServiceSettings], str]] = {}
    for cls in SERVICE_CLASSES:
        for name, field in env_names(cls).items():
            found.setdefault(name, (cls, field))
    return found


def known_names() -> frozenset[str]:
    """Every environment name a deployment file may set."""
    return frozenset(
        {*service_settings(), *ORIGIN_DEFAULTS, *env_names(SimulatorSettings), *LAUNCH_VARIABLES}
    )


@dataclass(frozen=True)
class EnvLine:
    name: str
    value: str
    commented: bool


def env_example() -> dict[str, list[EnvLine]]:
    """`.env.example`: each NAME=value line (set, or commented out as `# NAME=value`), by name."""
    lines: dict[str, list[EnvLine]] = {}
    for raw in (REPO / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", raw.strip())
        if match:
            line = EnvLine(match[2], match[3], match[1] is not None)
            lines.setdefault(line.name, []).append(line)
    return lines


def procfile(name: str = "Procfile") -> dict[str, str]:
    """Process type -> command line (comments and blank lines skipped, as Heroku and honcho do)."""
    processes = {}
    for line in (REPO / name).read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line)
        if match:
            processes[match[1]] = match[2]
    return processes


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as stream:
        return [document for document in yaml.safe_load_all(stream) if document]


def compose() -> dict[str, Any]:
    documents = yaml_documents(REPO / "docker-compose.yml")
    assert len(documents) == 1
    return documents[0]


def pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as stream:
        return tomllib.load(stream)


def console_scripts() -> dict[str, str]:
    return dict(pyproject()["project"]["scripts"])


def receiver_paths() -> frozenset[str]:
    """The receiver app's routes (built with a placeholder AMT; nothing connects until its lifespan)."""
    settings = ReceiverSettings(smartcar_amt="placeholder-amt-for-routes", redis_url="redis://127.0.0.1:9/0")
    app = create_app(settings, configure_logs=False)
    return frozenset(str(getattr(route, "path", "")) for route in app.routes)


def simulator_paths() -> frozenset[str]:
    """The simulator's literal routes (not its catch-all, which answers any path)."""
    return frozenset(
        path for route in simulator_routes() if "{" not in (path := str(getattr(route, "path", "")))
    )


_VARIABLE = re.compile(r"\$\{(\w+)(?::-[^}]*)?\}|\$(\w+)")


def normalise(command: str) -> list[str]:
    """A shell or systemd command line as words, each variable written `$NAME` whatever its default
    (`"${PORT:-8000}"`, `${PORT}` and `$PORT` compare equal)."""
    return shlex.split(_VARIABLE.sub(lambda match: f"${match[1] or match[2]}", command))


def after(words: list[str], program: str) -> list[str]:
    """The words from `program` on (the command a wrapper such as `... && exec` ends with)."""
    for index, word in enumerate(words):
        if Path(word).name == program:
            return [program, *words[index + 1 :]]
    raise AssertionError(f"no {program} in {shlex.join(words)}")


def variables(text: str) -> set[str]:
    """The environment variables a shell, compose or systemd line reads."""
    return {match[1] or match[2] for match in _VARIABLE.finditer(text)}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined, comments dropped."""
    joined, pending = [], ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            joined.append(pending.strip())
            pending = ""
    return [(line.split(" ", 1)[0].upper(), line.split(" ", 1)[1]) for line in joined]


def dockerfile_command() -> str:
    """The image's CMD (a `sh -c` string)."""
    [cmd] = [json.loads(arguments) for name, arguments in dockerfile_instructions() if name == "CMD"]
    assert cmd[:2] == ["sh", "-c"], cmd
    return str(cmd[2])


def command_problems(argv: list[str]) -> list[str]:
    """Why a command a deployment file runs would not start here (empty: it would).

    The program must be one the install provides (a console script of the project or a dependency, in
    this virtualenv), and the app or module it is told to load must import.
    """
    program = Path(argv[0]).name
    problems = []
    if not (BIN / program).exists():
        problems.append(f"{program}: no such program in the virtualenv")
    if program == "uvicorn":
        target = next(word for word in argv[1:] if ":" in word and not word.startswith("-"))
        module, _, attribute = target.partition(":")
        loaded = importlib.import_module(module)
        if attribute != "app" or not hasattr(loaded, "create_app"):
            problems.append(f"{target}: not the receiver's app")
    if program == "celery":
        module = argv[argv.index("-A") + 1]
        if not hasattr(importlib.import_module(module), "app"):
            problems.append(f"{module}: no Celery app")
        if argv[argv.index("-A") + 2] not in {"worker", "beat", "inspect"}:
            problems.append(f"celery {argv[argv.index('-A') + 2]}: not a process we run")
    if program not in {*console_scripts(), "uvicorn", "celery"}:
        problems.append(f"{program}: not a console script of pyproject.toml, nor uvicorn or celery")
    return problems


def walk(node: Any) -> Iterator[Any]:
    """Every mapping and list inside a parsed YAML document, depth first."""
    yield node
    if isinstance(node, Mapping):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)
