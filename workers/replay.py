"""Replays: what a selection would replay (`make_plan`), and the run of a replay job (`ReplayRunner`).

Only stored events can be replayed, and every stored event passed the receiver's SC-Signature check
before it was stored: a replay runs the body exactly as signed and received, never one given here.

**The plan** (always made first, and all the CLI does without `--yes`): ids given, or a filter on the
operator indexes (`eventstore.query`; the failed ones unless the filter names statuses). It counts what
would be replayed by event type and by Smartcar error, what is skipped and why (not stored, done, in
progress: a run or a retry will see to it, already in another replay job), and the time it takes at the
rate. Confirmed, its ids become a job (`eventstore.replays`), which any worker runs.

**The run** (`ReplayRunner.run`, from the beat-driven task `workers.replay_jobs`): a worker takes a due
job under a lease and goes through its ids from the cursor, at most `rate` a second (the i-th id of this
run not before i / rate s after its start), never more at once than Smartcar's application bucket could
serve now (`eventstore.replays.ReplayStore.bucket_room`) and none while the application is paused: the
replayed events take their own tokens when they call Smartcar. Each id is re-checked as it comes: one
done since the plan, in progress or gone is skipped and counted. The lease is renewed as it goes; after
`replay_run_seconds` the job is handed on (due now, for any worker). A worker that dies leaves the job to
the next one once the lease ends, at the cursor.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from eventstore.events import EventStore
from eventstore.index import stored_error_key
from eventstore.query import EventFilter, EventQuery
from eventstore.record import EventRecord
from eventstore.replays import Created, ReplayJob, ReplayStore
from eventstore.status import Status
from service_base.logs import get_logger
from workers.settings import WorkerSettings

if TYPE_CHECKING:  # an annotation only: `events list` and `replay` need no Prometheus client
    from workers.metrics import WorkerMetrics

log = get_logger("workers.replay")

REPLAY_TASK = "workers.replay_jobs"
"""The task that runs due replay jobs (beat, every WORKERS_REPLAY_INTERVAL; the CLI sends it too)."""
SIGNED_NOTE = (
    "only stored events are replayed, and every stored event passed the receiver's SC-Signature check: "
    "the replay runs the body as it was signed and received"
)
AUTO_REASON = "replayed because Smartcar resolved"
"""How the reason of an automatic replay starts (`workers.auto_replay`)."""
_PAGE = 1000
DEFAULT_RATE = 10.0
"""Events a second a replay runs at unless told (`smartcar-events replay --rate`, the admin API's `rate`)."""
DEFAULT_LIMIT = 100_000
"""The most events a replay selects unless told (`--limit`, `limit`)."""
MAX_LIMIT = 1_000_000
"""The most events one replay may select."""
_BUCKET_WAIT = 1.0


def error_label(fields: dict[str, str]) -> str:
    """TYPE:CODE of a record's last Smartcar error, its class for another failure, or "-"."""
    error_type, code = stored_error_key(fields.get("last_error"))
    if error_type:
        return f"{error_type}:{code}" if code else error_type
    return "other" if fields.get("last_error") else "-"


@dataclass
class Plan:
    """What a replay would do: `selected` ids (in order), their counts, and what is skipped and why."""

    rate: float
    selected: list[str] = field(default_factory=list)
    by_type: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    truncated: bool = False

    @property
    def seconds(self) -> float:
        """The estimated time at the rate (the rate bucket may make it longer)."""
        return len(self.selected) / self.rate

    def add(self, record: EventRecord) -> None:
        self.selected.append(record.id)
        self.by_type[record.type] += 1
        self.by_error[error_label(record.fields)] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": len(self.selected),
            "by_type": dict(self.by_type.most_common()),
            "by_error": dict(self.by_error.most_common()),
            "skipped": dict(self.skipped.most_common()),
            "rate": self.rate,
            "estimated_seconds": round(self.seconds, 1),
            "truncated": self.truncated,
            "note": SIGNED_NOTE,
        }


@dataclass(frozen=True, slots=True)
class Selection:
    """Ids, or a filter (its statuses default to failed); `statuses` are what the job replays."""

    ids: tuple[str, ...] = ()
    wanted: EventFilter | None = None
    statuses: tuple[str, ...] = (Status.FAILED,)
    limit: int = DEFAULT_LIMIT

    def describe(self) -> dict[str, Any]:
        """What the job stores of its selection (for `replay status`)."""
        if self.wanted is None:
            return {"ids": len(self.ids)}
        given = {item.name: getattr(self.wanted, item.name) for item in fields(self.wanted)}
        return {"filter": {name: value for name, value in given.items() if value not in (None, ())}}


def make_plan(
    events: EventStore, query: EventQuery, replays: ReplayStore, selection: Selection, *, rate: float
) -> Plan:
    """The plan of `selection` at `rate`: reads the records (or the filter's index), writes nothing."""
    plan = Plan(rate=rate)
    if selection.wanted is None:
        records = _by_ids(events, selection.ids, plan)
    else:
        records = _by_filter(query, selection.wanted, selection.limit + 1)
    ids = [record.id for record in records]
    taken = replays.in_replay(ids)
    # Each status read again after the replay membership: a job that went through an event since its
    # record was read has left it, and its status is no longer the one read (it was replayed).
    current = dict(zip(ids, events.statuses(ids), strict=True))
    for record in records:
        status = current[record.id] or record.status
        if record.id in taken:
            plan.skipped[f"already in replay {taken[record.id]}"] += 1
        elif status not in selection.statuses:
            plan.skipped[_why_not(status)] += 1
        elif len(plan.selected) >= selection.limit:
            plan.truncated = True
            plan.skipped[f"over the limit of {selection.limit}"] += 1
        else:
            plan.add(record)
    return plan


