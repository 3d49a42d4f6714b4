"""`Runtime`: the services a worker process uses, built once from `WorkerSettings`.

One Redis client (thread-safe pool), one pooled httpx client, and the stores and runners on top of
them. A worker process builds its one runtime in `workers.assembly` (after a prefork child is forked,
not before); tests build their own with `Runtime.build(settings, handlers=..., origins=..., enqueue=...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import redis

from eventstore.client import connect
from eventstore.events import EventStore
from eventstore.keys import KeySpace
from eventstore.vehicles import VehicleStateStore
from smartcar_core.auth import AuthClient
from smartcar_core.config import Origins
from smartcar_core.results import Access
from smartcar_core.retry import RetryPolicy
from smartcar_core.transport import make_client
from workers.commands import CommandRunner
from workers.gateway import SmartcarGateway
from workers.leases import LeaseKeeper
from workers.limits import RateLimiter
from workers.metrics import WorkerMetrics
from workers.registry import HandlerRegistry
from workers.settings import WorkerSettings
from workers.tokens import Refresher, TokenStore

Enqueue = Callable[[str, float], None]
"""Publish process_event(event_id) to run after a countdown (seconds)."""

_REFRESH_TIMEOUT = 30.0


def _refresher(settings: WorkerSettings, origins: Origins, http: httpx.Client) -> Refresher | None:
    if not settings.smartcar_client_id or settings.smartcar_client_secret is None:
        return None
    auth = AuthClient(
        settings.smartcar_client_id,
        settings.smartcar_client_secret.get_secret_value(),
        origins=origins,
        http=http,
        timeout=_REFRESH_TIMEOUT,
    )

    def refresh(token: str) -> Access:
        return auth.exchange_refresh_token(token)

    return refresh


@dataclass
class Runtime:
    settings: WorkerSettings
    redis: redis.Redis
    http: httpx.Client
    keys: KeySpace
    store: EventStore
    leases: LeaseKeeper
    vehicles: VehicleStateStore
    tokens: TokenStore
    limiter: RateLimiter
    gateway: SmartcarGateway
    commands: CommandRunner
    registry: HandlerRegistry
    policy: RetryPolicy
    metrics: WorkerMetrics
    enqueue: Enqueue | None = None

    def __repr__(self) -> str:
        return f"Runtime(prefix={self.keys.prefix!r})"

    @classmethod
    def build(
        cls,
        settings: WorkerSettings,
        *,
        handlers: HandlerRegistry,
        origins: Origins | None = None,
        enqueue: Enqueue | None = None,
        http: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
    ) -> Runtime:
        origins = origins or Origins.from_env()
        # Every thread that may use Redis at once: the event threads, Celery's pool, and a few of our own
        # (the relay, the lease heartbeat, pause and metrics reads).
        client = connect(settings.redis_url, max_connections=settings.redis_connections_needed)
        metrics = WorkerMetrics()
        # A pool of connections per thread (`PerThreadTransport`): one pool shared by the worker's threads
        # cost a third of its CPU at a hundred threads (bench/README.md, "Where an event's CPU goes").
        http = http or make_client(wrap=metrics.measured, per_thread=True)
        keys = KeySpace(settings.event_key_prefix)
        tokens = TokenStore(
            client,
            settings.fernet(),
            keys=keys,
            refresher=_refresher(settings, origins, http),
            refresh_margin=settings.token_refresh_margin,
            lock_lease=settings.token_refresh_lease,
            lock_wait=settings.token_refresh_wait,
            cache_seconds=settings.token_cache_seconds,
            metrics=metrics,
            client_id=settings.smartcar_client_id,
        )
        limiter = RateLimiter(
            client,
            keys=keys,
            capacity=settings.app_rate_bucket,
            refill_per_minute=settings.app_rate_refill_per_minute,
            max_wait=settings.rate_wait_max,
        )
        gateway = SmartcarGateway(
            tokens=tokens,
            limiter=limiter,
            origins=origins,
            http=http,
            read_timeout=settings.read_timeout,
            command_timeout=settings.command_timeout,
            metrics=metrics,
        )
        store = EventStore(
            client,
            keys,
            retention=settings.done_retention,
            failed_retention=settings.failed_retention or None,
        )
        leases = LeaseKeeper(
            store,
            lease=settings.lease_seconds,
            interval=settings.lease_renew_interval,
            max_run=settings.task_time_limit,
        )
        return cls(
            settings=settings,
            redis=client,
            http=http,
            keys=keys,
            store=store,
            leases=leases,
            vehicles=VehicleStateStore(client, keys),
            tokens=tokens,
            limiter=limiter,
            gateway=gateway,
            commands=CommandRunner(
                client,
                gateway,
                keys=keys,
                lock_lease=settings.vehicle_lock_lease,
                lock_wait=settings.vehicle_lock_wait,
                retention=settings.done_retention,
                command_timeout=settings.command_timeout,
                metrics=metrics,
            ),
            registry=handlers,
            policy=policy or settings.retry_policy(),
            metrics=metrics,
            enqueue=enqueue,
        )

    def close(self) -> None:
        self.leases.stop()
        self.http.close()
        self.redis.close()
