"""`smartcar-events tokens`, `vehicle`, `relay` and `check`: the commands that were the first
`smartcar-events` (tokens, vehicle state, the relay, a configuration check), loaded when run
(`workers.cli_lazy`).

Tokens are read from stdin or from environment variables, never from arguments that would land in the
shell history or the process list. Celery, kombu and httpx are imported in the bodies of `relay` and
`check`, the only commands here that need them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

import redis
import typer
from cryptography.fernet import Fernet
from rich.table import Table

from eventstore.client import connect
from eventstore.keys import KeySpace
from eventstore.vehicles import VehicleStateStore
from service_base.logs import configure_logging
from workers.cli_output import console, errors, settings_or_exit
from workers.settings import WorkerSettings
from workers.tokens import TokenError, TokenStore, put_tokens

tokens_app = typer.Typer(help="Smartcar OAuth tokens (encrypted in Redis).", no_args_is_help=True)
vehicle_app = typer.Typer(help="What the workers know about a vehicle.", no_args_is_help=True)

_SHOWN = (
    "queue",
    "pool",
    "concurrency",
    "relay_dispatch",
    "event_concurrency",
    "prefetch_multiplier",
    "visibility_timeout",
    "task_time_limit",
    "max_countdown",
    "event_key_prefix",
    "signals_api",
    "charging_rule_enabled",
)
_CHECK_WAIT = 1  # an operator asking wants an answer now, not a start-up's patience
_TIME_WIDTH = len("2026-12-01T09:30:43+00:00")  # what _time prints


def _time(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@tokens_app.command("new-key")
def new_key() -> None:
    """Print a new Fernet key for TOKEN_ENCRYPTION_KEY (keep the old one after it while rotating)."""
    typer.echo(Fernet.generate_key().decode())


@tokens_app.command("put")
def put(
    vehicle: Annotated[
        list[str] | None, typer.Option("--vehicle", "-v", help="A vehicle the tokens cover.")
    ] = None,
    user: Annotated[str | None, typer.Option(help="The Smartcar user id (the grant's owner).")] = None,
    expires_in: Annotated[float | None, typer.Option(help="Seconds the access token is valid.")] = None,
    from_json: Annotated[
        bool, typer.Option("--json", help="Read Smartcar's token answer (JSON) from stdin.")
    ] = False,
) -> None:
    """Store an access and refresh token pair for one or more vehicles.

    With --json, stdin holds `{"access_token", "refresh_token", "expires_in"}` (Smartcar's token answer;
    `user_id` and `vehicle_ids` are read too when present, as the simulator's /_sim/tokens gives them).
    Otherwise the tokens come from SMARTCAR_ACCESS_TOKEN and SMARTCAR_REFRESH_TOKEN.
    """
    settings = settings_or_exit()
    given: dict[str, Any] = {}
    if from_json:
        try:
            given = json.loads(sys.stdin.read())
        except ValueError:
            errors.print("[red]stdin is not JSON[/red]")
            raise typer.Exit(2) from None
    access = given.get("access_token") or os.environ.get("SMARTCAR_ACCESS_TOKEN")
    refresh = given.get("refresh_token") or os.environ.get("SMARTCAR_REFRESH_TOKEN")
    vehicles = list(vehicle or given.get("vehicle_ids") or [])
    if not access or not refresh:
        errors.print(
            "[red]no tokens: pipe Smartcar's token JSON with --json, or set SMARTCAR_ACCESS_TOKEN/…[/red]"
        )
        raise typer.Exit(2)
    if not vehicles:
        errors.print("[red]name at least one vehicle with --vehicle[/red]")
        raise typer.Exit(2)
    lifetime = expires_in if expires_in is not None else float(given.get("expires_in") or 7200)
    grant = put_tokens(
        vehicle_ids=vehicles,
        access_token=str(access),
        refresh_token=str(refresh),
        expires_in=lifetime,
        user_id=user or given.get("user_id"),
        settings=settings,
    )
    console.print(f"stored tokens of grant [bold]{grant}[/bold] for {', '.join(vehicles)}")


@tokens_app.command("show")
def show(vehicle_id: str) -> None:
    """Show which grant covers a vehicle and when its tokens expire (never the tokens)."""
    settings = settings_or_exit()
    client = connect(settings.redis_url)
    try:
        store = TokenStore(client, settings.fernet(), keys=KeySpace(settings.event_key_prefix))
        try:
            info = store.info(store.grant_of(vehicle_id))
        except TokenError:
            info = None
    finally:
        client.close()
    if info is None:
        errors.print(f"[red]no tokens stored for vehicle {vehicle_id}[/red]")
        raise typer.Exit(1)
    table = Table(show_header=False)
    for name, value in (
        ("grant", info.grant_id),
        ("user", info.user_id or "-"),
        ("vehicles", ", ".join(info.vehicles)),
        ("access token expires", _time(info.expires_at)),
        ("refresh token expires", _time(info.refresh_expires_at)),
        ("generation", str(info.generation)),
        ("updated", _time(info.updated_at)),
    ):
        table.add_row(name, value)
    console.print(table)


@vehicle_app.command("state")
def state(
    vehicle_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """The latest value of every signal of a vehicle (newest oemUpdatedAt wins) and its errors."""
    settings = settings_or_exit()
    client = connect(settings.redis_url)
    try:
        store = VehicleStateStore(client, KeySpace(settings.event_key_prefix))
        signals, vehicle_errors = store.signals(vehicle_id), store.errors(vehicle_id)
    finally:
        client.close()
    if as_json:
        out = {
            "vehicle_id": vehicle_id,
            "signals": {code: s.body for code, s in signals.items()},
            "updated": {code: s.oem_updated_at for code, s in signals.items()},
            "errors": vehicle_errors,
        }
        typer.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    if not signals and not vehicle_errors:
        errors.print(f"nothing known about vehicle {vehicle_id}")
        raise typer.Exit(1)
    table = Table(title=f"vehicle {vehicle_id}")
    table.add_column("signal", no_wrap=True, min_width=max(len(code) for code in signals) if signals else 6)
    for column in ("value", "OEM updated (UTC)", "source", "event"):
        table.add_column(column)
    for code, item in signals.items():
        oem = _time(item.oem_updated_at / 1000) if item.oem_updated_at else "-"
        value = json.dumps(item.value) if not isinstance(item.value, str) else item.value
        table.add_row(code, value, oem, item.source, (item.event_id or "-")[:8])
    console.print(table)
    if vehicle_errors:
        failures = Table(title="errors")
        # The error's key and its time are never cut (rich would end them with an ellipsis at 80
        # columns); the user message wraps instead.
        failures.add_column("error", no_wrap=True, min_width=max(len(key) for key in vehicle_errors))
        failures.add_column("state", no_wrap=True)
        failures.add_column("since (UTC)", no_wrap=True, min_width=_TIME_WIDTH)
        failures.add_column("user message")
        for key, error in vehicle_errors.items():
            failures.add_row(
                key, error["state"], _time(error["at"] / 1000), error.get("suggested_user_message") or ""
            )
        console.print(failures)


def _broker_problems(settings: WorkerSettings, *, wait: int | None = None) -> list[str]:
    import kombu.exceptions  # noqa: PLC0415 - imports Celery only when needed

    from workers.app import broker_problems  # noqa: PLC0415 - the same

    try:
        return broker_problems(settings, wait=wait)
    except (OSError, kombu.exceptions.KombuError, redis.RedisError) as error:
        return [f"the broker at {settings.broker_address} did not answer: {error}"]


def relay() -> None:
    """Run a relay (inbox -> process_event tasks) in the foreground, for workers run with the relay off."""
    settings = settings_or_exit()
    # Its log lines (each failed broker attempt, relay_started, relay_redis_unavailable...) as a worker's:
    # LOG_FORMAT and LOG_LEVEL, on stderr; stdout keeps the two lines printed for the operator.
    configure_logging(settings.log_format, settings.log_level, stream=sys.__stderr__)
    problems = _broker_problems(settings)
    if problems:
        for problem in problems:
            errors.print(f"[red]{problem}[/red]")
        raise typer.Exit(78)
    from workers.app import publishing_app  # noqa: PLC0415 - imports Celery only for this command
    from workers.assembly import Assembly  # noqa: PLC0415 - the same

    assembly = Assembly(publishing_app(settings), settings=settings)
    thread = assembly.relay()
    stop = threading.Event()
    # Both stop it, set here rather than inherited: a shell starts a background job (`relay &`) with
    # SIGINT ignored, and Python then raises no KeyboardInterrupt for Ctrl-C or `kill -INT`.
    for stopping in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stopping, lambda *_: stop.set())
    thread.start()
    inbox = KeySpace(settings.event_key_prefix).inbox
    console.print(f"relaying {inbox} to queue {settings.queue}; Ctrl-C stops")
    while not stop.wait(1.0):
        pass
    thread.stop()
    console.print(f"published {thread.relay.published} events")
    assembly.close()


def check() -> None:
    """Check the settings, the Celery configuration the workers would run with, that Smartcar's token
    endpoint accepts SMARTCAR_CLIENT_ID/SECRET (`workers.credentials`: no user needed), and (on the broker)
    that Celery and kombu still work as workers.publish and workers.broker assume: run it after an upgrade."""
    from workers.credentials import ClientVerdict, probe_client  # noqa: PLC0415 - httpx only for check

    settings = settings_or_exit()
    from workers.app import app as celery_app  # noqa: PLC0415 - Celery only for this command
    from workers.app import check_configuration  # noqa: PLC0415 - Celery only for this command

    problems = check_configuration(celery_app.conf, settings)
    client = probe_client(settings)
    if client.verdict is ClientVerdict.UNSET:
        # Valid settings, but two hours after a Connect every call fails: no token can be refreshed.
        problems.append(
            "warning: SMARTCAR_CLIENT_ID or SMARTCAR_CLIENT_SECRET is not set: no token can be refreshed, "
            "so every vehicle's calls fail once its access token expires"
        )
    elif client.verdict is ClientVerdict.REJECTED:
        problems.append(
            f"Smartcar's token endpoint rejected SMARTCAR_CLIENT_ID/SECRET ({client.detail}): "
            "no token can be refreshed; events needing one wait until they are fixed"
        )
    problems += _broker_problems(settings, wait=_CHECK_WAIT)
    for problem in problems:
        errors.print(f"[red]{problem}[/red]")
    table = Table(show_header=False, title="workers")
    for name in _SHOWN:
        table.add_row(name, str(getattr(settings, name)))
    table.add_row("client credentials", f"{client.verdict.value} ({client.detail})")
    console.print(table)
    if problems:
        raise typer.Exit(78)
