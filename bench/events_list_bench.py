"""How long `smartcar-events events list --status failed` takes, and that it does not grow with done events.

    .venv/bin/python bench/events_list_bench.py [--check] [--failed 10000] [--small 20000] [--large 200000]

One store is built through the event store's own scripts (ACCEPT, CLAIM, BEGIN, DEAD or DONE, so every
operator index is what production keeps): `--failed` dead letters among `--small` events, measured, then
grown with done events to `--large` and measured again. The records carry a two-byte body instead of a
webhook's 1-2 KB (a listing never reads it), so the store fits in little memory. Measured each time:

1. the query alone (`EventQuery.page`): the first page (50) and every dead letter (one page of all);
2. the command in this process (typer's runner, settings from the environment): the first page as a
   table, and every dead letter as JSON lines;
3. the command as a process (`smartcar-events events list --status failed --limit N --json`), whose
   start-up (the imports of the events command, measured alone as `events list --help`) is about half.

Each figure is the median of `--repeats` runs. Targets (checked with --check, exit 1 on a miss): every
dead letter listed (2.) in under 1 s at `--large` events, and the large store's figures within noise of
the small one's (at most 1.5x: the cost depends on the failed events, not on the done ones). Redis:
BENCH_REDIS_URL (default redis://127.0.0.1:6379/12), every key under a prefix of the run's own, deleted
afterwards. A run takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from eventstore import scripts
from eventstore.events import EventStore, accept_arguments
from eventstore.keys import KeySpace
from eventstore.query import EventFilter, EventQuery
from eventstore.record import history_entry
from smartcar_core.events import parse_envelope
from smartcar_simulator import payloads
from testsupport import delete_keys
from workers.cli import app

MAX_SECONDS = 1.0
MAX_GROWTH = 1.5
_BATCH = 1000
_ERROR = {"class": "VehicleStateError", "type": "VEHICLE_STATE", "code": "ASLEEP", "status": 409}
_RAW = b"{}"


def envelopes(count: int, seed: int) -> list[bytes]:
    """`count` VEHICLE_STATE bodies, each of its own event id and one of 500 vehicles."""
    bodies = []
    for index in range(count):
        vehicle = f"bench-vehicle-{(seed + index) % 500}"
        car = {"id": vehicle, "make": "TESLA", "model": "Model 3", "year": 2022, "user_id": f"user-{vehicle}"}
        item = payloads.signal_item(
            "charge-ischarging", name="IsCharging", group="Charge", body={"value": True}, oem_updated_at=1,
            retrieved_at=1,
        )  # fmt: skip
        event = payloads.vehicle_state_event(
            car, [item], webhook_id="wh-bench", triggers=["charge-ischarging"]
        )
        bodies.append(json.dumps(event).encode())
    return bodies


def add_events(store: EventStore, count: int, *, failed: int, start: float) -> None:
    """Accept and claim `count` events (a thousand a round trip), then end `failed` dead, the rest done."""
    client, keys = store.redis, store.keys
    sha = client.script_load(scripts.ACCEPT)
    ids: list[str] = []
    bodies = envelopes(count, seed=int(start))
    for offset in range(0, count, _BATCH):
        with client.pipeline(transaction=False) as pipe:
            for index, body in enumerate(bodies[offset : offset + _BATCH], start=offset):
                envelope = parse_envelope(body)
                arguments = accept_arguments(
                    keys, envelope, _RAW, received_at=start + index * 0.001, dedupe_seconds=3600
                )
                pipe.evalsha(sha, scripts.ACCEPT_KEY_COUNT, *arguments)
                ids.append(envelope.event_id)
            pipe.execute()
        store.mark_queued(ids[offset : offset + _BATCH], now=start + offset * 0.001)  # as the relay does
    for index, event_id in enumerate(ids):
        now = start + index * 0.001 + 0.0005
        begun = store.begin(event_id, lease=30, now=now)
        if begun.record is None:
            sys.exit(f"could not begin {event_id}: {begun}")
        if index < failed:
            entry = history_entry(attempt=1, outcome="failed", error=_ERROR, now=now)
            store.dead_letter(begun.record, entry, reason="gave up after 5 attempts", results={}, now=now)
        else:
            store.done(begun.record, {}, now=now)


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(
    query: EventQuery, env: dict[str, str], failed: int, repeats: int, runner: CliRunner
) -> dict[str, float]:
    wanted = EventFilter(statuses=("failed",))
    figures = {
        "query, first page": median_seconds(lambda: query.page(wanted, limit=50), repeats),
        "query, all failed": median_seconds(lambda: query.page(wanted, limit=failed), repeats),
    }
    listed = query.page(wanted, limit=failed)
    if (len(listed.records), listed.read) != (failed, failed):  # it read the failed index, nothing else
        sys.exit(f"listed {len(listed.records)} of {failed} dead letters, reading {listed.read} entries")

    def command(*arguments: str) -> None:
        result = runner.invoke(app, ["events", "list", "--status", "failed", *arguments], env=env)
        if result.exit_code != 0:
            sys.exit(f"events list exited with {result.exit_code}: {result.output}")

    figures["command, first page (table)"] = median_seconds(command, repeats)
    figures["command, all failed (JSON)"] = median_seconds(
        lambda: command("--limit", str(failed), "--json"), repeats
    )
    executable = str(Path(sys.executable).with_name("smartcar-events"))

    def process() -> None:
        subprocess.run(  # noqa: S603 - our own entry point
            [executable, "events", "list", "--status", "failed", "--limit", str(failed), "--json"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=120,
        )

    figures["process, all failed (JSON)"] = median_seconds(process, max(1, repeats // 2))

    def start_up() -> None:  # what the process figure spends before it lists anything
        subprocess.run(  # noqa: S603 - our own entry point
            [executable, "events", "list", "--help"], stdout=subprocess.DEVNULL, check=True, timeout=120
        )

    figures["process start-up (--help)"] = median_seconds(start_up, max(1, repeats // 2))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--failed", type=int, default=10_000, help="dead letters in the store")
    parser.add_argument("--small", type=int, default=20_000, help="events in the first measurement")
    parser.add_argument("--large", type=int, default=200_000, help="events in the second")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each measurement (the median counts)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if not args.failed < args.small <= args.large:
        parser.error("expected --failed < --small <= --large")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    prefix = f"bench:evlist:{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_url)
    keys = KeySpace(prefix)
    store = EventStore(client, keys, retention=3600)
    env = {
        "REDIS_URL": redis_url,
        "EVENT_KEY_PREFIX": prefix,
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "COLUMNS": "200",
    }
    runner = CliRunner()
    results: dict[int, dict[str, float]] = {}
    try:
        start = time.time() - 86_400
        for total in (args.small, args.large):
            began = time.perf_counter()
            already = sum(int(client.zcard(keys.status_index(status))) for status in ("done", "failed"))
            add_events(
                store, total - already, failed=args.failed if not already else 0, start=start + already
            )
            built = time.perf_counter() - began
            print(f"store: {total:,} events, {args.failed:,} failed (built in {built:.0f} s)")
            results[total] = measure(EventQuery(client, keys), env, args.failed, args.repeats, runner)
    finally:
        delete_keys(client, f"{prefix}*")
        client.close()
    return report(results, args)


def report(results: dict[int, dict[str, float]], args: argparse.Namespace) -> int:
    small, large = results[args.small], results[args.large]
    print(f"\n{'events list --status failed':<32}{args.small:>12,}{args.large:>12,}{'ratio':>8}")
    for name in small:
        ratio = large[name] / small[name]
        print(f"{name:<32}{small[name] * 1000:>10.1f}ms{large[name] * 1000:>10.1f}ms{ratio:>8.2f}")
    misses = []
    listing = large["command, all failed (JSON)"]
    if listing > MAX_SECONDS:
        misses.append(f"listing every dead letter took {listing:.2f} s at {args.large:,} events")
    grown = ("query, first page", "query, all failed", "command, all failed (JSON)")
    misses += [
        f"{name} grew {large[name] / small[name]:.2f}x with the done events"
        for name in grown
        if large[name] / small[name] > MAX_GROWTH
    ]
    print("\ntargets: " + ("met" if not misses else "MISSED: " + "; ".join(misses)))
    return 1 if args.check and misses else 0


if __name__ == "__main__":
    sys.exit(main())
