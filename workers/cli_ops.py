"""`smartcar-events pause`, `resume`, `stats`, `purge`, `doctor`: the operator's controls of the pipeline.

- `pause` holds processing: globally (the relays stop claiming; new events wait in the inbox, the receiver
  keeps accepting) or for `--vehicle`s (their events are parked at claim). `resume` lifts it, at once or
  draining at `--rate` events a second (`eventstore.pauses`). Nothing is lost or dead-lettered either way.
- `stats`: what the store holds and how it moves (`gather_stats` says what each figure costs).
- `purge`: done or failed events older than `--before`, deleted through the indexes by the sweeper's own
  trim (`EventStore.trim`: the record and every index entry in one script), after a plan of the counts.
- `doctor`: every check an operator would run by hand, each finding with what, why and the fix
  (`workers.doctor`); exit 0 fine, 1 warnings, 2 problems.

Exit status otherwise as the rest of `smartcar-events`: 2 for a bad invocation (one line), 78 for
settings that cannot work or a Redis that does not answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Annotated, Any

import redis
import typer
from rich.table import Table

from eventstore.events import EventStore
from eventstore.keys import KeySpace
from eventstore.pauses import Pauses, RateError
from eventstore.status import Status
from workers.cli_events import parse_time
from workers.cli_output import checked_vehicle_ids, console, fail, settings_or_exit, store_client
from workers.stats import SAMPLE, Stats, gather_stats

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Vehicles = Annotated[
    list[str] | None,
    typer.Option("--vehicle", "-v", help="Only this vehicle (repeatable).", show_default=False),
]


# --- pause / resume ------------------------------------------------------------------------------------


def pause(
    vehicle: Vehicles = None,
    reason: Annotated[str, typer.Option(help="Why, shown by stats and doctor.")] = "",
) -> None:
    """Hold processing: new events wait in the inbox (with --vehicle: parked at claim) until resume."""
    settings = settings_or_exit()
    with store_client(settings) as client:
        pauses = Pauses(client, KeySpace(settings.event_key_prefix))
        if vehicle:
            pauses.pause_vehicles(checked_vehicle_ids(vehicle))
            console.print(f"paused {len(vehicle)} vehicle(s): their new events are parked until resume")
            return
        pauses.pause(reason=reason)
    console.print("paused: the relays claim nothing; new events wait in the inbox until resume")


def resume(
    vehicle: Vehicles = None,
    rate: Annotated[
        float | None, typer.Option(help="Events a second to let through (default: all at once).")
    ] = None,
) -> None:
    """Lift a pause: the backlog goes at --rate events a second (shared by every relay), or at once."""
    settings = settings_or_exit()
    with store_client(settings) as client:
        pauses = Pauses(client, KeySpace(settings.event_key_prefix))
        try:
            if vehicle:
                released = pauses.resume_vehicles(checked_vehicle_ids(vehicle), rate=rate)
                console.print(
                    f"resumed {len(vehicle)} vehicle(s): {released} parked event(s) released{_at(rate)}"
                )
                return
            was = pauses.resume(rate=rate)
        except RateError as error:
            raise fail(f"--rate: {error}", 2) from None
    if not was:
        console.print("nothing was paused")
    elif rate is None:
        console.print("resumed: the relays claim at full speed")
    else:
        console.print(f"resumed: draining the inbox{_at(rate)}, then full speed")


def _at(rate: float | None) -> str:
    return "" if rate is None else f" at {rate:g} a second"


# --- stats -----------------------------------------------------------------------------------------------


def stats(
    as_json: AsJson = False,
    sample: Annotated[
        int, typer.Option(min=1, max=100_000, help="Records read for reasons and latency.")
    ] = SAMPLE,
) -> None:
    """Counts by status and type, backlog, dead letters by error and reason, outcomes a minute, latency."""
    settings = settings_or_exit()
    with store_client(settings) as client:
        found = gather_stats(client, KeySpace(settings.event_key_prefix), now=time.time(), sample=sample)
    if as_json:
        typer.echo(json.dumps(asdict(found), indent=2, sort_keys=True))
        return
    _print_stats(found)


def _pairs(title: str, values: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("name", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in values.items():
        table.add_row(name, f"{value:g}" if isinstance(value, float) else str(value))
    return table


def _print_stats(found: Stats) -> None:
    console.print(_pairs("by status", found.statuses))
    console.print(_pairs("by type (claimed events)", found.types))
    console.print(_pairs("backlog", found.backlog))
    console.print(_pairs("dead letters by error", found.dead_by_error or {"none": 0}))
    title = f"dead letters by reason (newest {found.dead_reasons_read})"
    console.print(_pairs(title, found.dead_by_reason or {"none": 0}))
    latency = found.receipt_to_done
    if latency["events"]:
        shown = {k: f"{float(v or 0) * 1000:.0f} ms" for k, v in latency.items() if k != "events"}
        console.print(_pairs(f"receipt to done, newest {latency['events']} of the last hour", shown))
    busy = [row for row in found.per_minute if row["done"] or row["failed"]]
    minutes = Table(title="outcomes a minute, last hour (minutes with none left out)")
    for column in ("minute (UTC)", "done", "failed"):
        minutes.add_column(column)
    for row in busy:
        minutes.add_row(
            time.strftime("%H:%M", time.gmtime(row["minute"])), str(row["done"]), str(row["failed"])
        )
    console.print(minutes)
    pause = found.pause
    if pause["global"] or pause["vehicles"]:
        console.print(_pairs("paused", {"global": pause["global"], **pause["vehicles"]}))


# --- purge -----------------------------------------------------------------------------------------------

_PURGED = (Status.DONE.value, Status.FAILED.value)
_OFFSET = 10**6  # `trim` takes a retention back from a `now`: any positive pair that lands on --before
_NEVER = 10**10  # a retention so long that nothing is that old: the status left out


def _plan(client: redis.Redis, keys: KeySpace, chosen: Sequence[str], before: float) -> dict[str, int]:
    """How many of each chosen status took it before `before` (a ZCOUNT each)."""
    with client.pipeline(transaction=False) as pipe:
        for status in chosen:
            pipe.zcount(keys.status_index(status), "-inf", repr(before))
        return {status: int(count) for status, count in zip(chosen, pipe.execute(), strict=True)}


def purge(
    before: Annotated[
        str, typer.Option(help="Older than this: a duration back from now (30d) or an ISO time.")
    ],
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="done or failed (repeatable; default both).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Delete them (without it: only the plan).")] = False,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events deleted per script call.")] = 500,
) -> None:
    """Delete done or failed events older than --before, with their index entries (the sweeper's trim)."""
    now = time.time()
    cutoff = parse_time("--before", before, now=now)
    assert cutoff is not None  # noqa: S101 - a value was given
    if cutoff > now:
        raise fail(f"--before: {before!r} is in the future", 2)
    chosen = list(dict.fromkeys(status or _PURGED))
    for name in chosen:
        if name not in _PURGED:
            raise fail(f"--status: expected done or failed, not {name!r}", 2)
    settings = settings_or_exit()
    keys = KeySpace(settings.event_key_prefix)
    with store_client(settings) as client:
        plan = _plan(client, keys, chosen, cutoff)
        console.print(_pairs(f"older than {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(cutoff))}", plan))
        if not yes:
            console.print("nothing deleted: run again with --yes to delete them")
            return
        store = EventStore(
            client,
            keys,
            retention=_OFFSET if Status.DONE in chosen else _NEVER,
            failed_retention=_OFFSET if Status.FAILED in chosen else None,
        )
        deleted = 0
        while trimmed := store.trim(batch=batch, now=cutoff + _OFFSET):
            deleted += trimmed
        left = _plan(client, keys, chosen, cutoff)
    console.print(f"deleted {deleted} event(s) with their index entries")
    if any(left.values()):
        console.print(f"left (their record changed meanwhile): {left}")
