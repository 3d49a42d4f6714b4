"""The demo: a local Smartcar, the receiver, a worker and Redis, with events flowing end to end.

Run by `scripts/demo` (which sets up the virtualenv and Redis). It starts three processes sharing one
environment, plays a short story against them, shows it live, and checks that it came true:

1. the simulator verifies the webhook (the receiver answers VERIFY with HMAC-SHA256(AMT, challenge));
2. the electric cars are plugged in at 70 %; each owner's tokens go into the workers' encrypted token
   store, and the workers subscribe every car (`smartcar-events vehicles subscribe`, a lifecycle job);
3. the electric cars are told to charge; the simulator's clock runs fast, so
   state-of-charge webhooks arrive every second, and the workers' charging rule stops each car at 80 %;
4. one car's stop_charge fails ambiguously (UPSTREAM:NO_RESPONSE after the car obeyed): the worker
   re-reads the car's state instead of sending the command twice;
5. a burst of signed VEHICLE_STATE events arrives at 200/s, and one event is delivered twice.

Exit status 0 when every event ended `done`, every car stopped at 80-85 % after exactly one start and one
stop command, and the duplicate was recognised; 1 otherwise (the logs are then kept).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from cryptography.fernet import Fernet
from rich.console import Console
from rich.live import Live
from rich.table import Table

from eventstore.keys import KeySpace
from eventstore.status import FINISHED, Status
from testsupport import delete_keys, free_port, wait_until

WEBHOOK_ID = "demo-webhook"
STOP_AT_PERCENT = 80.0
STOP_TOLERANCE = 5.0  # percentage points of overshoot while the stop command travels
START_AT = 0.70
BIN = Path(sys.executable).parent
SMARTCAR_ORIGIN_VARIABLES = (
    "SMARTCAR_API_ORIGIN",
    "SMARTCAR_AUTH_ORIGIN",
    "SMARTCAR_CONNECT_ORIGIN",
    "SMARTCAR_MANAGEMENT_API_ORIGIN",
    "SMARTCAR_VEHICLE_API_V3_ORIGIN",
)
console = Console()


def wait_or_exit(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` (a connection error counts as "not yet"); the demo exits naming `what` after `timeout`."""
    try:
        wait_until(
            check,
            timeout=timeout,
            interval=0.1,
            what=what,
            ignoring=(httpx.HTTPError, redis.RedisError, OSError),
        )
    except AssertionError:
        raise SystemExit(f"demo: {what} did not happen within {timeout:.0f} s") from None


