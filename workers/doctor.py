"""`smartcar-events doctor`: every check an operator would otherwise run by hand, in one command.

Each finding says what was found, why it matters and the fix, with a severity: `ok`, `note` (something
the doctor cannot see, and how to look), `warning` (exit 1) or `problem` (exit 2), so that a script can
rely on the status: 0 fine, 1 warnings, 2 problems. The checks, cheapest first (`diagnose`):

- settings: readable and well formed (else the one problem, and nothing else can be checked);
- Redis: it answers; it keeps what it acknowledged (`eventstore.durability`: append-only file, no
  eviction: a problem under `SMARTCAR_ENV=production`, a warning in development, as at start-up);
- clock: this machine's against Redis's `TIME` (leases, due times and retention compare times written
  by different machines);
- the pipeline: paused (`eventstore.pauses`), the inbox's oldest event, the most overdue pending one
  (the gauges of `workers.stats.backlog`, the same figures `/metrics` exports);
- processes: a worker consumed a ping task sent to the queue (`workers.ping`, which proves the queue is
  consumed, not only that a process lives), and beat answered Celery's ping (`celerybeat@...`, which
  needs beat's `--enable-remote-control`, as every deployment file runs it);
- Smartcar: the token endpoint accepts SMARTCAR_CLIENT_ID/SECRET (`workers.credentials.probe_client`,
  the check `smartcar-events check` makes);
- vehicles: the registry's vehicles needing re-consent, and those whose last refresh failed;
- signatures: the receivers' signature failures of the last 15 minutes (`eventstore.signatures`), against
  the events the store took or moved on meanwhile: a problem when `mismatch` failures (a signed request
  whose signature is wrong) outnumber them (a wrong SMARTCAR_AMT refuses every delivery, and VERIFY,
  unsigned, passes with any AMT), a warning for any `mismatch`, and a warning when requests without a
  valid header (`missing`, `malformed`: scanners, or a proxy that loses SC-Signature) outnumber them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Annotated, Any

import kombu.exceptions
import redis
import typer
from rich.console import Console
from rich.table import Table

from eventstore.client import connect
from eventstore.durability import read_durability
from eventstore.events import EventStore
from eventstore.fleet import FleetStore, VehicleStatus
from eventstore.keys import KeySpace
from eventstore.pauses import Pauses
from eventstore.signatures import recent_signatures
from workers.credentials import ClientVerdict, probe_client
from workers.settings import SettingsError, WorkerSettings, load_settings
from workers.stats import backlog

console = Console()
_SKEW_WARN, _SKEW_PROBLEM = 1.0, 30.0
_INBOX_WARN, _INBOX_PROBLEM = 60.0, 600.0
_SHOWN_IDS = 5
_FLEET_READ = 10_000
_SIGNATURE_MINUTES = 15
_WRONG_AMT = (
    "Smartcar's deliveries are refused (401) and retried for only a few minutes, then lost; a wrong "
    "SMARTCAR_AMT does this, and a VERIFY that passed proves nothing: VERIFY is unsigned, so a wrong AMT "
    "answers it and then fails every delivery"
)
_AMT_FIX = (
    "set SMARTCAR_AMT to the Application Management Token of the Smartcar Dashboard (during a rotation "
    "<new>,<old>: README, Rotating the AMT) and restart every receiver; `python -m receiver check` counts "
    "the AMTs each has"
)
_UNSIGNED = (
    "requests arrive without a valid SC-Signature: a proxy in front of the receivers that drops or "
    "rewrites the header refuses every delivery this way"
)
_UNSIGNED_FIX = (
    "if Smartcar's deliveries fail too (the Dashboard's webhook logs), have the proxy pass SC-Signature "
    "unchanged; otherwise block the sender"
)


class Severity(IntEnum):
    OK = 0
    NOTE = 1
    WARNING = 2
    PROBLEM = 3


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: Severity
    what: str
    why: str = ""
    fix: str = ""


def exit_code(findings: list[Finding]) -> int:
    """0 when nothing is wrong, 1 for warnings, 2 when any problem was found."""
    worst = max((finding.severity for finding in findings), default=Severity.OK)
    return {Severity.PROBLEM: 2, Severity.WARNING: 1}.get(worst, 0)


def _split(sentence: str) -> tuple[str, str, str]:
    """`durability_problems`' sentences, "what: why; fix", as a finding's three parts."""
    what, _, rest = sentence.partition(": ")
    why, _, fix = rest.rpartition("; ")
    return what, why, fix


def diagnose(
    settings: WorkerSettings, *, wait: float, clock: Callable[[], float] = time.time
) -> list[Finding]:
    """Every check but the settings' own (see the module's docstring), in one list."""
    client = connect(settings.redis_url)
    try:
        try:
            client.ping()
        except (redis.RedisError, OSError) as error:
            return [
                Finding(
                    "redis",
                    Severity.PROBLEM,
                    f"the event store's Redis at {settings.redis_address} did not answer: {error}",
                    "the receiver answers 503 and nothing is processed",
                    "start Redis or fix REDIS_URL",
                )
            ]
        found = [Finding("redis", Severity.OK, f"Redis at {settings.redis_address} answers")]
        found += _durability(client, settings)
        found.append(_clock(client, clock))
        found += _pipeline(client, settings)
        found += _processes(client, settings, wait)
        found += _vehicles(client, KeySpace(settings.event_key_prefix))
        found.append(_signatures(client, KeySpace(settings.event_key_prefix), clock()))
    finally:
        client.close()
    found.append(_credentials(settings))
    return found


def _durability(client: redis.Redis, settings: WorkerSettings) -> list[Finding]:
    problems = read_durability(client)
    if problems is None:
        return [
            Finding(
                "durability", Severity.NOTE, "Redis refused INFO", "nothing is known", "check it yourself"
            )
        ]
    severity = Severity.PROBLEM if settings.smartcar_env == "production" else Severity.WARNING
    if not problems:
        return [Finding("durability", Severity.OK, "append-only file on, maxmemory-policy noeviction")]
    return [Finding("durability", severity, *_split(problem)) for problem in problems]


def _clock(client: redis.Redis, clock: Callable[[], float]) -> Finding:
    sent = clock()
    seconds, micros = client.time()
    skew = (sent + clock()) / 2 - (seconds + micros / 1e6)
    what = f"this machine's clock is {skew:+.3f} s from Redis's"
    if abs(skew) < _SKEW_WARN:
        return Finding("clock", Severity.OK, what)
    severity = Severity.PROBLEM if abs(skew) >= _SKEW_PROBLEM else Severity.WARNING
    why = "leases, retry times and retention compare times written by different machines"
    return Finding("clock", severity, what, why, "run NTP (chrony, systemd-timesyncd) on every host")


def _pipeline(client: redis.Redis, settings: WorkerSettings) -> list[Finding]:
    keys = KeySpace(settings.event_key_prefix)
    gauges = backlog(client, keys)
    pause = Pauses(client, keys).current()
    found = []
    if pause is not None:
        what = f"processing is {pause.state.value} since {_iso(pause.since)}" + (
            f" ({pause.reason})" if pause.reason else ""
        )
        found.append(
            Finding(
                "pause",
                Severity.WARNING,
                what,
                "new events wait in the inbox",
                "smartcar-events resume [--rate N]",
            )
        )
    age, depth = gauges["inbox_oldest_age_seconds"], int(gauges["inbox_depth"])
    what = f"the inbox holds {depth} event(s), the oldest {age:.0f} s old"
    if age < _INBOX_WARN or pause is not None:
        found.append(Finding("inbox", Severity.OK, what))
    else:
        severity = Severity.PROBLEM if age >= _INBOX_PROBLEM else Severity.WARNING
        why = "events wait: no relay runs, too few workers, or the Celery queue is full"
        fix = "start workers (WORKERS_RELAY_ENABLED) or add some; see the README's Scaling"
        found.append(Finding("inbox", severity, what, why, fix))
    overdue = gauges["pending_overdue_seconds"]
    if overdue > 2 * settings.sweep_after + settings.sweep_interval:
        what = f"a pending event is {overdue:.0f} s past its time"
        why = "the sweeper (beat) re-enqueues what got stuck after WORKERS_SWEEP_AFTER: it is not running"
        found.append(Finding("sweeper", Severity.WARNING, what, why, "run exactly one beat"))
    return found


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _processes(client: redis.Redis, settings: WorkerSettings, wait: float) -> list[Finding]:
    from workers.app import publishing_app  # noqa: PLC0415 - Celery only for this command

    celery = publishing_app(settings)
    token = uuid.uuid4().hex
    store = EventStore(client, KeySpace(settings.event_key_prefix), retention=settings.done_retention)
    try:
        celery.send_task("workers.ping", args=[token], queue=settings.queue)
        deadline = time.monotonic() + wait
        while not store.pinged(token) and time.monotonic() < deadline:
            time.sleep(0.1)
        answered = store.pinged(token)
        names = [name for reply in celery.control.ping(timeout=min(wait, 2.0)) or [] for name in reply]
    except (OSError, kombu.exceptions.KombuError, redis.RedisError) as error:
        why = "nothing is handed to the workers"
        return [
            Finding(
                "broker",
                Severity.PROBLEM,
                f"the broker at {settings.broker_address} did not answer: {error}",
                why,
                "start it or fix CELERY_BROKER_URL",
            )
        ]
    finally:
        celery.close()
    found = []
    if answered:
        found.append(Finding("worker", Severity.OK, f"a worker ran a ping task from queue {settings.queue}"))
    else:
        what = f"no worker ran a ping task sent to queue {settings.queue} within {wait:g} s"
        why = "events wait in the inbox (or the queue is so long that the ping waits behind it)"
        found.append(
            Finding("worker", Severity.PROBLEM, what, why, "start a worker: celery -A workers.app worker")
        )
    beats = [name for name in names if name.startswith("celerybeat@")]
    if beats:
        found.append(Finding("beat", Severity.OK, f"beat answered ({', '.join(beats)})"))
    else:
        why = "no sweeps (stuck events stay stuck, nothing is trimmed), no token refresh, no lifecycle jobs"
        fix = "run exactly one beat: celery -A workers.app beat --enable-remote-control (needed to answer)"
        found.append(Finding("beat", Severity.PROBLEM, "no beat answered Celery's ping", why, fix))
    return found


def _credentials(settings: WorkerSettings) -> Finding:
    probe = probe_client(settings)
    why = "no token can be refreshed: every vehicle's calls fail once its access token expires"
    if probe.verdict is ClientVerdict.ACCEPTED:
        return Finding(
            "credentials", Severity.OK, f"Smartcar's token endpoint accepts the client ({probe.detail})"
        )
    if probe.verdict is ClientVerdict.REJECTED:
        fix = "copy the client id and secret from the Smartcar Dashboard into SMARTCAR_CLIENT_ID/SECRET"
        return Finding(
            "credentials",
            Severity.PROBLEM,
            f"the token endpoint rejected the client: {probe.detail}",
            why,
            fix,
        )
    fix = (
        "set SMARTCAR_CLIENT_ID and SMARTCAR_CLIENT_SECRET"
        if probe.verdict is ClientVerdict.UNSET
        else "run doctor again"
    )
    return Finding(
        "credentials", Severity.WARNING, f"client credentials {probe.verdict.value}: {probe.detail}", why, fix
    )


def _vehicles(client: redis.Redis, keys: KeySpace) -> list[Finding]:
    fleet = FleetStore(client, keys)
    known = fleet.many(fleet.vehicles()[:_FLEET_READ])
    reconsent = [v.vehicle_id for v in known.values() if v.status is VehicleStatus.NEEDS_RECONSENT]
    refresh = [v.vehicle_id for v in known.values() if v.failed_action == "refresh"]
    found = []
    if reconsent:
        what = f"{len(reconsent)} vehicle(s) need re-consent: {', '.join(reconsent[:_SHOWN_IDS])}"
        why = "Smartcar refused their grant: their events wait until the owner connects again"
        fix = "send each owner the re-consent URL shown by smartcar-events vehicles show <vehicle>"
        found.append(Finding("re-consent", Severity.WARNING, what, why, fix))
    if refresh:
        what = f"{len(refresh)} vehicle(s) whose last refresh failed: {', '.join(refresh[:_SHOWN_IDS])}"
        fix = "`smartcar-events vehicles show <vehicle>` has the error; then `vehicles refresh <vehicle>`"
        found.append(
            Finding("refresh", Severity.WARNING, what, "their calls fail once the access token expires", fix)
        )
    if not found:
        found.append(
            Finding("vehicles", Severity.OK, f"{len(known)} vehicle(s) known, none needing a person")
        )
    return found


def _signatures(client: redis.Redis, keys: KeySpace, now: float) -> Finding:
    recent = recent_signatures(client, keys, minutes=_SIGNATURE_MINUTES, now=now)
    span = f"in the last {recent.minutes} min"
    if not recent.failed:
        return Finding("signatures", Severity.OK, f"no signature failure {span}")
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(recent.failures.items()))
    what = (
        f"{recent.failed} request(s) refused for their SC-Signature {span} ({reasons}), "
        f"against {recent.moved} event(s) the store took or moved on"
    )
    mismatched = recent.failures.get("mismatch", 0)
    most = recent.failed > recent.moved
    if most and mismatched * 2 >= recent.failed:
        return Finding("signatures", Severity.PROBLEM, what, _WRONG_AMT, _AMT_FIX)
    if mismatched:
        why = "some signed requests do not verify: a receiver with a wrong AMT, or forgeries. " + _WRONG_AMT
        return Finding("signatures", Severity.WARNING, what, why, _AMT_FIX)
    if most:  # unsigned or malformed: scanners on a quiet receiver, or a proxy that loses the header
        return Finding("signatures", Severity.WARNING, what, _UNSIGNED, _UNSIGNED_FIX)
    return Finding("signatures", Severity.OK, what + ": requests not from Smartcar (scanners)")


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    wait: Annotated[float, typer.Option(min=0.1, max=120, help="Seconds to wait for a worker's ping.")] = 5.0,
) -> None:
    """Check settings, Redis, clock, backlog, worker, beat, Smartcar credentials, vehicles and signature
    failures: exit 0 fine, 1 warnings, 2 problems. Each finding says what, why it matters and the fix."""
    try:
        settings = load_settings()
    except SettingsError as error:
        findings = [
            Finding("settings", Severity.PROBLEM, str(error), "no process can start", "fix the setting named")
        ]
    else:
        findings = [
            Finding("settings", Severity.OK, "settings read and well formed"),
            *diagnose(settings, wait=wait),
        ]
    if as_json:
        shown: list[dict[str, Any]] = [{**asdict(f), "severity": f.severity.name.lower()} for f in findings]
        typer.echo(json.dumps(shown, indent=2))
    else:
        table = Table(title="smartcar-events doctor")
        for column in ("check", "", "what", "why it matters", "fix"):
            table.add_column(column, overflow="fold")
        for f in findings:
            table.add_row(f.check, f.severity.name.lower(), f.what, f.why, f.fix)
        console.print(table)
    raise typer.Exit(exit_code(findings))
