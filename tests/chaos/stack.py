"""One chaos scenario's processes: a redis-server of its own, the simulator, the receiver, workers, beat.

Each runs as a process of its own, started the way the workers' benchmark starts them
(`bench/workers_stack.py`: the simulator and the receiver under uvicorn, each logging to a file of the
scenario's directory; `testsupport.workers.WorkerLauncher`: `celery worker` and `celery beat`), with fresh
secrets (AMT, client secret, token key) that the scan for leaks looks for at the end. `close` stops every
process, deletes every key and kills Redis, whatever the scenario did.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import secrets
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from cryptography.fernet import Fernet
from workers_poster import post_all, request_bytes
from workers_stack import HOST, process, receiver_command, simulator_command

from eventstore.events import EventStore
from eventstore.held import HeldEvents
from eventstore.keys import KeySpace
from eventstore.record import EventRecord
from eventstore.status import Status
from smartcar_core.webhooks import signature_of
from smartcar_simulator import payloads
from smartcar_simulator.control_client import SimTokens, SimulatorControl
from testsupport import delete_keys, free_port, wait_until
from testsupport.processes import listening
from testsupport.redis_server import RedisServer
from testsupport.workers import WorkerLauncher, store_minted
from workers.settings import WorkerSettings

SOC = "tractionbattery-stateofcharge"
IS_CHARGING = "charge-ischarging"
PLUGGED_IN = "charge-ischargingcableconnected"
SIGNAL_NAMES = {
    SOC: ("StateOfCharge", "TractionBattery"),
    IS_CHARGING: ("IsCharging", "Charge"),
    PLUGGED_IN: ("IsChargingCableConnected", "Charge"),
}
WEBHOOK_ID = "wh-chaos"
ORIGIN_NAMES = ("API", "CONNECT", "MANAGEMENT_API", "VEHICLE_API_V3")

# Small limits, so that a killed run comes back in seconds: a command call may last 3 s, the vehicle's
# lock outlives it, a run lasts at most 6 s, an unacknowledged message comes back after 8 s.
FAST_WORKERS: dict[str, Any] = {
    "retry_base_delay": 0.05,
    "retry_max_delay": 0.3,
    "retry_long_base_delay": 0.3,
    "retry_long_max_delay": 0.8,
    "retry_max_retry_after": 2.0,
    "app_rate_bucket": 0,
    "vehicle_lock_wait": 2.0,
    "command_timeout": 3.0,
    "vehicle_lock_lease": 4.0,
    "task_soft_time_limit": 5.0,
    "task_time_limit": 6.0,
    "max_countdown": 1.0,
    "visibility_timeout": 8.0,
    "restore_interval": 1.0,
    "sweep_interval": 2.0,
    "sweep_after": 6.0,
    "token_cache_seconds": 5.0,
    "log_format": "json",
}


def _owns(child: subprocess.Popen[bytes], port: int, what: str) -> None:
    """What answered on `port` must be `child`, not a process that took the port `free_port` gave out."""
    if not listening(child.pid, port):
        raise RuntimeError(f"another process holds port {port}: {what} there is not ours (run again)")


class ChaosStack:
    """The processes and secrets of one scenario (`start`, then the scenario, then `close`)."""

    def __init__(
        self,
        workdir: Path,
        *,
        vehicles: int,
        latency: float = 0.0,
        receiver_env: Mapping[str, str] | None = None,
        **worker_overrides: Any,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.vehicle_count = vehicles
        self.latency = latency
        self.amt = secrets.token_hex(16)
        self.client_id = f"chaos-{secrets.token_hex(4)}"
        self.client_secret = secrets.token_hex(16)
        self.fernet_key = Fernet.generate_key().decode()
        self.prefix = f"chaos:{uuid.uuid4().hex[:8]}:"
        self.keys = KeySpace(self.prefix)
        self.redis_server = RedisServer(workdir / "redis")
        self.sim_url = f"http://{HOST}:{free_port()}"
        self.receiver_port = free_port()
        self.receiver_url = f"http://{HOST}:{self.receiver_port}"
        self.receiver_env = dict(receiver_env or {})
        self.worker_overrides = worker_overrides
        self.control = SimulatorControl(self.sim_url)
        self.launcher: WorkerLauncher | None = None
        self.minted: list[SimTokens] = []
        self.seen_tokens: set[str] = set()
        """Tokens read from the grant store while `watching_tokens` (those the workers got by refreshing)."""
        self.bodies: list[bytes] = []
        """Every answer body of the receiver that a scenario read (scanned for secrets at the end)."""
        self._stack = contextlib.ExitStack()
        self._supervised: set[str] = set()

    # --- processes ---

    # Once Redis has started (on the port it got):
    @functools.cached_property
    def settings(self) -> WorkerSettings:
        return WorkerSettings(
            redis_url=self.redis_server.url(0),
            token_encryption_key=self.fernet_key,
            event_key_prefix=self.prefix,
            queue=f"{self.prefix}queue",
            broker_key_prefix=self.prefix,
            smartcar_client_id=self.client_id,
            smartcar_client_secret=self.client_secret,
            **{**FAST_WORKERS, **self.worker_overrides},
        )

    @functools.cached_property
    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url(0), socket_timeout=10)

    @functools.cached_property
    def store(self) -> EventStore:
        return EventStore(self.client, self.keys, retention=self.settings.done_retention)

    @property
    def app_env(self) -> dict[str, str]:
        """What every process is told about the application (its credentials, where Smartcar is)."""
        origins = {f"SMARTCAR_{name}_ORIGIN": self.sim_url for name in ORIGIN_NAMES}
        return {
            **origins,
            "SMARTCAR_AUTH_ORIGIN": f"{self.sim_url}/oauth/token",
            "SMARTCAR_AMT": self.amt,
            "SMARTCAR_CLIENT_ID": self.client_id,
            "SMARTCAR_CLIENT_SECRET": self.client_secret,
        }

    def start(self, *, workers: Mapping[str, int] | None = None, beat: bool = True) -> None:
        """Redis, then the workers (`{pool: concurrency}`, one worker process each; they boot while the
        simulator and the receiver start), beat, the simulator, the receiver; then wait for the workers."""
        self.redis_server.start()
        self._stack.callback(self._wipe)
        self.launcher = WorkerLauncher(self.settings, self.workdir, extra_env=self.app_env)
        self._stack.callback(self.launcher.close)
        booting = [
            self.launcher.start(f"{pool}0", pool=pool, concurrency=concurrency, wait=False)
            for pool, concurrency in (workers if workers is not None else {"threads": 8}).items()
        ]
        if beat:
            self.launcher.start_beat()
        sim_port = int(self.sim_url.rsplit(":", 1)[1])
        sim = simulator_command(sim_port, self.vehicle_count, self.latency)
        self.simulator_process = self._stack.enter_context(
            process(
                sim, self.app_env, self.workdir / "simulator.log", ready_url=f"{self.sim_url}/_sim/health"
            )
        )
        _owns(self.simulator_process, sim_port, "the simulator")
        receiver = {
            **self.app_env,
            "REDIS_URL": self.redis_server.url(0),
            "EVENT_KEY_PREFIX": self.prefix,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
            "RECEIVER_REDIS_TIMEOUT": "0.5",
            **self.receiver_env,
        }
        self.receiver_process = self._stack.enter_context(
            process(
                receiver_command(self.receiver_port),
                receiver,
                self.workdir / "receiver.log",
                ready_url=f"{self.receiver_url}/healthz",
            )
        )
        _owns(self.receiver_process, self.receiver_port, "the receiver")
        for worker in booting:
            self.launcher.wait_ready(worker, timeout=60)

    def supervise(self) -> list[str]:
        """Start again each worker or beat that exited on its own, as systemd or compose would (`restart:
        unless-stopped`); returns why each one that is started again exited (its last error line)."""
        exits = []
        for child in list(self.workers.processes):
            if child.alive() or child.name in self._supervised:
                continue
            self._supervised.add(child.name)
            errors = [line for line in child.output().splitlines() if '"critical"' in line or "rror" in line]
            exits.append(f"{child.name} exited {child.process.returncode}: {(errors or ['?'])[-1][:300]}")
            replacement = f"{child.name}.{len(self._supervised)}"
            if child.name.startswith("beat"):
                self.workers.start_beat(replacement)
            else:
                self.workers.start(replacement, wait=False)
        return exits

    @property
    def workers(self) -> WorkerLauncher:
        if self.launcher is None:
            raise RuntimeError("the stack has not been started")
        return self.launcher

    def _wipe(self) -> None:
        """Every key of the scenario, then Redis itself (its data directory is the scenario's)."""
        if self.redis_server.running:
            with contextlib.suppress(redis.RedisError):
                delete_keys(self.client, f"{self.prefix}*")
            self.client.close()
        self.redis_server.close()

    def close(self) -> None:
        self.control.close()
        self._stack.close()

    # --- the fleet and its events ---

    def connect_fleet(self, *, expires_in: float | None = None) -> list[dict[str, Any]]:
        """Tokens for every simulated owner (access tokens living `expires_in` s), stored as the Connect
        callback would; the fleet's vehicles."""
        for user in self.control.users():
            tokens = self.control.mint_tokens(user_id=user["id"], expires_in=expires_in)
            store_minted(self.workers.tokens, tokens)
            self.minted.append(tokens)
        return self.control.vehicles()

    def reconnect(self, vehicle_ids: Iterable[str]) -> int:
        """The owners of `vehicle_ids` connect again: a new pair each, stored as the Connect callback
        would (which releases their held events). Returns how many grants were stored."""
        wanted = set(vehicle_ids)
        stored = 0
        for user in self.control.users():
            if wanted & set(user["vehicle_ids"]):
                tokens = self.control.mint_tokens(user_id=user["id"])
                store_minted(self.workers.tokens, tokens)
                self.minted.append(tokens)
                stored += 1
        return stored

    @staticmethod
    def electric(vehicles: Iterable[Mapping[str, Any]], count: int) -> list[dict[str, Any]]:
        """The first `count` vehicles with a traction battery (the charging rule's cars)."""
        chosen = [dict(v) for v in vehicles if v["powertrain"] in ("BEV", "PHEV")][:count]
        assert len(chosen) == count, f"the fleet has {len(chosen)} electric vehicles, {count} wanted"
        return chosen

    @staticmethod
    def state_event(
        vehicle: Mapping[str, Any], signals: Mapping[str, Any], *, oem_ms: int | None = None
    ) -> dict[str, Any]:
        """A VEHICLE_STATE carrying `signals` ({code: value}), the first one its trigger."""
        now = payloads.now_ms()
        items = [
            payloads.signal_item(
                code,
                name=SIGNAL_NAMES[code][0],
                group=SIGNAL_NAMES[code][1],
                body={"value": value},
                oem_updated_at=oem_ms or now,
                retrieved_at=now,
            )
            for code, value in signals.items()
        ]
        return payloads.vehicle_state_event(
            vehicle, items, webhook_id=WEBHOOK_ID, triggers=[items[0]["code"]]
        )

    def signed(self, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", "SC-Signature": signature_of(self.amt, body)}

    def post_all(self, bodies: Sequence[bytes], *, rate: float | None = None, connections: int = 16) -> float:
        """Post signed `bodies` on kept-alive connections (the benchmark's poster): RuntimeError on any
        answer but 200. Returns the seconds it took."""
        requests = [
            request_bytes(HOST, self.receiver_port, body, signature_of(self.amt, body)) for body in bodies
        ]
        return asyncio.run(post_all(HOST, self.receiver_port, requests, connections=connections, rate=rate))

    # --- the event store ---

    def records(self, event_ids: Iterable[str]) -> dict[str, EventRecord | None]:
        with self.client.pipeline(transaction=False) as pipe:
            ids = list(event_ids)
            for event_id in ids:
                pipe.hgetall(self.keys.event(event_id))
            found = pipe.execute()
        return {i: EventRecord.from_hash(raw) if raw else None for i, raw in zip(ids, found, strict=True)}

    def wait_finished(
        self,
        event_ids: Sequence[str],
        *,
        timeout: float,
        allow_failed: bool = False,
        allow_held: bool = False,
        meanwhile: Callable[[], object] | None = None,
    ) -> dict[str, EventRecord]:
        """Until every event is done (or failed, with `allow_failed`; or held for its owner's re-consent,
        with `allow_held`); AssertionError at once on a failed event otherwise, or naming what is left
        after `timeout`. `meanwhile` runs at each look."""
        finished = {Status.DONE, Status.FAILED} if allow_failed else {Status.DONE}
        left: list[str] = list(event_ids)

        def settled() -> bool:
            if meanwhile is not None:
                meanwhile()
            statuses = self.store.statuses(left)
            if not allow_failed and Status.FAILED in statuses:
                failed = left[statuses.index(Status.FAILED)]
                raise AssertionError(f"event {failed} failed: {self.records([failed])[failed]}")
            left[:] = [i for i, status in zip(left, statuses, strict=True) if status not in finished]
            if allow_held and left:
                left[:] = [i for i in left if i not in self.held_events()]
            return not left

        try:
            wait_until(settled, timeout=timeout, interval=0.2, what=f"{len(event_ids)} events finished")
        except AssertionError as error:
            sample = {i: record.status if record else None for i, record in self.records(left[:5]).items()}
            raise AssertionError(f"{error}: {len(left)} left, e.g. {sample}") from None
        return {i: record for i, record in self.records(event_ids).items() if record is not None}

    def held_events(self) -> set[str]:
        """The events waiting for their owner to connect again (`eventstore.held`), of every vehicle."""
        held = HeldEvents(self.client, self.store.keys)
        vehicles = {v["id"] for v in self.control.vehicles()}
        return {event_id for vehicle in vehicles for event_id in held.events(vehicle)}

    def commands(self, *, path: str = "charge") -> dict[str, list[int | None]]:
        """The command POSTs the simulator received, by vehicle: their answer statuses, oldest first."""
        sent: dict[str, list[int | None]] = {}
        for call in self.control.requests(path=path, method="POST"):
            sent.setdefault(call.vehicle_id or "", []).append(call.status)
        return sent

    # --- secrets ---

    def grant_tokens(self) -> set[str]:
        """Every token of every grant the scenario stored, as the store holds it now (decrypted)."""
        store = self.workers.tokens
        found: set[str] = set()
        for grant in {store.grants.grant_of(v) for minted in self.minted for v in minted.vehicle_ids}:
            if grant is not None:
                access, refresh = store._read(grant)
                found.update((access.token, refresh))
        return found

    @contextlib.contextmanager
    def watching_tokens(self, interval: float = 0.05) -> Iterator[None]:
        """Sample the grant store every `interval` s while the block runs: each pair the workers get by
        refreshing is seen (a pair replaced within one interval could be missed)."""
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(interval):
                with contextlib.suppress(redis.RedisError):
                    self.seen_tokens |= self.grant_tokens()

        watcher = threading.Thread(target=watch, name="token-watcher", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join(5)

    def secrets(self) -> list[tuple[str, str]]:
        """Every secret the scenario's processes hold: the AMT, the client secret, the token key, and each
        token the simulator minted (those the tests stored, and those the workers got by refreshing)."""
        found = [
            ("SMARTCAR_AMT", self.amt),
            ("SMARTCAR_CLIENT_SECRET", self.client_secret),
            ("TOKEN_ENCRYPTION_KEY", self.fernet_key),
        ]
        tokens = {token for minted in self.minted for token in (minted.access_token, minted.refresh_token)}
        tokens |= self.seen_tokens
        if self.redis_server.running and self.launcher is not None:
            tokens |= self.grant_tokens()
        return found + [(f"token #{number}", token) for number, token in enumerate(sorted(tokens), start=1)]

    def leaks(self) -> tuple[list[str], int, int, int]:
        """Where a secret appears: in a log file of the scenario's processes or an answer body it read.
        Returns (hits, secrets looked for, lines scanned, answers scanned)."""
        wanted = self.secrets()
        name_of = {value: name for name, value in wanted}
        pattern = re.compile("|".join(re.escape(value) for _name, value in wanted))
        hits: list[str] = []
        lines = 0
        for log in sorted(self.workdir.rglob("*.log")):
            for number, line in enumerate(log.read_text(errors="replace").splitlines(), start=1):
                lines += 1
                hits += [f"{log.name}:{number}: {name_of[m]}" for m in pattern.findall(line)]
        for index, body in enumerate(self.bodies):
            hits += [f"answer #{index}: {name_of[m]}" for m in pattern.findall(body.decode(errors="replace"))]
        return hits, len(wanted), lines, len(self.bodies)

    def assert_no_leaks(self) -> None:
        hits, _secrets, lines, bodies = self.leaks()
        assert hits == [], (
            f"secrets in {len(hits)} places of {lines} log lines and {bodies} answers: {hits[:10]}"
        )
