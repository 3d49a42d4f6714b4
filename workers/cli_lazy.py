"""`smartcar-events`' commands imported when they are run, not when the program starts.

Each command module brings its own weight (Celery and kombu, httpx and the Smartcar client, the
Prometheus client, structlog, the replay machinery): imported together they were most of a command's
time as a process (`bench/events_list_bench.py`). `COMMANDS` names where each command lives; the group
imports a module only when one of its commands is resolved, so `events list` loads the events module
and what it needs, and `--help` loads none. The help lists each command with the `help` given here, which
`tests/workers/test_workers_cli_lazy.py` checks against the command's own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo


@dataclass(frozen=True, slots=True)
class Lazy:
    """A command (`attribute` a function) or a group of them (a `typer.Typer`) of `module`."""

    module: str
    attribute: str
    help: str


_OPS, _TOOLS = "workers.cli_ops", "workers.cli_tools"
COMMANDS = {
    "pause": Lazy(
        _OPS,
        "pause",
        "Hold processing: new events wait in the inbox (with --vehicle: parked at claim) until resume.",
    ),
    "resume": Lazy(
        _OPS,
        "resume",
        "Lift a pause: the backlog goes at --rate events a second (shared by every relay), or at once.",
    ),
    "stats": Lazy(
        _OPS,
        "stats",
        "Counts by status and type, backlog, dead letters by error and reason, outcomes a minute, latency.",
    ),
    "purge": Lazy(
        _OPS,
        "purge",
        "Delete done or failed events older than --before, with their index entries (the sweeper's trim).",
    ),
    "doctor": Lazy(
        "workers.doctor",
        "doctor",
        "Check settings, Redis, clock, backlog, worker, beat, Smartcar credentials, vehicles and signature\n"
        "failures: exit 0 fine, 1 warnings, 2 problems. Each finding says what, why it matters and the fix.",
    ),
    "relay": Lazy(
        _TOOLS,
        "relay",
        "Run a relay (inbox -> process_event tasks) in the foreground, for workers run with the relay off.",
    ),
    "check": Lazy(
        _TOOLS,
        "check",
        "Check the settings, the Celery configuration the workers would run with, that Smartcar's token\n"
        "endpoint accepts SMARTCAR_CLIENT_ID/SECRET (`workers.credentials`: no user needed), and (on the "
        "broker)\nthat Celery and kombu still work as workers.publish and workers.broker assume: run it "
        "after an upgrade.",
    ),
    "tokens": Lazy(_TOOLS, "tokens_app", "Smartcar OAuth tokens (encrypted in Redis)."),
    "vehicle": Lazy(_TOOLS, "vehicle_app", "What the workers know about a vehicle."),
    "events": Lazy(
        "workers.cli_events", "events_app", "Events: list them by status, vehicle, error...; show one whole."
    ),
    "vehicles": Lazy(
        "workers.cli_vehicles",
        "vehicles_app",
        "Our vehicles: status, and subscribe, unsubscribe, disconnect, refresh, reconcile.",
    ),
    "replay": Lazy(
        "workers.cli_replay",
        "replay_app",
        "Replay events: `replay ID...` or `replay --since 2h` (any events-list filter; `replay run --help`) "
        "prints the plan; with --yes the workers run it as a job.",
    ),
}
"""Every command of `smartcar-events`, in the order its help lists them: a function (a command) or a
`typer.Typer` (a group) of its module."""


class _Unloaded(TyperCommand):
    """A command's name and help, standing in for it until it is run."""


class LazyGroup(TyperGroup):
    """The top-level group: the commands of `COMMANDS`, each imported and built when first resolved.

    (`ctx`, `formatter` and the commands are typer's own click types, which typer 0.28 does not export.)
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        # Every name is known from the start (typer's "Did you mean ...?" reads them), as a stand-in.
        stand_ins = {name: _Unloaded(name=name, help=lazy.help) for name, lazy in COMMANDS.items()}
        self.commands = {**stand_ins, **self.commands}

    def get_command(self, ctx: Any, cmd_name: str) -> Any:  # noqa: ARG002 - click passes it
        known = self.commands.get(cmd_name)
        if not isinstance(known, _Unloaded) or self._listing:  # the help's list: nothing imported
            return known
        command = load(cmd_name, rich_markup_mode=self.rich_markup_mode)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def load(name: str, *, rich_markup_mode: Any = None) -> Any:
    """The command or group `name`, imported and built as `app.command()` / `app.add_typer` would."""
    lazy = COMMANDS[name]
    found = getattr(importlib.import_module(lazy.module), lazy.attribute)
    if isinstance(found, typer.Typer):
        return get_group_from_info(
            TyperInfo(found, name=name),
            pretty_exceptions_short=found.pretty_exceptions_short,
            rich_markup_mode=found.rich_markup_mode,
            suggest_commands=found.suggest_commands,
        )
    return get_command_from_info(
        CommandInfo(name=name, callback=found),
        pretty_exceptions_short=True,
        rich_markup_mode=rich_markup_mode,
    )
