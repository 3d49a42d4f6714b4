"""`smartcar-events replay`: put dead letters back through the workers, planned first, as a job in Redis.

    smartcar-events replay ID...                 # the plan of these events
    smartcar-events replay --since 2h            # the failed ones of a time window (any `events list` filter)
    smartcar-events replay --error-type BILLING --rate 20 --yes    # a job, run by the workers
    smartcar-events replay status JOB            # progress and counts; `--follow` until it ends
    smartcar-events replay cancel JOB

Without `--yes` it prints the plan and stops: how many, by type and by Smartcar error, what is skipped and
why, the time at `--rate`. With `--yes` the ids are snapshotted as a job (`eventstore.replays`) that any
worker runs at the rate and within the application's rate bucket (`workers.replay`); the CLI follows it
(a progress bar on a terminal, a plain line a second otherwise) and can be stopped or killed at any
time: the job goes on. `--detach` returns once it is created. A filter with no `--status` selects the
failed events (an event done since it failed is done, not failed). A replayed event keeps its history
and gets a new attempt; a command already done for (event, step) is not sent again, unless
`--resend-commands` (recorded in the event's history and on the command's record).

Exit status, as `events`: 0 done, 1 nothing to replay (or no such job), 2 a bad invocation, 78 settings
or a Redis that does not answer.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperGroup

from eventstore.replays import ReplayJob, ReplayStore
from workers.cli_events import _store
from workers.cli_output import console, errors, fail, send_or_say
from workers.replay import (
    DEFAULT_LIMIT,
    DEFAULT_RATE,
    MAX_LIMIT,
    REPLAY_TASK,
    SIGNED_NOTE,
    Plan,
    job_view,
    make_plan,
    start_job,
)
from workers.selecting import SelectionError, check_rate, given_conditions, replay_selection
from workers.settings import load_settings

_POLL = 1.0


class _ReplayGroup(TyperGroup):
    """`replay ID...` and `replay --since ...` run the `run` command; `status` and `cancel` are theirs."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or args[0] not in (*self.commands, "--help"):  # ctx: typer's own click Context
            args = ["run", *args]
        return super().parse_args(ctx, args)


replay_app = typer.Typer(
    cls=_ReplayGroup,
    help="Replay events: `replay ID...` or `replay --since 2h` (any events-list filter; `replay run --help`) "
    "prints the plan; with --yes the workers run it as a job.",
)
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@replay_app.command("run", hidden=True)
def run(  # noqa: PLR0917 - one parameter per option, as the command line has them
    ids: Annotated[list[str] | None, typer.Argument(help="Event ids (or give a filter).")] = None,
    status: Annotated[list[str] | None, typer.Option("--status", "-s", help="Default: failed.")] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="VEHICLE_STATE...")] = None,
    vehicle: Annotated[str | None, typer.Option("--vehicle", "-v")] = None,
    user: Annotated[str | None, typer.Option("--user")] = None,
    webhook: Annotated[str | None, typer.Option("--webhook")] = None,
    error_type: Annotated[str | None, typer.Option("--error-type")] = None,
    error_code: Annotated[str | None, typer.Option("--error-code")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Part of the dead reason.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="2h, 7d or an ISO time.")] = None,
    until: Annotated[str | None, typer.Option("--until")] = None,
    rate: Annotated[float, typer.Option("--rate", help="Events a second.")] = DEFAULT_RATE,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="At most.")] = DEFAULT_LIMIT,
    include_done: Annotated[bool, typer.Option("--include-done", help="Replay done events too.")] = False,
    resend: Annotated[
        bool, typer.Option("--resend-commands", help="Send commands already done again (recorded).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Create the job (else: the plan only).")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Do not follow the job.")] = False,
    as_json: AsJson = False,
) -> None:
    """Plan a replay of events given by id or by filter; with --yes, make it a job the workers run."""
    given = given_conditions(
        status=status, event_type=event_type, vehicle=vehicle, user=user, webhook=webhook,
        error_type=error_type, error_code=error_code, reason=reason, since=since, until=until,
    )  # fmt: skip
    try:
        check_rate(rate)
        now = time.time()
        selection = replay_selection(ids or (), given, include_done=include_done, limit=limit, now=now)
    except SelectionError as error:
        raise fail(str(error), 2) from None
    with _store() as store:
        replays = ReplayStore(store.events.redis, store.keys)
        plan = make_plan(store.events, store.query, replays, selection, rate=rate)
        _print_plan(plan, as_json=as_json)
        if not plan.selected:
            errors.print("nothing to replay")
            raise typer.Exit(1)
        if not yes:
            errors.print("a plan only: add --yes to replay these events")
            return
        created = start_job(replays, plan, selection, resend=resend)
        errors.print(f"replay job {created.job_id}: {created.taken} events", highlight=False)
        if created.in_other_replay:
            errors.print(f"{created.in_other_replay} left out: taken by another replay job meanwhile")
        send_or_say(load_settings(), REPLAY_TASK)
        if not detach:
            _follow(replays, created.job_id)
    if as_json:
        typer.echo(json.dumps({"job": created.job_id}))


