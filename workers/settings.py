"""`WorkerSettings`: every knob of the workers, typed, keyword-only, with its default stated here.

The settings both services read (`REDIS_URL`, `EVENT_KEY_PREFIX`, `EVENT_DEDUPE_SECONDS`, `LOG_FORMAT`,
`LOG_LEVEL`) come from `service_base.settings.ServiceSettings`; the other contract names
(`CELERY_BROKER_URL`, `TOKEN_ENCRYPTION_KEY`, `SMARTCAR_*`) are read as they are, and the workers' own
settings from `WORKERS_<FIELD NAME>` (for example `WORKERS_CONCURRENCY=128`). Lists and mappings are JSON
in the environment.

A worker process reads them once (`load_settings`, called by `workers.assembly`) and passes them down;
the rules that tie settings together are stated once, here (`visibility_problem`, `lock_lease_problem`),
and used by the settings' own check and by the check of the Celery configuration actually in effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from cryptography.fernet import MultiFernet
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from redis.connection import parse_url

from eventstore.tokens_at_rest import cipher_of, key_problem
from service_base.settings import ServiceSettings, SettingsError, address_of, env
from smartcar_core.retry import RetryPolicy

__all__ = ["SettingsError", "WorkerSettings", "load_settings", "lock_lease_problem", "visibility_problem"]

_MISSING_KEY = (
    "TOKEN_ENCRYPTION_KEY is not set: the workers encrypt Smartcar tokens at rest with it "
    "(create one with `smartcar-events tokens new-key`)"
)


def visibility_problem(visibility_timeout: float, max_countdown: float, time_limit: float) -> str | None:
    """Why a message could be delivered twice while it waits in a worker or runs (None: it cannot)."""
    needed = max_countdown + time_limit
    if visibility_timeout > needed:
        return None
    return (
        f"visibility_timeout {visibility_timeout:g} s must exceed the longest countdown plus the hard time "
        f"limit ({max_countdown:g} + {time_limit:g} s): a message still unacknowledged then is delivered "
        "again while it waits or runs (raise WORKERS_VISIBILITY_TIMEOUT)"
    )


def lock_lease_problem(lock_lease: float, command_timeout: float) -> str | None:
    """Why two commands could reach one vehicle at once (None: they cannot)."""
    if lock_lease > command_timeout:
        return None
    return (
        f"WORKERS_VEHICLE_LOCK_LEASE ({lock_lease:g} s) must exceed WORKERS_COMMAND_TIMEOUT "
        f"({command_timeout:g} s): the vehicle's lock must outlast a command call"
    )


_OWN_THREADS = 16  # the relay, the lease heartbeat, metrics and pause reads, with room


class WorkerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WORKERS_")
    service: ClassVar[str] = "worker"
    missing: ClassVar[Mapping[str, str]] = {"TOKEN_ENCRYPTION_KEY": _MISSING_KEY}

    # --- contract names (see ARCHITECTURE.md) ---
    celery_broker_url: str | None = Field(None, validation_alias=env("CELERY_BROKER_URL"))
    """Celery's broker; `REDIS_URL` when unset."""
    token_encryption_key: SecretStr = Field(validation_alias=env("TOKEN_ENCRYPTION_KEY"))
    """One Fernet key, or several comma-separated (the first encrypts, all decrypt: key rotation)."""
    smartcar_client_id: str | None = Field(None, validation_alias=env("SMARTCAR_CLIENT_ID"))
    smartcar_client_secret: SecretStr | None = Field(None, validation_alias=env("SMARTCAR_CLIENT_SECRET"))
    smartcar_amt: SecretStr | None = Field(None, validation_alias=env("SMARTCAR_AMT"))
    smartcar_webhook_id: str | None = Field(None, validation_alias=env("SMARTCAR_WEBHOOK_ID"))
    smartcar_redirect_uri: str | None = Field(None, validation_alias=env("SMARTCAR_REDIRECT_URI"))
    """The Connect redirect URI (the receiver's `/callback`), put in the re-consent URLs we make."""
    log_task_lines: bool = False
    """Celery's two INFO lines per task (received, succeeded): off, they would be most of the log at
    fleet rates and cost CPU; retries and dead letters are logged by us either way."""

    # --- Celery ---
    queue: str = "smartcar-events"
    """The queue process_event is sent to and the worker consumes."""
    broker_key_prefix: str = ""
    """Prepended by kombu to every broker key (several deployments, or test sessions, on one Redis)."""
    pool: Literal["threads", "gevent", "prefork", "solo"] = "threads"
    concurrency: int = Field(64, ge=1)
    prefetch_multiplier: int = Field(1, ge=1)
    task_soft_time_limit: float = Field(330.0, gt=0)
    task_time_limit: float = Field(360.0, gt=0)
    max_countdown: float = Field(60.0, ge=0)
    """Retries due sooner than this are Celery countdowns; later ones are parked in Redis."""
    visibility_timeout: float = Field(3600.0, gt=0)
    soft_shutdown_timeout: float = Field(60.0, ge=0)
    restore_interval: float = Field(10.0, gt=0)
    """How often each worker gives back the messages of dead workers (unacked past the visibility timeout)."""
    startup_broker_wait: int = Field(30, ge=1, le=600)
    """How long a worker, beat or `smartcar-events relay` waits for the broker at start-up (each failed
    attempt logged with the address) before it refuses to start."""

    # --- leases: how a dead worker's runs are taken over ---
    lease_seconds: float = Field(20.0, gt=0)
    """A run's lease. The process running the event renews it every `lease_renew_interval` while the run
    lasts (up to the hard time limit); when its worker dies the lease ends, and a relay enqueues the event
    again: a killed worker's runs are taken over within about `lease_seconds + lease_check_interval`."""
    lease_renew_interval: float = Field(5.0, gt=0)
    lease_check_interval: float = Field(5.0, gt=0)
    """How often each relay looks for runs whose lease ended."""

    # --- metrics ---
    metrics_port: int = Field(0, ge=0, le=65535)
    """Serve Prometheus `/metrics` on this port in each worker's main process (0: off). One port per
    worker process on a host; with the prefork pool also set `PROMETHEUS_MULTIPROC_DIR`."""
    metrics_address: str = "0.0.0.0"  # noqa: S104 - a scrape target inside the cluster, on purpose

    # --- relay and sweeper ---
    relay_enabled: bool = True
    """Run the relay (inbox -> process_event tasks) inside each worker process."""
    relay_dispatch: Literal["local", "celery"] = "local"
    """Where the relay's events run: `local`, on `event_concurrency` threads of the process whose relay
    claimed them, without a Celery message each (`workers.local_runs`; the threads pool only, other pools
    use `celery`); `celery`, as process_event tasks on the Celery queue (up to `relay_high_water`)."""
    event_concurrency: int = Field(192, ge=1)
    """Threads running the relay's events in each worker process (`relay_dispatch=local`); the relay
    claims while fewer than 1.5 times this many wait or run there. Events in flight are bounded by it: at
    a 200 ms Smartcar call each, 192 threads finish at most about 900 events a second (bench/workers_bench.py
    on 2 cores: 128 threads 567 events/s, 192 790, 256 839, at about 1 ms of CPU an event)."""
    relay_batch: int = Field(200, ge=1)
    relay_high_water: int = Field(256, ge=1)
    """Publish only while the Celery queue holds fewer messages than this: bursts wait in the inbox."""
    relay_idle_wait: float = Field(1.0, gt=0)
    relay_linger: float = Field(0.01, ge=0)
    """After a pop that brought less than a batch, wait this long for more (batches a trickle)."""
    relay_fast_publish: bool = True
    """Write Celery's messages directly, a batch per LPUSH (see `workers.publish`); false: `apply_async`."""
    sweep_interval: float = Field(30.0, gt=0)
    sweep_after: float = Field(120.0, gt=0)
    """An event whose state has not moved for this long past its expected time is re-enqueued."""
    sweep_batch: int = Field(500, ge=1)
    done_retention: int = Field(7 * 24 * 3600, ge=60)
    """Seconds a done event record is kept (the sweeper then deletes it with its index entries)."""
    failed_retention: int = Field(30 * 24 * 3600, ge=0)
    """Seconds a dead letter is kept after its failure, then deleted the same way; 0: until replayed."""

    # --- retries (smartcar_core.RetryPolicy) ---
    retry_max_attempts: int = Field(5, ge=1)
    retry_base_delay: float = Field(1.0, ge=0)
    retry_max_delay: float = Field(60.0, ge=0)
    retry_jitter: float = Field(0.5, ge=0, le=1)
    retry_max_retry_after: float = Field(900.0, ge=0)
    retry_long_max_attempts: int = Field(4, ge=1)
    retry_long_base_delay: float = Field(300.0, ge=0)
    retry_long_max_delay: float = Field(3600.0, ge=0)
    max_deferrals: int = Field(100, ge=1)
    """How often an event may wait for a busy vehicle or an empty rate bucket before it is dead-lettered."""

    # --- Smartcar calls ---
    read_timeout: float = Field(30.0, gt=0)
    command_timeout: float = Field(310.0, gt=0)
    """Smartcar's SDKs wait 310 s for a command: a car may take minutes to wake up."""
    app_rate_bucket: int = Field(120, ge=0)
    """Smartcar's application-wide bucket (0 turns our bucket off); ask Smartcar for a larger one."""
    app_rate_refill_per_minute: float = Field(2.0, gt=0)
    rate_wait_max: float = Field(2.0, ge=0)
    """Wait in the worker for a rate token at most this long; beyond, the event is deferred."""
    vehicle_lock_wait: float = Field(10.0, ge=0)
    vehicle_lock_lease: float = Field(340.0, gt=0)
    token_refresh_margin: float = Field(300.0, ge=0)
    token_refresh_lease: float = Field(60.0, gt=0)
    token_refresh_wait: float = Field(30.0, ge=0)
    token_cache_seconds: float = Field(60.0, ge=0)
    """Reuse a token read from Redis this long in the process (saves two round trips per call)."""
    client_rejected_delay: float = Field(300.0, gt=0)
    """While Smartcar rejects SMARTCAR_CLIENT_ID/SECRET (invalid_client), an event that needed a refresh
    waits this long before it tries again: not counted as an attempt, never dead-lettered for it."""
    revoked_grace: float = Field(7 * 86400.0, gt=0)
    """A vehicle whose access was lost (refused grant, revoked, a permission missing) keeps its tokens
    and waiting events this long for its owner to connect again; then it is unsubscribed and forgotten."""

    # --- vehicle lifecycle (subscribe, unsubscribe, disconnect, refresh) and reconciliation ---
    lifecycle_interval: float = Field(5.0, gt=0)
    """Seconds between beat's drains of the lifecycle jobs (`workers.lifecycle_jobs`); a job asked for by
    `smartcar-events vehicles` or a direct task is also drained at once."""
    lifecycle_batch: int = Field(20, ge=1)
    """Jobs one drain takes (each then held for `lifecycle_lease`)."""
    lifecycle_lease: float = Field(120.0, gt=0)
    """Seconds a taken job is held: longer than its Smartcar calls (a disconnect makes two, plus perhaps a
    token refresh); a job whose worker died is taken again after it."""
    reconcile_interval: float = Field(3600.0, ge=0)
    """Seconds between beat's reconciliations of our vehicles with Smartcar's connections (0: off)."""

    # --- replay jobs (`smartcar-events replay`, and automatic replays on RESOLVED) ---
    replay_interval: float = Field(5.0, gt=0)
    """Seconds between beat's looks for a replay job to run (`workers.replay_jobs`); the CLI's `--yes`
    also sends one at once, and a worker whose time is up hands the job on at once."""
    replay_lease: float = Field(30.0, gt=0)
    """Seconds a worker holds a job between renewals: a killed worker's job is taken again after it."""
    replay_run_seconds: float = Field(55.0, gt=0)
    """How long one task runs a job before handing it on (a worker thread is not held for hours)."""
    replay_batch: int = Field(200, ge=1)
    """At most this many ids a round trip of steps."""
    auto_replay_limit: int = Field(1000, ge=0)
    """At most this many dead letters replayed for one RESOLVED error of a vehicle (0: no automatic
    replay)."""
    auto_replay_rate: float = Field(5.0, gt=0)
    """Events a second of an automatic replay."""

    # --- handlers ---
    handler_modules: list[str] = Field(default_factory=list)
    """Modules imported at start-up to register your own handlers (see `workers.api`)."""
    signals_api: Literal["v3", "v2"] = "v3"
    """How follow-up signals are read: the v3 signals API, or v2 reads (legacy vehicles)."""
    follow_up_signals: dict[str, list[str]] = Field(default_factory=dict)
    """Trigger code (or "*") -> signal codes to fetch when the delivery lacks them."""
    charging_rule_enabled: bool = False
    charge_stop_at_soc: float | None = Field(80.0, ge=0, le=100)
    charge_start_below_soc: float | None = Field(20.0, ge=0, le=100)

    @field_validator("token_encryption_key")
    @classmethod
    def _valid_fernet_keys(cls, value: SecretStr) -> SecretStr:
        problem = key_problem(value.get_secret_value())  # it never echoes a key
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _limits_fit(self) -> WorkerSettings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError("WORKERS_TASK_SOFT_TIME_LIMIT must be below WORKERS_TASK_TIME_LIMIT")
        problem = lock_lease_problem(self.vehicle_lock_lease, self.command_timeout) or visibility_problem(
            self.visibility_timeout, self.max_countdown, self.task_time_limit
        )
        if problem:
            raise ValueError(problem)
        if self.lease_renew_interval * 2 > self.lease_seconds:
            raise ValueError(
                f"WORKERS_LEASE_RENEW_INTERVAL ({self.lease_renew_interval:g} s) must be at most half of "
                f"WORKERS_LEASE_SECONDS ({self.lease_seconds:g} s): one late renewal must not end a live run"
            )
        return self

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @field_validator("celery_broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_url(value)  # type: ignore[no-untyped-call] # - its ValueError says what is wrong
        return value

    @property
    def broker_address(self) -> str:
        """Where the broker is, for logs and messages (no password)."""
        return address_of(self.broker_url)

    @property
    def runs_events_locally(self) -> bool:
        """Whether this process's relay hands its events to threads of the process (`workers.local_runs`):
        `relay_dispatch=local` asks for it, and only the threads pool has them."""
        return self.relay_enabled and self.relay_dispatch == "local" and self.pool == "threads"

    @property
    def redis_connections_needed(self) -> int:
        """The event store client's pool size: one connection for each thread that may use it at once."""
        local = self.event_concurrency if self.runs_events_locally else 0
        return max(100, local + self.concurrency + _OWN_THREADS)

    def fernet(self) -> MultiFernet:
        return cipher_of(self.token_encryption_key.get_secret_value())

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.retry_max_attempts,
            base_delay=self.retry_base_delay,
            max_delay=max(self.retry_max_delay, self.retry_base_delay),
            jitter=self.retry_jitter,
            max_retry_after=self.retry_max_retry_after,
            long_max_attempts=self.retry_long_max_attempts,
            long_base_delay=self.retry_long_base_delay,
            long_max_delay=max(self.retry_long_max_delay, self.retry_long_base_delay),
        )


def load_settings() -> WorkerSettings:
    """Settings from the environment; a `SettingsError` with every problem named when they cannot work."""
    return WorkerSettings.load()
