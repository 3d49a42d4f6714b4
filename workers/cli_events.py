"""`smartcar-events events`: find events (`list`) and look at one whole (`show`).

`list` reads the store's operator indexes (`eventstore.query`), so a filter costs what it returns, not
the number of events stored: `--status failed` lists the dead letters however many events are done.
Filters combine (all must hold); `--since` and `--until` take a duration back from now (`90s`, `15m`,
`2h`, `7d`, `1w`) or an ISO time, and select by when each event took its current status (its failure
for a dead letter). Newest first, `--limit` a page; a page that is not the last ends with the
`--cursor` of the next on stderr. `--json` prints one JSON object a line.

`show` prints the record, the payload as received (pretty-printed), every attempt (time, outcome,
handler, Smartcar's error type and code, HTTP status, request id, message and resolution), each
handler's result and the commands sent, with their state and outcome.

Exit status, as the rest of `smartcar-events`: 0 when something was printed, 1 for nothing found, 2 for
a bad invocation (one line, naming the option), 78 for settings that cannot work or a Redis that does not
answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from eventstore.commands import CommandStore, StepRecord
from eventstore.events import EventStore
from eventstore.index import stored_error_key
from eventstore.keys import KeySpace
from eventstore.query import CursorError, EventQuery
from eventstore.record import EventRecord
from workers import selecting
from workers.cli_output import console, errors, fail, settings_or_exit, store_client
from workers.cli_reindex import reindex

events_app = typer.Typer(
    help="Events: list them by status, vehicle, error...; show one whole.", no_args_is_help=True
)

_MAX_LIMIT = 100_000
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (list: one object a line).")]


@dataclass(frozen=True, slots=True)
class _Store:
    keys: KeySpace
    events: EventStore
    query: EventQuery
    commands: CommandStore


@contextmanager
def _store() -> Iterator[_Store]:
    """The store on a client of its own, closed after; a Redis that does not answer is one line."""
    settings = settings_or_exit()
    keys = KeySpace(settings.event_key_prefix)
    with store_client(settings) as client:
        yield _Store(
            keys,
            EventStore(client, keys, retention=settings.done_retention),
            EventQuery(client, keys),
            CommandStore(client, keys, retention=settings.done_retention),
        )


def parse_time(option: str, value: str | None, *, now: float) -> float | None:
    """`--since`/`--until`: a duration back from `now` (`2h`) or an ISO time (`workers.selecting`)."""
    try:
        return selecting.parse_time(option, value, now=now)
    except selecting.SelectionError as error:
        raise fail(str(error), 2) from None


def _iso(epoch: float | str | None) -> str | None:
    if epoch in (None, "", 0):
        return None
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="seconds")


def _error_of(fields: dict[str, str]) -> dict[str, Any] | None:
    try:
        error = json.loads(fields.get("last_error") or "null")
    except ValueError:
        return None
    return error if isinstance(error, dict) else None


def summary(record: EventRecord) -> dict[str, Any]:
    """One event as `list --json` prints it."""
    fields = record.fields
    error = _error_of(fields)
    return {
        "id": record.id,
        "type": record.type,
        "status": record.status,
        "status_at": _iso(fields.get("updated_at") or record.received_at),
        "received_at": _iso(record.received_at),
        "vehicle_id": record.vehicle_id,
        "user_id": record.user_id,
        "webhook_id": fields.get("webhook_id") or None,
        "attempts": record.attempts,
        "error": None if error is None else {k: error.get(k) for k in ("class", "type", "code", "status")},
        "dead_reason": fields.get("dead_reason") or None,
        "next_attempt_at": _iso(fields.get("next_attempt_at")),
    }


@events_app.command("list")
def list_events(  # noqa: PLR0917 - one parameter per filter, as the command line has them
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="received, queued, ... failed (repeatable).")
    ] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="VEHICLE_STATE, VEHICLE_ERROR...")] = None,
    vehicle: Annotated[str | None, typer.Option("--vehicle", "-v", help="A vehicle id.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="A Smartcar user id.")] = None,
    webhook: Annotated[str | None, typer.Option("--webhook", help="A webhook id.")] = None,
    error_type: Annotated[
        str | None, typer.Option("--error-type", help="Smartcar's error type of the last failure.")
    ] = None,
    error_code: Annotated[str | None, typer.Option("--error-code", help="And its code.")] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Part of the dead reason (failed only).")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="2h, 7d or an ISO time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="The same.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=_MAX_LIMIT, help="A page's size.")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Where the previous page ended.")] = None,
    as_json: AsJson = False,
) -> None:
    """List events, newest first, by status, type, vehicle, user, webhook, Smartcar error, reason, time."""
    given = selecting.given_conditions(
        status=status, event_type=event_type, vehicle=vehicle, user=user, webhook=webhook,
        error_type=error_type, error_code=error_code, reason=reason, since=since, until=until,
    )  # fmt: skip
    try:
        wanted = given.build(now=time.time())
    except selecting.SelectionError as error:
        raise fail(str(error), 2) from None
    with _store() as store:
        try:
            page = store.query.page(wanted, limit=limit, cursor=cursor)
        except CursorError as error:
            raise fail(f"--cursor: {error}", 2) from None
    if as_json:  # one write: a line each is most of a long listing's time
        typer.echo(
            "".join(json.dumps(summary(record), sort_keys=True) + "\n" for record in page.records), nl=False
        )
    elif page.records:
        console.print(_table(page.records))
    if page.cursor is not None:
        errors.print(f"next page: --cursor {page.cursor}", markup=False, highlight=False)
    if not page.records:
        errors.print("no event matches" if cursor is None else "no more events")
        raise typer.Exit(1)


def _table(records: list[EventRecord]) -> Table:
    table = Table()
    table.add_column("event", no_wrap=True, min_width=36)
    for column in ("type", "status", "since (UTC)", "vehicle", "tries", "error", "reason / next try"):
        table.add_column(column, overflow="fold")
    for record in records:
        fields = record.fields
        error_type, code = stored_error_key(fields.get("last_error"))
        error = _error_of(fields) or {}
        shown = f"{error_type}:{code}" if error_type else str(error.get("class") or "")
        later = fields.get("dead_reason") or _iso(fields.get("next_attempt_at")) or ""
        table.add_row(
            record.id,
            record.type,
            record.status,
            _iso(fields.get("updated_at") or record.received_at) or "-",
            record.vehicle_id or "-",
            str(record.attempts),
            shown,
            later,
        )
    return table


@events_app.command("show")
def show(event_id: str, as_json: AsJson = False) -> None:
    """One event whole: the record, the payload, every attempt, handler results, commands sent."""
    with _store() as store:
        record = store.events.load(event_id)
        steps = store.commands.steps(event_id) if record is not None else {}
    if record is None:
        raise fail(f"no event {event_id} (never received, or past its retention)", 1)
    if as_json:
        typer.echo(json.dumps(detail(record, steps), indent=2, sort_keys=True))
        return
    _print_event(record, {name: _command(step.fields) for name, step in steps.items()})


def detail(record: EventRecord, steps: Mapping[str, StepRecord]) -> dict[str, Any]:
    """One event whole, as `show --json` prints it (and the admin API answers it)."""
    return {
        "record": {k: v for k, v in record.fields.items() if k not in ("history", "results")},
        "payload": _payload(record.raw),
        "attempts": record.history,
        "results": record.results,
        "commands": {name: _command(step.fields) for name, step in steps.items()},
    }


def _payload(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _command(fields: dict[str, str]) -> dict[str, Any]:
    shown: dict[str, Any] = {k: fields.get(k) for k in ("state", "command", "sends")}
    shown["sent_at"] = _iso(fields.get("sent_at"))
    shown["updated_at"] = _iso(fields.get("updated_at"))
    for name in ("params", "result"):
        shown[name] = _payload(fields[name].encode()) if fields.get(name) else None
    return shown


_RECORD_ROWS = (
    ("status", "status"),
    ("type", "type"),
    ("vehicle", "vehicle_id"),
    ("user", "user_id"),
    ("webhook", "webhook_id"),
    ("mode", "mode"),
    ("attempts", "attempts"),
    ("dead reason", "dead_reason"),
    ("worker", "worker"),
    ("deliveries", "deliveries"),
)
_RECORD_TIMES = (
    ("received", "received_at"),
    ("queued", "queued_at"),
    ("started", "started_at"),
    ("updated", "updated_at"),
    ("next attempt", "next_attempt_at"),
    ("lease until", "lease_until"),
    ("finished", "finished_at"),
    ("failed", "failed_at"),
)


def _print_event(record: EventRecord, commands: dict[str, dict[str, Any]]) -> None:
    fields = record.fields
    table = Table(title=f"event {record.id}", show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    for label, name in _RECORD_ROWS:
        if fields.get(name):
            table.add_row(label, fields[name])
    for label, name in _RECORD_TIMES:
        if fields.get(name):
            table.add_row(f"{label} (UTC)", _iso(fields[name]) or "-")
    console.print(table)
    console.print("[bold]payload[/bold]")
    console.print(json.dumps(_payload(record.raw), indent=2, sort_keys=True), markup=False, highlight=False)
    console.print(_attempts(record.history))
    if record.results:
        console.print("[bold]handler results[/bold]")
        console.print(json.dumps(record.results, indent=2, sort_keys=True), markup=False, highlight=False)
    if commands:
        console.print("[bold]commands[/bold]")
        console.print(json.dumps(commands, indent=2, sort_keys=True), markup=False, highlight=False)
    else:
        console.print("no command sent (or its record expired)")


def _attempts(history: list[dict[str, Any]]) -> Table | str:
    if not history:
        return "no attempt ended yet"
    table = Table(title="attempts")
    for column in ("at (UTC)", "#", "outcome", "handler", "error", "HTTP", "request id", "what to do"):
        table.add_column(column, overflow="fold")
    for entry in history:
        error = entry.get("error") or {}
        kind = ":".join(str(part) for part in (error.get("type"), error.get("code")) if part)
        resolution = entry.get("resolution") or {}
        advice = [
            str(error.get("message") or ""),
            str(entry.get("suggested_user_message") or ""),
            " ".join(str(part) for part in (resolution.get("type"), resolution.get("url")) if part),
            str(entry.get("reason") or ""),
        ]
        table.add_row(
            _iso(entry.get("at")) or "-",
            str(entry.get("attempt", "")),
            str(entry.get("outcome", "")),
            str(entry.get("handler") or ""),
            kind or str(error.get("class") or ""),
            str(error.get("status") or ""),
            str(error.get("request_id") or ""),
            "\n".join(part for part in advice if part),
        )
    return table


events_app.command("reindex")(reindex)  # after list and show in the help; its own module