def _print_plan(plan: Plan, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(plan.as_dict(), sort_keys=True))
        return
    console.print(
        f"[bold]{len(plan.selected)}[/bold] events to replay, at {plan.rate:g}/s: about "
        f"{_duration(plan.seconds)}",
        highlight=False,
    )
    for title, counts in (("by type", plan.by_type), ("by error", plan.by_error), ("skipped", plan.skipped)):
        if counts:
            table = Table(title=title, show_header=False)
            for name, count in counts.most_common():
                table.add_row(name, str(count))
            console.print(table)
    console.print(SIGNED_NOTE, highlight=False)


def _duration(seconds: float) -> str:
    if seconds < 120:  # noqa: PLR2004 - minutes from two on
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"  # noqa: PLR2004


def _follow(replays: ReplayStore, job_id: str) -> None:
    """Until the job ends: a bar on a terminal, else a line a second. Leaving early stops nothing."""
    if console.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
        with Progress(*columns, TimeRemainingColumn(), console=console) as progress:
            task = progress.add_task(f"replay {job_id}", total=None)
            while (job := _wait(replays, job_id)) is not None:
                progress.update(task, total=job.total, completed=job.cursor)
                if job.finished:
                    break
    else:
        while (job := _wait(replays, job_id)) is not None:
            typer.echo(_line(job))
            if job.finished:
                break


def _wait(replays: ReplayStore, job_id: str) -> ReplayJob | None:
    job = replays.get(job_id)
    if job is not None and not job.finished:
        time.sleep(_POLL)
    return job


def _line(job: ReplayJob) -> str:
    counts = " ".join(f"{name} {count}" for name, count in job.counts.items() if count)
    return f"replay {job.id} {job.status}: {job.cursor}/{job.total} {counts}".rstrip()


@replay_app.command("status")
def status_of(
    job_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the job ends.")] = False,
    as_json: AsJson = False,
) -> None:
    """A replay job's progress and counts."""
    with _store() as store:
        replays = ReplayStore(store.events.redis, store.keys)
        job = replays.get(job_id)
        if job is None:
            raise fail(f"no replay job {job_id} (never made, or past its retention)", 1)
        if follow and not job.finished:
            _follow(replays, job_id)
            job = replays.get(job_id) or job
    if as_json:
        typer.echo(json.dumps(job_view(job), sort_keys=True))
        return
    table = Table(title=f"replay {job.id}", show_header=False)
    for name, value in job_view(job).items():
        table.add_row(name, value if isinstance(value, str) else json.dumps(value))
    console.print(table)


@replay_app.command("cancel")
def cancel(job_id: str) -> None:
    """Stop a replay job where it is: what was replayed stays replayed, the rest is left as it is."""
    with _store() as store:
        replays = ReplayStore(store.events.redis, store.keys)
        after = replays.cancel(job_id)
        job = replays.get(job_id)
    if after is None or job is None:
        raise fail(f"no replay job {job_id} (never made, or past its retention)", 1)
    typer.echo(_line(job))
    if after.value != "cancelled":
        errors.print(f"replay job {job_id} had ended ({after.value}): nothing to cancel")
        raise typer.Exit(1)
