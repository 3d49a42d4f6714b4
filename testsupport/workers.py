"""Helpers for testing handlers against real Redis: store a delivery as the receiver does, then poll.

event_id = accept_event(client, "sc:", payload)        # record + inbox + pending, one round trip
result = process_event(runtime, event_id)                # or let a worker's relay pick it up
wait_until(lambda: event_status(client, "sc:", event_id) == "done")  # testsupport.wait_until
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from pydantic import AliasChoices, SecretStr

from eventstore.codec import text
from eventstore.events import EventStore, accept
from eventstore.keys import KeySpace
from eventstore.record import history_entry
from smartcar_core.events import parse_envelope
from smartcar_simulator.control_client import SimTokens
from testsupport import wait_until
from testsupport.deliveries import delivery_body
from workers.app import publishing_app
from workers.settings import WorkerSettings
from workers.tokens import TokenStore


def accept_event(
    client: redis.Redis, prefix: str, body: Mapping[str, Any] | bytes, *, received_at: float | None = None
) -> str:
    """Store a delivery exactly as the receiver does (`eventstore.scripts.ACCEPT`); returns its event id."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    envelope = parse_envelope(raw)
    accept(client, KeySpace(prefix), envelope, raw, received_at=received_at)
    return envelope.event_id


def ended_event(
    store: EventStore,
    *,
    at: float,
    vehicle: str,
    user: str,
    webhook: str,
    end: str | None,
    error: dict[str, Any] | None = None,
    reason: str = "",
    error_event: bool = False,
) -> str:
    """One event accepted and ended (`end`: done, retry, dead, or None to leave it received) at `at`,
    through the store's own transitions (no worker); returns its id."""
    raw = delivery_body(vehicle, user, webhook, error_event=error_event)
    envelope = parse_envelope(raw)
    if not accept(store.redis, store.keys, envelope, raw, received_at=at - 1):
        raise AssertionError(f"{envelope.event_id} was not accepted")
    if end is None:
        return envelope.event_id
    begun = store.begin(envelope.event_id, lease=30, now=at - 0.5)
    if begun.record is None:
        raise AssertionError(f"{envelope.event_id} did not begin")
    entry = history_entry(attempt=1, outcome=end, error=error, now=at)
    if end == "done":
        ended = store.done(begun.record, {}, now=at)
    elif end == "retry":
        ended = store.retry(begun.record, entry, delay=60, park=True, results={}, now=at)
    else:
        ended = store.dead_letter(begun.record, entry, reason=reason, results={}, now=at)
    if not ended:
        raise AssertionError(f"{envelope.event_id} did not end {end}")
    return envelope.event_id


def event_status(client: redis.Redis, prefix: str, event_id: str) -> str | None:
    value = client.hget(KeySpace(prefix).event(event_id), "status")
    return text(value) if value is not None else None


def settings_environment(settings: WorkerSettings) -> dict[str, str]:
    """The environment variables that reproduce `settings` in a worker process."""
    env: dict[str, str] = {}
    for name, field in WorkerSettings.model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        alias = field.validation_alias
        key = alias.choices[0] if isinstance(alias, AliasChoices) else f"WORKERS_{name.upper()}"
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[str(key)] = json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
    return env


def publisher(settings: WorkerSettings) -> Celery:
    """A Celery app that publishes to the broker, prefix and queue of `settings` (for tests and tools)."""
    return publishing_app(settings)


@dataclass
class WorkerProcess:
    """A `celery -A workers.app worker` subprocess; its output goes to `log_path`."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    private_queue: str

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the worker dies as if the machine lost it (no ack, no requeue)."""
        if self.alive():
            self.process.kill()
        self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (warm shutdown), then SIGKILL if it does not go in time."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def store_minted(tokens: TokenStore, minted: SimTokens, *, expires_at: float | None = None) -> str:
    """Store the pair the simulator minted (`SimulatorControl.mint_tokens`) as the Connect callback would;
    `expires_at` overrides the expiry we believe (to make our clock disagree with Smartcar's)."""
    return tokens.put(
        vehicle_ids=minted.vehicle_ids,
        access_token=minted.access_token,
        refresh_token=minted.refresh_token,
        expires_at=time.time() + minted.expires_in if expires_at is None else expires_at,
        user_id=minted.user_id,
    )


