"""`Runtime`: the services a worker process uses, built once from `WorkerSettings`.

One Redis client (thread-safe pool), one pooled httpx client, and the stores and runners on top of
them. `get_runtime()` builds the process's runtime on first use (after a prefork child is forked, not
before); tests build their own with `Runtime.build(settings, origins=..., enqueue=...)`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import redis

from eventstore.keys import KeySpace
from smartcar_core.auth import AuthClient
from smartcar_core.config import Origins
from smartcar_core.results import Access
from smartcar_core.retry import RetryPolicy
from smartcar_core.transport import make_client
from workers.commands import CommandRunner
from workers.gateway import SmartcarGateway
from workers.lifecycle import EventStore
from workers.limits import RateLimiter
from workers.registry import HandlerRegistry, registry
from workers.settings import WorkerSettings, get_settings
from workers.state import VehicleStateStore
from workers.tokens import Refresher, TokenStore

Enqueue = Callable[[str, float], None]
"""Publish process_event(event_id) to run after a countdown (seconds)."""

_REDIS_TIMEOUT = 10.0
_REFRESH_TIMEOUT = 30.0
_CONNECTION_HEADROOM = 8


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=_REDIS_TIMEOUT,
        socket_connect_timeout=_REDIS_TIMEOUT,
        health_check_interval=30,
        retry_on_timeout=True,
    )


def load_handlers(settings: WorkerSettings) -> None:
    """Import the built-in handlers and the modules named in `WORKERS_HANDLER_MODULES`."""
    importlib.import_module("workers.handlers")
    for name in settings.handler_modules:
        importlib.import_module(name)


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
    vehicles: VehicleStateStore
    tokens: TokenStore
    limiter: RateLimiter
    gateway: SmartcarGateway
    commands: CommandRunner
    registry: HandlerRegistry
    policy: RetryPolicy
    enqueue: Enqueue | None = None

    def __repr__(self) -> str:
        return f"Runtime(prefix={self.keys.prefix!r})"

    @classmethod
    def build(
        cls,
        settings: WorkerSettings,
        *,
        origins: Origins | None = None,
        enqueue: Enqueue | None = None,
        handlers: HandlerRegistry | None = None,
        http: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
    ) -> Runtime:
        origins = origins or Origins.from_env()
        client = redis_client(settings.redis_url)
        pool = settings.concurrency + _CONNECTION_HEADROOM
        http = http or make_client(limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool))
        prefix = settings.event_key_prefix
        tokens = TokenStore(
            client,
            settings.fernet(),
            prefix=prefix,
            refresher=_refresher(settings, origins, http),
            refresh_margin=settings.token_refresh_margin,
            lock_lease=settings.token_refresh_lease,
            lock_wait=settings.token_refresh_wait,
            cache_seconds=settings.token_cache_seconds,
        )
        limiter = RateLimiter(
            client,
            prefix=prefix,
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
        )
        if handlers is None:
            load_handlers(settings)
            handlers = registry
        return cls(
            settings=settings,
            redis=client,
            http=http,
            keys=KeySpace(prefix),
            store=EventStore(client, KeySpace(prefix), retention=settings.done_retention),
            vehicles=VehicleStateStore(client, prefix=prefix),
            tokens=tokens,
            limiter=limiter,
            gateway=gateway,
            commands=CommandRunner(
                client,
                gateway,
                prefix=prefix,
                lock_lease=settings.vehicle_lock_lease,
                lock_wait=settings.vehicle_lock_wait,
                retention=settings.done_retention,
                command_timeout=settings.command_timeout,
            ),
            registry=handlers,
            policy=policy or settings.retry_policy(),
            enqueue=enqueue,
        )

    def close(self) -> None:
        self.http.close()
        self.redis.close()


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The process's runtime, built on first use with Celery countdowns as its `enqueue`."""
    global _runtime  # noqa: PLW0603 - one runtime per process
    if _runtime is None:
        with _lock:
            if _runtime is None:
                from workers.tasks import enqueue  # noqa: PLC0415 - tasks import this module

                _runtime = Runtime.build(get_settings(), enqueue=enqueue)
    return _runtime


def reset_runtime() -> None:
    """Forget the process's runtime (after a fork, whose sockets must not be shared), closing its clients."""
    global _runtime  # noqa: PLW0603 - one runtime per process
    with _lock:
        if _runtime is not None:
            _runtime.close()
        _runtime = None