def _why_not(status: str) -> str:
    if status == Status.DONE:
        return "done (since it failed, or never failed)"
    return f"in progress ({status}): a run or a retry will see to it"


def _by_ids(events: EventStore, ids: Sequence[str], plan: Plan) -> list[EventRecord]:
    records = []
    for event_id in dict.fromkeys(ids):
        record = events.load(event_id)
        if record is None:
            plan.skipped["not stored (never received, or past its retention)"] += 1
        else:
            records.append(record)
    return records


def _by_filter(query: EventQuery, wanted: EventFilter, most: int) -> list[EventRecord]:
    """Every match, newest first, up to `most` (a page at a time)."""
    if not wanted.statuses:
        wanted = replace(wanted, statuses=(Status.FAILED,))
    found: list[EventRecord] = []
    cursor: str | None = None
    while len(found) < most:
        page = query.page(wanted, limit=min(_PAGE, most - len(found)), cursor=cursor)
        found += page.records
        cursor = page.cursor
        if cursor is None:
            break
    return found


def start_job(
    replays: ReplayStore, plan: Plan, selection: Selection, *, resend: bool, via: str = ""
) -> Created:
    """Make `plan` a replay job (its ids snapshotted now) that any worker runs at the plan's rate; `via`
    says where the operator asked (shown in the job's reason), `resend` sends commands already done."""
    return replays.create(
        plan.selected,
        reason=f"operator replay{via}{' (commands resent)' if resend else ''}",
        rate=plan.rate,
        selection=selection.describe(),
        resend=resend,
        statuses=selection.statuses,
    )


def job_view(job: ReplayJob) -> dict[str, Any]:
    """A job as `replay status --json` prints it (and the admin API answers it)."""
    shown: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "reason": job.reason,
        "rate": job.rate,
        "resend_commands": job.resend,
        "statuses": list(job.statuses),
        "total": job.total,
        "done": job.cursor,
        "counts": job.counts,
        "in_other_replay": job.in_other_replay,
        "selection": job.selection,
        "taken": int(job.fields.get("takes") or 0),
    }
    for name in ("created_at", "started_at", "finished_at", "cancelled_at"):
        if job.fields.get(name):
            shown[name] = float(job.fields[name])
    return shown


def trigger_of(job: ReplayJob) -> str:
    """The metrics' `trigger`: `resolved` for an automatic replay, else `operator`."""
    return "resolved" if job.reason.startswith(AUTO_REASON) else "operator"


@dataclass
class RunReport:
    job_id: str
    counts: Counter[str] = field(default_factory=Counter)
    finished: bool = False


class ReplayRunner:
    """Runs replay jobs in this worker (`run_due`), paced and within the application's rate bucket."""

    def __init__(
        self,
        replays: ReplayStore,
        settings: WorkerSettings,
        *,
        metrics: WorkerMetrics | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.replays = replays
        self.settings = settings
        self.metrics = metrics
        self.sleep = sleep
        self.owner = uuid.uuid4().hex

    def run_due(self) -> RunReport | None:
        """Take the first due job this worker can own and run it for up to `replay_run_seconds`."""
        for job_id in self.replays.due(10):
            job = self.replays.take(job_id, owner=self.owner, lease=self.settings.replay_lease)
            if job is not None:
                return self.run(job)
        return None

    def run(self, job: ReplayJob) -> RunReport:
        settings = self.settings
        report = RunReport(job.id)
        trigger = trigger_of(job)
        log.info("replay_job_running", job=job.id, cursor=job.cursor, total=job.total, rate=job.rate)
        started = renewed = time.monotonic()
        position = first = job.cursor
        while position < job.total:
            now = time.monotonic()
            if now - started >= settings.replay_run_seconds:
                self.replays.release(job.id, owner=self.owner)
                log.info("replay_job_handed_on", job=job.id, cursor=position, total=job.total)
                return report
            if now - renewed >= settings.replay_lease / 3:
                if not self.replays.renew(job.id, owner=self.owner, lease=settings.replay_lease):
                    break  # cancelled, or taken over after a stall
                renewed = now
            count = self._allowed(job, position - first, now - started)
            if count <= 0:
                continue
            stepped = self.replays.step(job, owner=self.owner, start=position, count=count)
            if not stepped:
                break  # cancelled (or no longer ours)
            position += len(stepped)
            for _event_id, outcome in stepped:
                report.counts[outcome] += 1
                if self.metrics is not None:
                    self.metrics.replays(trigger, outcome).inc()
        report.finished = position >= job.total
        log.info("replay_job_stopped", job=job.id, cursor=position, finished=report.finished, **report.counts)
        return report

    def _allowed(self, job: ReplayJob, sent: int, elapsed: float) -> int:
        """How many ids may go now (0 after a wait): the rate's due ones, capped by batch and bucket."""
        due = int(elapsed * job.rate) + 1 - sent
        if due <= 0:
            self.sleep(min(self.settings.replay_lease / 3, (sent / job.rate) - elapsed))
            return 0
        settings = self.settings
        room = self.replays.bucket_room(
            capacity=settings.app_rate_bucket, refill_per_minute=settings.app_rate_refill_per_minute
        )
        if room < 1:
            self.sleep(_BUCKET_WAIT)
            return 0
        return int(min(due, settings.replay_batch, room))
