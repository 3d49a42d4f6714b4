"""How many webhook events one worker process completes end to end, against Celery defaults and ceiling.

    .venv/bin/python bench/workers_bench.py [--check] [--events 3000] [--rate 200] [--seconds 10]

One run starts the simulator (200 ms per API call), the receiver (uvicorn) and worker processes, each in
a process of its own. Signed VEHICLE_STATE bodies are posted to the receiver (by `workers_poster`, light
enough to outrun any worker here); each carries only `charge-ischarging`, and the workers are configured
to fetch `tractionbattery-stateofcharge` for it: one follow-up call to the simulator's v3 API per event.
Measured, one configuration after the other:

1. ours: one worker process with our defaults (threads pool, its concurrency, the relay inside);
2. prefork2: the same work on Celery's prefork pool with concurrency 2 (what a default install runs);
3. noop: a task that does nothing, pre-queued and drained by a worker like 1 (the consumer's ceiling).

For each: events/s from the first event started to the last done, after a burst of posts, and the
worker's CPU per event (user + system, its pool's children included): what a core can do whatever
else shares the machine. For 1 also the time from receipt to done (p50, p99) while --rate events/s are
posted for --seconds. With --workers N (default 2), ours again with N worker processes on one queue.
Targets (checked with --check, exit 1 on a miss): ours >= 200 events/s and >= 0.5x noop, p99 <= 400 ms
at 200 events/s, and N processes >= 0.85 N times one. Redis: BENCH_REDIS_URL (default
redis://127.0.0.1:6379/12), every key under a prefix of the run's own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from workers_poster import post_all, request_bytes
from workers_stack import HOST, process, receiver_command, simulator_command

from eventstore.keys import KeySpace
from eventstore.status import Status
from smartcar_core.webhooks import signature_of
from smartcar_simulator import payloads
from smartcar_simulator.control_client import SimulatorControl
from testsupport import free_port, wait_until
from testsupport.workers import WorkerLauncher
from workers.settings import WorkerSettings
from workers.tokens import TokenStore

AMT = "amt-workers-bench-00000000000000"
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
SOC = "tractionbattery-stateofcharge"
TARGET_RATE, TARGET_P99 = 200.0, 0.4  # p99: twice the one upstream call of 200 ms
TARGET_NOOP_RATIO, TARGET_SCALING = 0.5, 0.85  # ours/noop events/s; N processes >= 0.85 N x one
FIELDS = ["received_at", "queued_at", "started_at", "finished_at"]


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process, and of its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (a prefork pool)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                total += cpu_seconds(int(stat.parent.name))
    return total


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    events: int
    seconds: float
    cpu: float
    latencies: list[float]
    phases: dict[str, list[float]]
    stack: dict[str, float] = field(default_factory=dict)
    """CPU seconds of the rest of the stack over the run: simulator, receiver, poster, Redis."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.events * 1000 if self.events else float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.prefix = f"bench:wk:{uuid.uuid4().hex[:8]}:"
        self.redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
        self.client = redis.Redis.from_url(self.redis_url)
        self.sim_port, self.receiver_port = free_port(), free_port()
        self.sim_url = f"http://{HOST}:{self.sim_port}"
        self.vehicles: list[dict[str, Any]] = []
        self.stack_pids: dict[str, int] = {}

    def settings(self, **overrides: Any) -> WorkerSettings:
        values: dict[str, Any] = {
            "redis_url": self.redis_url,
            "token_encryption_key": os.environ["TOKEN_ENCRYPTION_KEY"],
            "event_key_prefix": self.prefix,
            "queue": f"{self.prefix}queue",
            "broker_key_prefix": self.prefix,
            "smartcar_client_id": CLIENT_ID,
            "smartcar_client_secret": CLIENT_SECRET,
            "follow_up_signals": {"*": [SOC]},
            "app_rate_bucket": 0,  # Smartcar raises the application limit for fleets on request
        }
        values.update(overrides)
        return WorkerSettings(**values)

    @property
    def origins_env(self) -> dict[str, str]:
        names = ("API", "AUTH", "CONNECT", "MANAGEMENT_API", "VEHICLE_API_V3")
        return {f"SMARTCAR_{name}_ORIGIN": self.sim_url for name in names}

    @contextlib.contextmanager
    def stack(self) -> Iterator[None]:
        env = {"SMARTCAR_AMT": AMT, "SMARTCAR_CLIENT_ID": CLIENT_ID, "SMARTCAR_CLIENT_SECRET": CLIENT_SECRET}
        receiver_env = {
            **env,
            "REDIS_URL": self.redis_url,
            "EVENT_KEY_PREFIX": self.prefix,
            "LOG_LEVEL": "warning",
        }
        sim = simulator_command(self.sim_port, self.args.vehicles, self.args.latency)
        receiver = receiver_command(self.receiver_port)
        with (
            process(
                sim, env, self.workdir / "simulator.log", ready_url=f"{self.sim_url}/_sim/health"
            ) as simulator,
            process(
                receiver,
                receiver_env,
                self.workdir / "receiver.log",
                ready_url=f"http://{HOST}:{self.receiver_port}/healthz",
            ) as receiving,
        ):
            self.stack_pids = {"simulator": simulator.pid, "receiver": receiving.pid}
            yield

    def stack_cpu(self) -> dict[str, float]:
        """CPU seconds so far of the simulator, the receiver, this process (the poster) and Redis (all of
        its clients: the machine should be quiet)."""
        used = {name: cpu_seconds(pid) for name, pid in self.stack_pids.items()}
        used["poster"] = cpu_seconds(os.getpid())
        info = self.client.info("cpu")
        used["redis"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return used

    def connect_fleet(self) -> None:
        """Tokens for every simulated user, stored (encrypted) as the workers read them."""
        store = TokenStore(self.client, self.settings().fernet(), keys=KeySpace(self.prefix))
        with SimulatorControl(self.sim_url) as control:
            # Cars with a traction battery: the follow-up reads their state of charge.
            self.vehicles = [v for v in control.vehicles() if v["powertrain"] in ("BEV", "PHEV")]
            for user in control.users():
                tokens = control.mint_tokens(user_id=user["id"])
                store.put(
                    vehicle_ids=tokens.vehicle_ids,
                    access_token=tokens.access_token,
                    refresh_token=tokens.refresh_token,
                    expires_at=time.time() + tokens.expires_in,
                    user_id=tokens.user_id,
                )

    def requests(self, count: int) -> tuple[list[str], list[bytes]]:
        """Event ids and signed HTTP requests for `count` deliveries, round-robin over the fleet."""
        ids, requests = [], []
        for number in range(count):
            vehicle = self.vehicles[number % len(self.vehicles)]
            now = payloads.now_ms()
            item = payloads.signal_item(
                "charge-ischarging", name="IsCharging", group="Charge", body={"value": True},
                oem_updated_at=now, retrieved_at=now,
            )  # fmt: skip
            event = payloads.vehicle_state_event(
                vehicle, [item], webhook_id="wh-bench", triggers=[item["code"]]
            )
            body = json.dumps(event, separators=(",", ":")).encode()
            ids.append(event["eventId"])
            requests.append(request_bytes(HOST, self.receiver_port, body, signature_of(AMT, body)))
        return ids, requests

    def worker(self, name: str, settings: WorkerSettings, processes: int = 1) -> WorkerLauncher:
        """`processes` worker processes (each with its relay) on one queue."""
        launcher = WorkerLauncher(settings, self.workdir, extra_env=self.origins_env)
        for number in range(processes):
            launcher.start(name if processes == 1 else f"{name}-{number + 1}", timeout=60)
        return launcher

    def run(self, name: str, launcher: WorkerLauncher, count: int, rate: float | None = None) -> Result:
        """Post `count` events (at `rate`/s, else as fast as the receiver takes them) and wait for them."""
        ids, requests = self.requests(count)
        pids = [worker.process.pid for worker in launcher.processes]
        spy = self.profile(name, pids[-1])
        cpu_before = sum(tree_cpu(pid) for pid in pids)
        stack_before = self.stack_cpu()
        took = asyncio.run(post_all(HOST, self.receiver_port, requests, rate=rate))
        if rate is not None and took > count / rate * 1.1:
            print(
                f"  (posting took {took:.1f} s instead of {count / rate:.1f} s: the machine is short of CPU)"
            )
        times = self.finished(ids, timeout=60 + count / 5)
        cpu = sum(tree_cpu(pid) for pid in pids) - cpu_before
        stack = {name: used - stack_before[name] for name, used in self.stack_cpu().items()}
        if spy is not None:
            spy.wait()
        first = min(row[0 if rate is not None else 2] for row in times)
        phases = {
            label: [row[b] - row[a] for row in times]
            for label, a, b in (("inbox", 0, 1), ("celery queue", 1, 2), ("run", 2, 3))
        }
        seconds = max(row[3] for row in times) - first
        return Result(name, count, seconds, cpu, [row[3] - row[0] for row in times], phases, stack)

    def finished(self, ids: list[str], *, timeout: float) -> list[tuple[float, ...]]:
        def all_done() -> bool:
            with self.client.pipeline(transaction=False) as pipe:
                for event_id in ids:
                    pipe.hget(KeySpace(self.prefix).event(event_id), "status")
                statuses = pipe.execute()
            failed = [
                event_id
                for event_id, status in zip(ids, statuses, strict=True)
                if status == Status.FAILED.encode()
            ]
            if failed:
                record = self.client.hgetall(KeySpace(self.prefix).event(failed[0]))
                raise RuntimeError(f"{len(failed)} events failed, e.g. {record.get(b'history')!r}")
            return all(status == Status.DONE.encode() for status in statuses)

        wait_until(all_done, timeout=timeout, interval=0.2, what=f"{len(ids)} events done")
        with self.client.pipeline(transaction=False) as pipe:
            for event_id in ids:
                pipe.hmget(KeySpace(self.prefix).event(event_id), FIELDS)
            return [tuple(float(value) for value in row) for row in pipe.execute()]

    def noop(self, settings: WorkerSettings, count: int) -> Result:
        """`count` noop tasks queued first, then drained by a fresh worker (relay off)."""
        env = {
            "PYTHONPATH": str(Path(__file__).parent),
            "WORKERS_HANDLER_MODULES": json.dumps(["workers_noop"]),
            "WORKERS_RELAY_ENABLED": "false",
        }
        launcher = WorkerLauncher(settings, self.workdir, extra_env={**self.origins_env, **env})
        with launcher.app.producer_or_acquire() as producer:
            for _ in range(count):
                launcher.app.send_task("bench.noop", queue=settings.queue, producer=producer)
        key, unacked = self.prefix + settings.queue, f"{self.prefix}unacked"
        worker = launcher.start("noop", wait=False)
        try:
            wait_until(lambda: self.client.llen(key) < count, timeout=60, interval=0.01, what="noop start")
            start, left, cpu_before = (
                time.perf_counter(),
                int(self.client.llen(key)),
                tree_cpu(worker.process.pid),
            )
            wait_until(
                lambda: self.client.llen(key) == 0 and self.client.hlen(unacked) == 0,
                timeout=120, interval=0.01, what="noop drained",
            )  # fmt: skip
            seconds = time.perf_counter() - start
            return Result("noop", left, seconds, tree_cpu(worker.process.pid) - cpu_before, [], {})
        finally:
            launcher.close()

    def profile(self, name: str, pid: int) -> subprocess.Popen[bytes] | None:
        """py-spy (--py-spy PATH) samples the GIL holder of ours' worker: where the CPU goes."""
        if not self.args.py_spy or name != self.args.profile_phase:
            return None
        out = self.workdir / f"{name}.pyspy"
        # --nonblocking: a profiler that stops the process for each sample made runs miss lease renewals.
        spy = [self.args.py_spy, "record", "--gil", "--nonblocking", "-r", "250", "-f", "raw"]
        command = [*spy, "-p", str(pid), "-d", str(self.args.profile_seconds)]
        return subprocess.Popen(  # noqa: S603 - a profiler on our own worker
            [*command, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def cleanup(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self.prefix}*", count=5000))
        for start in range(0, len(keys), 1000):
            self.client.delete(*keys[start : start + 1000])
        self.client.close()


def report(results: list[Result], steady: Result, args: argparse.Namespace) -> bool:
    ours, by_name = results[0], {result.name: result for result in results}
    print(f"\n{'':10}{'events/s':>10}{'ours/x':>9}{'CPU ms/event':>14}{'events/CPU-s':>14}")
    for result in results:
        ratio = ours.rate / result.rate if result.rate else float("nan")
        per_core = 1000 / result.cpu_ms if result.cpu else float("nan")
        print(
            f"{result.name:10}{result.rate:10.1f}{ratio:8.2f}x{result.cpu_ms:14.2f}{per_core:14.0f}"
            f"   ({result.events} events in {result.seconds:.2f} s)"
        )
    for result in results:
        if result.stack:
            spent = ", ".join(
                f"{name} {used / result.events * 1000:.2f}" for name, used in result.stack.items()
            )
            print(f"{result.name:10}rest of the stack, CPU ms/event: {spent}")
    p50, p99 = pct(steady.latencies, 0.5), pct(steady.latencies, 0.99)
    print(
        f"\nreceipt -> done, {args.rate:g} events/s posted for {args.seconds:g} s ({steady.events} events): "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(steady.latencies) * 1000:.0f} ms, "
        f"mean {statistics.fmean(steady.latencies) * 1000:.0f} ms; worker CPU {steady.cpu_ms:.2f} ms/event"
    )
    for label, spans in steady.phases.items():
        print(f"  {label:13} p50 {pct(spans, 0.5) * 1000:7.1f} ms   p99 {pct(spans, 0.99) * 1000:7.1f} ms")
    noop_ratio = ours.rate / by_name["noop"].rate
    checks = [
        (f"ours >= {TARGET_RATE:g} events/s", ours.rate >= TARGET_RATE),
        (f"ours >= {TARGET_NOOP_RATIO:g}x noop (is {noop_ratio:.2f}x)", noop_ratio >= TARGET_NOOP_RATIO),
        (f"p99 <= {TARGET_P99 * 1000:g} ms at {args.rate:g} events/s", p99 <= TARGET_P99),
    ]
    several = by_name.get(f"ours x{args.workers}")
    if several is not None:
        scaling, wanted = several.rate / ours.rate, TARGET_SCALING * args.workers
        checks.append((f"{args.workers} processes >= {wanted:g}x one (is {scaling:.2f}x)", scaling >= wanted))
    for label, met in checks:
        print(f"target: {label}: {'met' if met else 'MISSED'}")
    return all(met for _label, met in checks)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--events", type=int, default=3000, help="burst for ours (after 300 of warm-up)")
    parser.add_argument("--prefork-events", type=int, default=100, help="burst for prefork2 (~10/s)")
    parser.add_argument("--noop-tasks", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="posting rate of the latency phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency phase")
    parser.add_argument("--vehicles", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.2, help="simulator seconds per API call")
    parser.add_argument(
        "--workers", type=int, default=2, help="ours xN: N worker processes on the burst (0: skip)"
    )
    parser.add_argument("--pool", default=None, help="ours: the pool (default: the settings')")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="ours: concurrency (default: settings')"
    )
    parser.add_argument(
        "--event-concurrency", type=int, default=None, help="ours: local event threads (default: settings')"
    )
    parser.add_argument("--py-spy", default=None, help="path of py-spy: profile ours' worker for 15 s")
    parser.add_argument("--profile-seconds", type=int, default=8, help="how long py-spy samples")
    parser.add_argument(
        "--profile-phase", default="ours", choices=["ours", "steady"], help="what py-spy samples"
    )
    return parser.parse_args()


def main() -> int:
    args = arguments()
    os.environ.setdefault("TOKEN_ENCRYPTION_KEY", "bWuCyzDkQG0FP9O2JNw3ZKm1tIEt9Dt3HdfGJ5JgPlY=")
    workdir = Path(tempfile.mkdtemp(prefix="workers-bench-"))
    bench = Bench(args, workdir)
    print(f"logs in {workdir}")
    try:
        with bench.stack():
            bench.connect_fleet()
            options = (
                ("pool", args.pool),
                ("concurrency", args.concurrency),
                ("event_concurrency", args.event_concurrency),
            )
            chosen = {key: value for key, value in options if value}
            ours_settings = bench.settings(**chosen)
            print(
                f"ours: pool={ours_settings.pool}, concurrency={ours_settings.concurrency}, "
                f"dispatch={ours_settings.relay_dispatch}, event threads={ours_settings.event_concurrency}"
            )
            launcher = bench.worker("ours", ours_settings)
            try:
                bench.run("warm-up", launcher, 300)
                ours = bench.run("ours", launcher, args.events)
                steady = bench.run("steady", launcher, int(args.rate * args.seconds), args.rate)
            finally:
                launcher.close()
            measured = [ours]
            if args.workers > 1:
                launcher = bench.worker("ours", ours_settings, processes=args.workers)
                try:
                    bench.run("warm-up", launcher, 300)
                    measured.append(bench.run(f"ours x{args.workers}", launcher, args.events))
                finally:
                    launcher.close()
            launcher = bench.worker("prefork2", bench.settings(pool="prefork", concurrency=2))
            try:
                prefork = bench.run("prefork2", launcher, args.prefork_events)
            finally:
                launcher.close()
            noop = bench.noop(ours_settings, args.noop_tasks)
        met = report([*measured, prefork, noop], steady, args)
    finally:
        bench.cleanup()
    return 0 if met or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
