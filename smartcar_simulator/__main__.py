"""`smartcar-simulator` (also `python -m smartcar_simulator`): serve the local Smartcar.

Flags override the environment (`SIMULATOR_*`, and `SMARTCAR_CLIENT_ID` / `SMARTCAR_CLIENT_SECRET` /
`SMARTCAR_AMT` / `SMARTCAR_WEBHOOK_ID` for the application), which overrides the defaults.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console

from smartcar_simulator.app import create_app
from smartcar_simulator.settings import SimulatorSettings

cli = typer.Typer(add_completion=False, help="A local Smartcar: API, Connect, webhooks and fault injection.")
console = Console(stderr=True)

Opt = typer.Option


@cli.command()
def serve(  # noqa: PLR0917 - typer maps one parameter to each flag
    host: Annotated[str | None, Opt(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, Opt(help="Port to bind (default 8010).")] = None,
    vehicles: Annotated[int | None, Opt(help="Fleet size (default 10).")] = None,
    seed: Annotated[int | None, Opt(help="Fleet seed: the same seed builds the same fleet.")] = None,
    latency: Annotated[
        str | None, Opt(help="Answer delay: SECONDS, uniform:LOW,HIGH or longtail:MEDIAN,P99.")
    ] = None,
    apply_at: Annotated[
        str | None,
        Opt(help="When within its latency a call takes effect: start, middle or end (default)."),
    ] = None,
    vehicles_per_user: Annotated[int | None, Opt(help="Vehicles per simulated owner (default 2).")] = None,
    access_token_ttl: Annotated[float | None, Opt(help="Access token lifetime in seconds (7200).")] = None,
    refresh_grace: Annotated[
        float | None, Opt(help="Seconds a rotated refresh token still works (60).")
    ] = None,
    clock_speed: Annotated[float | None, Opt(help="Simulated seconds per real second (charging).")] = None,
    time_scale: Annotated[float | None, Opt(help="Multiplier of webhook retry delays 25/50/100 s.")] = None,
    webhook_url: Annotated[str | None, Opt(help="Deliver SMARTCAR_WEBHOOK_ID's events to this URL.")] = None,
    webhook_id: Annotated[str | None, Opt(help="The webhook id (default: $SMARTCAR_WEBHOOK_ID).")] = None,
    subscribe_all: Annotated[
        bool | None, Opt(help="Subscribe every vehicle to the webhook at start.")
    ] = None,
    rate_limits: Annotated[
        str | None, Opt(help='JSON, e.g. {"per_vehicle": {"limit": 5, "window_seconds": 60}}.')
    ] = None,
    faults: Annotated[str | None, Opt(help="JSON list of fault rules, as POST /_sim/faults takes.")] = None,
    access_log: Annotated[bool | None, Opt(help="Log every request (off: the benchmark's hot path).")] = None,
    log_level: Annotated[str | None, Opt(help="critical, error, warning (default), info, debug.")] = None,
) -> None:
    """Serve the simulator until interrupted."""
    given: dict[str, Any] = {
        name: value
        for name, value in {
            "host": host,
            "port": port,
            "vehicles": vehicles,
            "seed": seed,
            "latency": latency,
            "apply_at": apply_at,
            "vehicles_per_user": vehicles_per_user,
            "access_token_ttl": access_token_ttl,
            "refresh_grace": refresh_grace,
            "clock_speed": clock_speed,
            "time_scale": time_scale,
            "webhook_url": webhook_url,
            "webhook_id": webhook_id,
            "subscribe_all": subscribe_all,
            "rate_limits": _json(rate_limits, "--rate-limits"),
            "faults": _json(faults, "--faults"),
            "access_log": access_log,
            "log_level": log_level,
        }.items()
        if value is not None
    }
    try:
        settings = SimulatorSettings(**given)
    except (ValidationError, ValueError) as error:
        console.print(f"[red]invalid settings:[/red] {error}")
        raise typer.Exit(2) from None
    url = f"http://{settings.host}:{settings.port}"
    console.print(
        f"[bold]Smartcar simulator[/bold] on {url}: {settings.vehicles} vehicles, seed {settings.seed}"
    )
    console.print("Point the SDKs and services here:")
    for name in ("API", "CONNECT", "MANAGEMENT_API", "VEHICLE_API_V3"):
        console.print(f"  export SMARTCAR_{name}_ORIGIN={url}")
    console.print(f"  export SMARTCAR_AUTH_ORIGIN={url}/oauth/token")
    console.print(f"Control endpoints: {url}/_sim/health, /_sim/vehicles, /_sim/tokens, /_sim/faults ...")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
        log_level=settings.log_level,
        ws="none",
        timeout_keep_alive=30,
    )


def _json(value: str | None, flag: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as error:
        console.print(f"[red]{flag} is not JSON:[/red] {error}")
        raise typer.Exit(2) from None


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
