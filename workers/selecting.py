"""What an operator selects events by, read and checked once for every operator tool: `smartcar-events`
(`events list`, `replay`, `pause`/`resume`, `purge`) and the admin HTTP API (`workers.admin_api`).

Each check raises `SelectionError`, whose message names the option at fault in the caller's own spelling
(`spell`: `--error-code` on the command line, `error_code` in the API), so that the CLI can end with it in
one line (exit 2) and the API can answer it as a 400, from the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eventstore.query import EventFilter
from eventstore.status import Status

if TYPE_CHECKING:  # the replay machinery only for a replay: `events list` and `--help` load none of it
    from workers.replay import Selection

VEHICLE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
Spell = Callable[[str], str]


class SelectionError(ValueError):
    """A filter, time, rate or selection that cannot be used; the message names the option."""


def cli_option(name: str) -> str:
    """A field as the command line spells it: `error_code` -> `--error-code`."""
    return "--" + name.replace("_", "-")


def parse_time(option: str, value: str | None, *, now: float) -> float | None:
    """A duration back from `now` (`90s`, `15m`, `2h`, `7d`, `1w`) or an ISO time (UTC unless it says)."""
    if value is None:
        return None
    given = value.strip()
    duration = _DURATION.match(given)
    if duration:
        return now - float(duration.group(1)) * _UNITS[duration.group(2)]
    try:
        moment = datetime.fromisoformat(given)
    except ValueError:
        raise SelectionError(f"{option}: expected a duration like 2h or an ISO time, not {value!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def event_filter(wanted: EventFilter, spell: Spell = cli_option) -> EventFilter:
    """`wanted`, its values checked (the filter of `events list` and of a replay by filter), each status
    once."""
    known = [status.value for status in Status]
    for status in wanted.statuses:
        if status not in known:
            raise SelectionError(f"{spell('status')}: expected one of {', '.join(known)}, not {status!r}")
    if wanted.error_code is not None and wanted.error_type is None:
        raise SelectionError(
            f"{spell('error_code')}: give {spell('error_type')} too (codes are Smartcar's per type)"
        )
    if wanted.since is not None and wanted.until is not None and wanted.since > wanted.until:
        raise SelectionError(f"{spell('since')}: after {spell('until')}, so nothing can match")
    return replace(wanted, statuses=tuple(dict.fromkeys(wanted.statuses)))


@dataclass(frozen=True, slots=True)
class Conditions:
    """A filter as given (the options of `events list` and `replay`): `EventFilter`'s conditions, with the
    times still as text (`--since 2h`), read against the clock by `build`."""

    equal: EventFilter = field(default_factory=EventFilter)
    """Every condition but the times (its `since` and `until` are not read)."""
    since: str | None = None
    until: str | None = None

    def given(self) -> bool:
        return self.equal != EventFilter() or self.since is not None or self.until is not None

    def build(self, *, now: float, spell: Spell = cli_option) -> EventFilter:
        since = parse_time(spell("since"), self.since, now=now)
        until = parse_time(spell("until"), self.until, now=now)
        return event_filter(replace(self.equal, since=since, until=until), spell)


def given_conditions(
    *,
    status: list[str] | None,
    event_type: str | None,
    vehicle: str | None,
    user: str | None,
    webhook: str | None,
    error_type: str | None,
    error_code: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
) -> Conditions:
    """The filter of `events list` and `replay` (the CLI's options, the admin API's parameters) as given."""
    equal = EventFilter(
        statuses=tuple(status or ()),
        event_type=event_type,
        vehicle_id=vehicle,
        user_id=user,
        webhook_id=webhook,
        error_type=error_type,
        error_code=error_code,
        reason=reason,
    )
    return Conditions(equal, since=since, until=until)


def check_rate(rate: float, *, spell: Spell = cli_option) -> float:
    if not rate > 0:
        raise SelectionError(f"{spell('rate')}: expected events a second above 0, not {rate:g}")
    return rate


def replay_selection(
    ids: Iterable[str],
    conditions: Conditions,
    *,
    include_done: bool,
    limit: int,
    now: float,
    spell: Spell = cli_option,
) -> Selection:
    """What a replay selects: event ids, or a filter (the failed ones unless it names statuses); done events
    are replayed too with `include_done`."""
    ids = tuple(ids)
    if ids and conditions.given():
        raise SelectionError("give event ids or a filter, not both")
    if not ids and not conditions.given():
        example = f"{spell('since')} 2h or {spell('error_type')}"
        raise SelectionError(f"nothing selected: give event ids, or a filter such as {example}")
    wanted = conditions.build(now=now, spell=spell) if conditions.given() else None
    statuses = (Status.FAILED, Status.DONE) if include_done else (Status.FAILED,)
    from workers.replay import Selection  # noqa: PLC0415 - see the imports

    return Selection(ids=ids, wanted=wanted, statuses=statuses, limit=limit)


def vehicle_ids(ids: Iterable[str]) -> list[str]:
    """`ids` without repeats, each one a vehicle id as Smartcar writes them (not empty, no space, no
    shell's leftover quote...); the first that is not is named."""
    found = list(ids)
    for vehicle_id in found:
        if not VEHICLE_ID.match(vehicle_id):
            raise SelectionError(f"not a vehicle id: {vehicle_id!r} (letters, digits, '.', '_', ':', '-')")
    return list(dict.fromkeys(found))
