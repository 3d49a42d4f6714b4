"""`smartcar-events` imports a command's module only when the command runs (`workers.cli_lazy`): what its
help lists is what each command says of itself, every command still runs, and a process that asks for the
help or lists events loads neither Celery, kombu, httpx, the Prometheus client nor the Smartcar client
(what made its start-up most of `events list`'s time: `bench/events_list_bench.py`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from workers.cli import app
from workers.cli_lazy import COMMANDS, load
from workers.settings import WorkerSettings
from workers.tokens import put_tokens

runner = CliRunner()
HEAVY = ("celery", "kombu", "httpx", "prometheus_client", "smartcar_core.auth", "smartcar_core.client")
LOADED = """
import sys
from workers.cli import app
try:
    app({args!r})
except SystemExit:
    pass
print("loaded:", *(name for name in {heavy!r} if name in sys.modules))
"""


def loaded_by(args: list[str], environment: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """What `smartcar-events <args>` printed (stdout and stderr) in a process of its own, and which of
    HEAVY it imported."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", LOADED.format(args=args, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **(environment or {}), "COLUMNS": "200"},
    )
    shown, _, loaded = done.stdout.rpartition("loaded:")
    return shown + done.stderr, loaded.split()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_help_lists_what_each_command_says_of_itself(name: str) -> None:
    command = load(name)
    assert command.name == name
    assert command.help == COMMANDS[name].help


def test_the_help_lists_every_command_and_loads_none() -> None:
    shown, heavy = loaded_by(["--help"])
    assert heavy == []
    for name in COMMANDS:
        assert f" {name} " in shown
    group = typer.main.get_command(app)
    assert group.list_commands(None) == list(COMMANDS)  # type: ignore[attr-defined] # - typer's group


def test_listing_events_loads_neither_celery_nor_httpx(settings: WorkerSettings) -> None:
    environment = {
        "REDIS_URL": settings.redis_url,
        "EVENT_KEY_PREFIX": settings.event_key_prefix,
        "TOKEN_ENCRYPTION_KEY": settings.token_encryption_key.get_secret_value(),
    }
    shown, heavy = loaded_by(["events", "list", "--status", "failed"], environment)
    assert heavy == []
    assert "no event matches" in shown


def test_commands_of_every_kind_still_run(settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group from its module (`tokens`), a command of another module (`stats`), a command's options."""
    for name, value in {
        "REDIS_URL": settings.redis_url,
        "EVENT_KEY_PREFIX": settings.event_key_prefix,
        "TOKEN_ENCRYPTION_KEY": settings.token_encryption_key.get_secret_value(),
    }.items():
        monkeypatch.setenv(name, value)
    put_tokens(vehicle_ids=["v-lazy"], access_token="a", refresh_token="r", expires_in=60, settings=settings)
    assert "v-lazy" in runner.invoke(app, ["tokens", "show", "v-lazy"], env={"COLUMNS": "200"}).stdout
    assert runner.invoke(app, ["stats", "--json"]).exit_code == 0
    assert runner.invoke(app, ["stats", "--sample", "0"]).exit_code == 2  # typer's own check of an option
    typo = runner.invoke(app, ["evnets"])
    assert typo.exit_code == 2
    assert "Did you mean 'events'?" in typo.output  # every name is known before its module is loaded
