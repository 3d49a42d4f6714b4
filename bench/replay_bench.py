"""A replay of 10,000 dead letters at `--rate 500`, run by a real worker: its rate and no event twice.

    .venv/bin/python bench/replay_bench.py [--check] [--events 10000] [--rate 500]

The dead letters are made through the event store's own scripts (ACCEPT, CLAIM, BEGIN, DEAD), each with
a command step recorded done (`bench:lock`), so that the replay's runs meet a command already sent. A
worker process (threads pool, the relay inside, no Smartcar: the events are VEHICLE_STATE, whose built-in
handlers only store the state) runs the job made as `smartcar-events replay --yes` makes it; the rate
bucket is off. Measured: the job's time from its first to its last step, its rate (events / time), and
afterwards that every event was replayed once (one `replayed` entry in its history), ended done, and that
its command step is still the one recorded (no send, `sends` unchanged). Target (checked with --check,
exit 1 on a miss): at least 95 % of the rate, and no event replayed twice. Redis: BENCH_REDIS_URL
(default redis://127.0.0.1:6379/12), every key under a prefix of the run's own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from cryptography.fernet import Fernet

from eventstore.commands import CommandStore
from eventstore.events import EventStore, accept
from eventstore.keys import KeySpace
from eventstore.replays import ReplayStore
from smartcar_core.events import parse_envelope
from smartcar_simulator import payloads
from testsupport import delete_keys, wait_until
from testsupport.workers import WorkerLauncher
from workers.replay import REPLAY_TASK
from workers.settings import WorkerSettings


def _dead_letters(client: redis.Redis, keys: KeySpace, count: int) -> list[str]:
    store = EventStore(client, keys, retention=3600)
    commands = CommandStore(client, keys, retention=3600)
    car = {"id": str(uuid.uuid4()), "make": "TESLA", "model": "Model 3", "year": 2022, "user_id": "u"}
    ids = []
    for _ in range(count):
        now = payloads.now_ms()
        item = payloads.signal_item(
            "charge-ischarging", name="IsCharging", group="Charge", body={"value": True},
            oem_updated_at=now, retrieved_at=now,
        )  # fmt: skip
        raw = json.dumps(payloads.vehicle_state_event(car, [item], webhook_id="wh", triggers=[])).encode()
        envelope = parse_envelope(raw)
        accept(client, keys, envelope, raw)
        ids.append(envelope.event_id)
    for _ in range(0, count, 500):
        store.claim(500)
    error = {"type": "BILLING", "code": "VEHICLE_LIMIT"}
    for event_id in ids:
        begun = store.begin(event_id, lease=60)
        if begun.record is None:
            raise RuntimeError(f"event {event_id} could not begin: {begun.state}")
        entry = {"at": time.time(), "attempt": 1, "outcome": "failed", "error": error}
        store.dead_letter(begun.record, entry, reason="not retryable", results={})
        commands.finish(event_id, "bench:lock", {"how": "sent"})
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--check", action="store_true")
    options = parser.parse_args()
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    prefix = f"bench:replay:{uuid.uuid4().hex[:8]}:"
    keys = KeySpace(prefix)
    client = redis.Redis.from_url(url)
    settings = WorkerSettings(
        redis_url=url,
        token_encryption_key=Fernet.generate_key().decode(),
        event_key_prefix=prefix,
        queue=f"{prefix}queue",
        broker_key_prefix=prefix,
        app_rate_bucket=0,
        replay_run_seconds=600.0,
    )
    try:
        made = time.perf_counter()
        ids = _dead_letters(client, keys, options.events)
        print(f"{len(ids)} dead letters made in {time.perf_counter() - made:.1f} s")
        with tempfile.TemporaryDirectory() as directory:
            launcher = WorkerLauncher(settings, Path(directory))
            try:
                launcher.start("bench", concurrency=32)
                replays = ReplayStore(client, keys)
                job_id = replays.create(
                    ids, reason="bench", rate=options.rate, selection={"bench": True}
                ).job_id
                launcher.app.send_task(REPLAY_TASK, queue=settings.queue)

                def finished() -> bool:
                    job = replays.get(job_id)
                    return job is not None and job.finished

                wait_until(finished, timeout=options.events / options.rate * 3 + 30)
                store = EventStore(client, keys, retention=3600)
                wait_until(lambda: all(status == "done" for status in store.statuses(ids)), timeout=120)
            finally:
                launcher.close()
        job = replays.get(job_id)
        if job is None:
            raise RuntimeError(f"replay job {job_id} is gone")
        took = float(job.fields["finished_at"]) - float(job.fields["started_at"])
        rate = (job.total - 1) / took if took > 0 else float("inf")
        twice = 0
        sends = 0
        commands = CommandStore(client, keys, retention=3600)
        for event_id in ids:
            record = store.load(event_id)
            history = record.history if record is not None else []
            twice += [entry["outcome"] for entry in history].count("replayed") != 1
            step = commands.read(event_id, "bench:lock")
            sends += int(step.fields.get("sends") or 0)
        share = rate / options.rate
        print(
            f"replayed {job.counts['replayed']} of {job.total} in {took:.2f} s: {rate:.1f} events/s "
            f"({share:.1%} of --rate {options.rate:g}); replayed twice: {twice}; commands sent again: {sends}"
        )
        if options.check and (share < 0.95 or twice or sends or job.counts["replayed"] != len(ids)):
            print("target missed", file=sys.stderr)
            return 1
        return 0
    finally:
        delete_keys(client, f"{prefix}*")
        client.close()


if __name__ == "__main__":
    sys.exit(main())