def demo_environment(simulator_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    """One environment for every process: credentials, Redis, Smartcar origins, the charging rule."""
    return {
        **os.environ,
        "SMARTCAR_CLIENT_ID": "demo-client",
        "SMARTCAR_CLIENT_SECRET": secrets.token_hex(16),
        "SMARTCAR_AMT": secrets.token_hex(16),
        "SMARTCAR_WEBHOOK_ID": WEBHOOK_ID,
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "EVENT_KEY_PREFIX": prefix,
        "WORKERS_QUEUE": f"{prefix}celery",
        "WORKERS_BROKER_KEY_PREFIX": prefix,
        "WORKERS_CHARGING_RULE_ENABLED": "true",
        "WORKERS_CHARGE_STOP_AT_SOC": str(STOP_AT_PERCENT),
        "WORKERS_RETRY_BASE_DELAY": "0.5",
        **dict.fromkeys(SMARTCAR_ORIGIN_VARIABLES, simulator_url),
        "LOG_FORMAT": "json",
    }


@contextmanager
def process(name: str, command: list[str], env: dict[str, str], logs: Path) -> Iterator[None]:
    """A child process writing to `logs/<name>.log`, stopped (TERM, then KILL) on exit."""
    with (logs / f"{name}.log").open("wb") as log:
        child = subprocess.Popen(  # noqa: S603 - our own commands, no shell
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.logs = Path(tempfile.mkdtemp(prefix="smartcar-demo-"))
        self.simulator_url = f"http://127.0.0.1:{free_port()}"
        self.receiver_url = f"http://127.0.0.1:{free_port()}"
        self.prefix = f"demo:{secrets.token_hex(3)}:"
        self.env = demo_environment(self.simulator_url, args.redis, self.prefix)
        os.environ.update(self.env)  # this process reads the same settings (token store, origins)
        # Imported once the environment is set, since both read it.
        from smartcar_simulator.control import SimulatorControl  # noqa: PLC0415
        from workers.settings import load_settings  # noqa: PLC0415

        self.worker_settings = load_settings()

        self.control = SimulatorControl(self.simulator_url)
        self.redis = redis.Redis.from_url(args.redis)
        self.tokens: dict[str, str] = {}
        self.electric: list[dict[str, Any]] = []
        self.burst_id = ""
        self.duplicate_seen = False

    def start(self, processes: ExitStack) -> None:
        port = self.simulator_url.rsplit(":", 1)[1]
        simulator = [str(BIN / "smartcar-simulator"), "--port", port, "--vehicles", str(self.args.vehicles)]
        simulator += ["--seed", "7", "--clock-speed", "600", "--time-scale", "0.02"]
        receiver = [str(BIN / "uvicorn"), "receiver.app:app", "--port", self.receiver_url.rsplit(":", 1)[1]]
        worker = [str(BIN / "celery"), "-A", "workers.app", "worker", "--loglevel", "INFO"]
        worker += ["--hostname", f"demo-{secrets.token_hex(2)}@%h"]
        for name, command in (("simulator", simulator), ("receiver", [*receiver, "--no-access-log"])):
            processes.enter_context(process(name, command, self.env, self.logs))
        processes.enter_context(process("worker", worker, self.env, self.logs))
        wait_or_exit("the simulator to answer", lambda: bool(self.control.health()), 30)
        wait_or_exit(
            "the receiver to be ready", lambda: httpx.get(f"{self.receiver_url}/readyz").is_success, 30
        )
        console.print("simulator, receiver and worker are up")

    def verify(self) -> None:
        self.control.configure_webhook(
            WEBHOOK_ID,
            target_url=f"{self.receiver_url}/webhooks/smartcar",
            time_scale=0.02,
            signals=["tractionbattery-stateofcharge", "charge-ischarging", "charge-ischargingcableconnected"],
            triggers=["tractionbattery-stateofcharge", "charge-ischarging"],
        )
        event_id = self.control.emit(WEBHOOK_ID, "VERIFY")
        wait_or_exit(
            "the VERIFY answer", lambda: any(d.ok for d in self.control.deliveries(event_id=event_id)), 20
        )
        console.print("1. VERIFY answered with HMAC-SHA256(AMT, challenge): the webhook is verified")

    def connect_owners(self) -> None:
        """One token pair per owner, covering all their cars, as one Connect session grants; then every
        car subscribed by the workers (`smartcar-events vehicles subscribe` asks them, as an operator
        would; the receiver's Connect callback asks the same)."""
        from workers.tokens import put_tokens  # noqa: PLC0415

        fleet = self.control.vehicles()
        self.electric = [car for car in fleet if car["powertrain"] in ("BEV", "PHEV")]
        if not self.electric:
            raise SystemExit("demo: the seeded fleet has no electric car; use more --vehicles")
        for car in self.electric:  # home at 70 %, plugged in, not charging: the first delivery says so
            self.control.patch_vehicle(
                car["id"], plugged_in=True, charging=False, soc=START_AT, charge_limit=1.0, asleep=False
            )
        for user_id in sorted({car["user_id"] for car in fleet}):
            granted = self.control.mint_tokens(user_id=user_id)
            put_tokens(
                settings=self.worker_settings,
                vehicle_ids=granted.vehicle_ids,
                access_token=granted.access_token,
                refresh_token=granted.refresh_token,
                expires_in=granted.expires_in,
                user_id=user_id,
            )
            for vehicle_id in granted.vehicle_ids:
                self.tokens[vehicle_id] = granted.access_token
        cars = sorted(self.tokens)
        subprocess.run(  # noqa: S603 - our own command, no shell
            [str(BIN / "smartcar-events"), "vehicles", "subscribe", *cars],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wait_or_exit(
            "the workers to subscribe every car",
            lambda: set(self.control.webhook(WEBHOOK_ID)["vehicle_ids"]) >= set(cars),
            30,
        )
        console.print(f"2. {len(fleet)} cars: tokens stored encrypted, each subscribed by the workers")

    def charge(self) -> None:
        from smartcar_core import SmartcarError, Vehicle  # noqa: PLC0415

        for car in self.electric:
            try:
                Vehicle(car["id"], self.tokens[car["id"]]).start_charge()
            except SmartcarError as error:
                if not error.is_benign_for("start_charge"):  # plugging in may already have started it
                    raise
        console.print(
            f"3. {len(self.electric)} electric cars plugged in at {START_AT:.0%} and told to charge; "
            f"the workers' rule stops them at {STOP_AT_PERCENT:.0f} %"
        )
        ambiguous = self.electric[0]["id"]
        self.control.add_fault(
            vehicle_id=ambiguous,
            path="charge",
            method="POST",
            count=1,
            error={"type": "UPSTREAM", "code": "NO_RESPONSE", "status": 502},
            after_effect=True,
        )
        console.print(
            f"4. {ambiguous[:8]}'s stop_charge will fail with UPSTREAM:NO_RESPONSE after the car obeyed"
        )

    def burst(self) -> None:
        self.burst_id = self.control.burst(WEBHOOK_ID, count=self.args.burst, rate=200.0)["burst_id"]
        first, second = self.deliver_twice(self.electric[0])
        self.duplicate_seen = (first, second) == ("accepted", "duplicate")
        console.print(
            f"5. {self.args.burst} signed VEHICLE_STATE events at 200/s; "
            f"one event sent twice: {first}, then {second}"
        )

    def deliver_twice(self, car: dict[str, Any]) -> tuple[str, str]:
        """Post one signed VEHICLE_STATE twice, as Smartcar's retries can."""
        from smartcar_core.webhooks import signature_of  # noqa: PLC0415
        from smartcar_simulator import payloads  # noqa: PLC0415

        now = payloads.now_ms()
        odometer = payloads.signal_item(
            "odometer-traveleddistance",
            name="TraveledDistance",
            group="Odometer",
            body={"value": 12345.6, "unit": "kilometers"},
            oem_updated_at=now,
            retrieved_at=now,
        )
        event = payloads.vehicle_state_event(
            car, [odometer], webhook_id=WEBHOOK_ID, triggers=["odometer-traveleddistance"]
        )
        raw = json.dumps(event, separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "sc-signature": signature_of(self.env["SMARTCAR_AMT"], raw),
        }
        url = f"{self.receiver_url}/webhooks/smartcar"
        answers = [httpx.post(url, content=raw, headers=headers).json()["status"] for _ in range(2)]
        return answers[0], answers[1]

    def statuses(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for key in self.redis.scan_iter(match=KeySpace(self.prefix).event("*"), count=1000):
            status: bytes | None = self.redis.hget(key, "status")  # type: ignore[assignment] # - a bytes client
            counts[status.decode() if status else "?"] += 1
        return counts

    def charge_commands(self, vehicle_id: str) -> int:
        return len(self.control.requests(vehicle_id=vehicle_id, path="charge", method="POST"))

    def table(self) -> Table:
        from workers.state import vehicle_state  # noqa: PLC0415

        table = Table(title="electric cars")
        for column in (
            "vehicle",
            "powertrain",
            "SoC (simulator)",
            "SoC (workers)",
            "charging",
            "charge commands",
        ):
            table.add_column(column)
        for car in self.electric:
            state = self.control.vehicle(car["id"])["state"]
            known = vehicle_state(self.worker_settings, car["id"], client=self.redis).get(
                "tractionbattery-stateofcharge"
            )
            table.add_row(
                car["id"][:8],
                car["powertrain"],
                f"{state['soc']:.1%}",
                "-" if known is None else f"{float(known.value):.1f} %",
                str(state["charging"]),
                str(self.charge_commands(car["id"])),
            )
        table.caption = "events: " + ", ".join(f"{k} {v}" for k, v in sorted(self.statuses().items()))
        return table

    def story_told(self) -> bool:
        if any(self.control.vehicle(car["id"])["state"]["charging"] for car in self.electric):
            return False
        counts = self.statuses()
        burst = self.control.burst_report(self.burst_id)
        return burst["status"] != "running" and counts.get(Status.DONE, 0) > 0 and set(counts) <= FINISHED

    def watch(self) -> bool:
        with Live(self.table(), console=console, refresh_per_second=2) as live:

            def told() -> bool:
                done = self.story_told()
                live.update(self.table())
                return done

            try:
                wait_until(told, timeout=self.args.timeout, interval=0.5, what="the story")
            except AssertionError:
                return False
        return True

    def summary(self, told: bool) -> bool:
        counts = self.statuses()
        commands = {car["id"]: self.charge_commands(car["id"]) for car in self.electric}
        report = self.control.burst_report(self.burst_id).get("report") or {}
        console.print(f"\nevents by status: {dict(counts)}")
        console.print(f"charge commands per car (one start, one stop expected): {sorted(commands.values())}")
        console.print(
            f"burst: {report.get('delivered')} of {report.get('events')} delivered, answers "
            f"{report.get('by_status')}, p99 {1000 * report.get('latency_p99', 0.0):.1f} ms"
        )
        stopped_at = [self.control.vehicle(car["id"])["state"]["soc"] * 100 for car in self.electric]
        console.print(
            f"state of charge where each car stopped: {', '.join(f'{soc:.1f} %' for soc in stopped_at)}"
        )
        on_target = all(STOP_AT_PERCENT <= soc <= STOP_AT_PERCENT + STOP_TOLERANCE for soc in stopped_at)
        return (
            told
            and on_target
            and self.duplicate_seen
            and counts.get(Status.FAILED, 0) == 0
            and set(commands.values()) == {2}
        )

    def clean_up(self, ok: bool) -> None:
        delete_keys(self.redis, f"{self.prefix}*")
        self.redis.close()
        self.control.close()
        if ok and not self.args.keep_logs:
            shutil.rmtree(self.logs, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Smartcar webhook demo: simulator, receiver, worker, Redis.")
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/14", help="Redis URL (a database of its own)"
    )
    parser.add_argument("--vehicles", type=int, default=6, help="fleet size")
    parser.add_argument("--burst", type=int, default=300, help="events in the burst")
    parser.add_argument("--timeout", type=float, default=90.0, help="give up after this many seconds")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    demo = Demo(parser.parse_args())
    console.print(
        f"[bold]Smartcar webhook demo[/bold]  logs: {demo.logs}  Redis: {demo.args.redis} {demo.prefix}"
    )
    ok = False
    try:
        with ExitStack() as processes:
            demo.start(processes)
            demo.verify()
            demo.connect_owners()
            demo.charge()
            demo.burst()
            ok = demo.summary(demo.watch())
    finally:
        demo.clean_up(ok)
    if ok:
        console.print("[green]demo complete: every event stored, processed and acted on once[/green]")
    else:
        console.print(f"[red]the demo did not end as expected; logs in {demo.logs}[/red]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
