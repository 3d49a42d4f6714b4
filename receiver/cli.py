"""`python -m receiver`: the receiver's operator commands (settings from the same environment as the app).

python -m receiver preflight               # would the receiver start? exit 3 with one line if not
python -m receiver check                   # settings valid? Redis answers? (prints no secret)
python -m receiver arm-verify --minutes 15 # answer VERIFY for 15 minutes (RECEIVER_VERIFY_REQUIRE_ARMED)
python -m receiver disarm-verify
python -m receiver verify-status
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import redis
import typer
from rich.console import Console

from eventstore.client import connect
from eventstore.keys import KeySpace
from eventstore.verify import VerifySwitch
from receiver.settings import ReceiverSettings, SettingsError, load_settings

MAX_ARM_MINUTES = 24 * 60

cli = typer.Typer(help="Operator commands of the Smartcar webhook receiver.", no_args_is_help=True)
console = Console()


def _settings() -> ReceiverSettings:
    try:
        return load_settings()
    except SettingsError as error:
        console.print(f"[red]configuration error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def _redis(settings: ReceiverSettings) -> Iterator[redis.Redis]:
    """A client on the receiver's Redis, closed after; a Redis error ends the command: one line, exit 1."""
    client = connect(settings.redis_url, timeout=settings.redis_timeout)
    try:
        yield client
    except redis.RedisError as error:
        gone = isinstance(error, redis.ConnectionError | redis.TimeoutError)
        problem = "does not answer" if gone else "refused the command"
        console.print(
            f"[red]Redis {problem} at {settings.redis_address}:[/red] {type(error).__name__}", highlight=False
        )
        raise typer.Exit(1) from None
    finally:
        client.close()


def _switch(client: redis.Redis, settings: ReceiverSettings) -> VerifySwitch:
    return VerifySwitch(client, KeySpace(settings.event_key_prefix))


@cli.command()
def preflight() -> None:
    """Build what uvicorn's start builds (the app, Redis checked; the public port's protocol) and serve
    nothing: exit 3 with the same one line when the receiver could not start, 0 when it could.

    The launch lines run it before `uvicorn --workers N`: uvicorn's supervisor stops when its processes
    fail to start, and exits 0, which a supervisor reads as a clean stop.
    """
    import receiver.app  # noqa: PLC0415 - the lazy attributes below are the start-up itself
    import receiver.http  # noqa: PLC0415

    _ = receiver.app.app, receiver.http.LimitedHttpToolsProtocol  # each exits 3 with one line if it fails
    console.print("the receiver can start", highlight=False)


@cli.command()
def check() -> None:
    """Validate the settings and reach Redis; exit 1 when Redis does not answer (2: bad settings)."""
    settings = _settings()
    with _redis(settings) as client:
        client.ping()
    verify = "needs arming" if settings.verify_require_armed else "answered when well-formed"
    console.print(
        f"settings ok: {len(settings.amts)} AMT(s), key prefix {settings.event_key_prefix!r}, "
        f"max body {settings.max_body_bytes} bytes, dedupe {settings.event_dedupe_seconds} s, "
        f"VERIFY {verify}; Redis answers",
        highlight=False,
    )


@cli.command("arm-verify")
def arm_verify(
    minutes: int = typer.Option(15, min=1, max=MAX_ARM_MINUTES, help="How long VERIFY is answered."),
) -> None:
    """Answer VERIFY challenges for a while: do it just before creating the webhook or changing its URL."""
    settings = _settings()
    with _redis(settings) as client:
        _switch(client, settings).arm(minutes * 60)
    until = datetime.now(UTC) + timedelta(minutes=minutes)
    console.print(f"VERIFY armed until {until:%Y-%m-%d %H:%M:%S} UTC", highlight=False)
    if not settings.verify_require_armed:
        console.print("note: RECEIVER_VERIFY_REQUIRE_ARMED is off here, so VERIFY is answered anyway")


@cli.command("disarm-verify")
def disarm_verify() -> None:
    """Stop answering VERIFY now (when arming is required)."""
    settings = _settings()
    with _redis(settings) as client:
        removed = _switch(client, settings).disarm()
    console.print("VERIFY disarmed" if removed else "VERIFY was not armed")


@cli.command("verify-status")
def verify_status() -> None:
    """Say whether VERIFY is answered now, and for how long."""
    settings = _settings()
    with _redis(settings) as client:
        ttl = _switch(client, settings).seconds_left()
    if not settings.verify_require_armed:
        console.print("VERIFY is answered whenever it is well-formed (RECEIVER_VERIFY_REQUIRE_ARMED is off)")
    elif ttl > 0:
        console.print(f"VERIFY armed for {ttl} more seconds")
    elif settings.verify_window_open():
        console.print(f"VERIFY answered until {settings.verify_window_until} (RECEIVER_VERIFY_WINDOW_UNTIL)")
    else:
        console.print("VERIFY refused: not armed (python -m receiver arm-verify)")


def main() -> None:
    cli()