def refused_in_one_line(result: subprocess.CompletedProcess[str]) -> str:
    """A start-up refusal as workers and beat write it: exit 78 (EX_CONFIG), no traceback, exactly one
    line saying so (returned)."""
    lines = [line for line in result.stderr.splitlines() if "refuse to start" in line]
    if result.returncode != os.EX_CONFIG or "Traceback" in result.stderr or len(lines) != 1:
        raise AssertionError(f"not a one-line refusal (exit {result.returncode}):\n{result.stderr}")
    return lines[0]


class WorkerLauncher:
    """Starts worker (and beat) subprocesses for one settings object, and waits until they consume."""

    def __init__(
        self, settings: WorkerSettings, log_dir: Path, *, extra_env: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.env = {**os.environ, **settings_environment(settings), **(extra_env or {})}
        self.app = publisher(settings)
        self.client = redis.Redis.from_url(settings.redis_url)
        self.tokens = TokenStore(self.client, settings.fernet(), keys=KeySpace(settings.event_key_prefix))
        self.processes: list[WorkerProcess] = []

    def start(
        self,
        name: str,
        *,
        pool: str | None = None,
        concurrency: int | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
        timeout: float = 30.0,
    ) -> WorkerProcess:
        private = f"{self.settings.queue}.{name}"
        command = [
            sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-n", f"{name}@%h",
            "-Q", f"{self.settings.queue},{private}", "--without-mingle", "--without-gossip",
            "--without-heartbeat", "-l", "INFO",
        ]  # fmt: skip
        # The pool goes through the settings: Celery takes `-P prefork` for "no choice made" and keeps
        # the configured pool instead.
        chosen = dict(env or {})
        if pool is not None:
            chosen["WORKERS_POOL"] = pool
        if (pool or chosen.get("WORKERS_POOL") or self.settings.pool) == "gevent":
            command += ["-P", "gevent"]  # Celery monkey-patches only when it sees the flag
        if concurrency is not None:
            chosen["WORKERS_CONCURRENCY"] = str(concurrency)
        worker = self._spawn(name, command, chosen, private)
        if wait:
            self.wait_ready(worker, timeout=timeout)
        return worker

    def start_beat(self, name: str = "beat", *, env: Mapping[str, str] | None = None) -> WorkerProcess:
        schedule = self.log_dir / f"{name}-schedule"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "beat",
            "-s",
            str(schedule),
            "-l",
            "INFO",
        ]
        return self._spawn(name, command, env, "")

    def run_to_exit(
        self, program: str = "worker", *, env: Mapping[str, str | None] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """`celery -A workers.app <program>` (worker or beat) run until it exits, its output captured: for
        the start-ups that must refuse. `env` changes the launcher's environment (None: unset)."""
        environment = {**self.env, **(env or {})}
        schedule = self.log_dir / f"exit-{uuid.uuid4().hex}-schedule"
        options = ["--without-mingle", "--without-gossip"] if program == "worker" else ["-s", str(schedule)]
        return subprocess.run(  # noqa: S603 - our own interpreter and command line
            [sys.executable, "-m", "celery", "-A", "workers.app", program, *options],
            env={name: value for name, value in environment.items() if value is not None},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _spawn(
        self, name: str, command: list[str], env: Mapping[str, str] | None, private: str
    ) -> WorkerProcess:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own command line
                command, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(name, process, log_path, private)
        self.processes.append(worker)
        return worker

    def wait_ready(self, worker: WorkerProcess, *, timeout: float = 30.0) -> None:
        """Until the worker runs a ping task sent to its private queue (or fails if it exits)."""
        token = uuid.uuid4().hex
        keys = KeySpace(self.settings.event_key_prefix)
        store = EventStore(self.client, keys, retention=self.settings.done_retention)
        self.app.send_task("workers.ping", args=[token], queue=worker.private_queue)

        def answered() -> bool:
            if not worker.alive():
                raise AssertionError(f"worker {worker.name} exited:\n{worker.output()[-3000:]}")
            return store.pinged(token)

        wait_until(answered, timeout=timeout, interval=0.1, what=f"worker {worker.name} to answer a ping")

    def close(self) -> None:
        for worker in self.processes:
            worker.stop()
        self.client.close()
