"""What every `smartcar-events` command prints through: results on stdout, problems on stderr (one
problem, one line, whatever the terminal's width), and the one way a command ends on a problem."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import typer
from rich.console import Console
from rich.markup import escape

from eventstore.client import connect
from workers.selecting import SelectionError, vehicle_ids
from workers.sending import BrokerUnavailableError, send_task
from workers.settings import SettingsError, WorkerSettings, load_settings

SETTINGS_FAILURE = 78  # EX_CONFIG, as workers and beat refuse to start
BAD_INVOCATION = 2  # as typer's own usage errors
console = Console()
errors = Console(stderr=True, soft_wrap=True)


@contextmanager
def store_answers(settings: WorkerSettings) -> Iterator[None]:
    """Inside: a Redis that does not answer ends the command with one line naming it, and exit 78 (as a
    worker refuses to start without it), not a traceback."""
    try:
        yield
    except (redis.RedisError, OSError) as error:
        message = f"the event store's Redis at {settings.redis_address} did not answer: {error}"
        raise fail(message, SETTINGS_FAILURE) from None


@contextmanager
def store_client(settings: WorkerSettings) -> Iterator[redis.Redis]:
    """The event store's client, closed after (`store_answers` inside)."""
    client = connect(settings.redis_url)
    try:
        with store_answers(settings):
            yield client
    finally:
        client.close()


def fail(message: str, code: int) -> typer.Exit:
    """Print `message` as one red line on stderr (taken as text: an error's own brackets are not markup)
    and return the `typer.Exit(code)` for the caller to raise."""
    errors.print(f"[red]{escape(message)}[/red]")
    return typer.Exit(code)


def send_or_say(settings: WorkerSettings, task: str, **kwargs: Any) -> bool:
    """Send `task` to the workers (`workers.sending`); False, and a line on stderr, without a broker (the
    caller says what happens instead)."""
    try:
        send_task(settings, task, **kwargs)
    except BrokerUnavailableError as error:
        errors.print(str(error), markup=False, highlight=False)
        return False
    return True


def checked_vehicle_ids(ids: list[str]) -> list[str]:
    """`ids` without repeats, each one a vehicle id as Smartcar writes them; the command ends (exit 2) on
    the first that is not (empty, a space, a shell's leftover quote...), before anything is done for it."""
    try:
        return vehicle_ids(ids)
    except SelectionError as error:
        raise fail(str(error), BAD_INVOCATION) from None


def settings_or_exit() -> WorkerSettings:
    """The workers' settings, or the command ends with their problem and exit 78."""
    try:
        return load_settings()
    except SettingsError as error:
        raise fail(str(error), SETTINGS_FAILURE) from None
