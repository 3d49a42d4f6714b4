"""The receiver's ASGI app: `receiver.app:app` for uvicorn, `create_app(settings)` for tests and embedding.

`app` is built on first access, from the environment: uvicorn's import of `receiver.app:app` is start-up, so a
missing `SMARTCAR_AMT` (or any invalid setting) stops the process there, rather than at the first delivery,
with one line on stderr saying what to set and exit status 3 (`STARTUP_FAILURE`). Importing this module
alone reads nothing; `create_app()` raises `SettingsError` instead.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventstore.keys import KeySpace
from eventstore.signatures import AsyncSignatureTally
from receiver.connect import ConnectFlow
from receiver.metrics import CONTENT_TYPE, ReceiverMetrics
from receiver.settings import ReceiverSettings, SettingsError, load_settings
from receiver.signatures import SignatureChecker
from receiver.verify import TokenBucket, VerifyGate
from receiver.webhook import WebhookEndpoint
from receiver.writer import EventWriter
from service_base.logs import bound_logger, configure_logging
from service_base.redis_check import check_event_store
from smartcar_core.config import Origins

WEBHOOK_PATH = "/webhooks/smartcar"
# uvicorn's own exit status for "failed before serving": under `--workers N` its supervisor stops on it,
# where any other status has it restart the worker, which fails the same way, forever.
STARTUP_FAILURE = 3
# The longest error detail /readyz shows: enough for Redis's or the OS's sentence, never a page of it.
DETAIL_CHARACTERS = 200


@dataclass(frozen=True, slots=True)
class Receiver:
    """Everything one app instance holds (reachable as `app.state.receiver`)."""

    settings: ReceiverSettings
    redis: Redis
    pool: BlockingConnectionPool
    writer: EventWriter
    metrics: ReceiverMetrics
    log: Any


def create_app(
    settings: ReceiverSettings | None = None, *, configure_logs: bool = True, origins: Origins | None = None
) -> Starlette:
    """The app for `settings` (the environment's by default). `SettingsError` when they cannot work,
    including a Redis that refuses us, or one that would lose events with `SMARTCAR_ENV=production`.
    `origins`: where Smartcar is for Connect (default: the `SMARTCAR_*_ORIGIN` variables)."""
    settings = settings or load_settings()
    if configure_logs:
        configure_logging(settings.log_format, settings.log_level)
    log = bound_logger("receiver")
    durability = _check_redis(settings, log)
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.05), settings.redis_retries),
    )
    redis = Redis(connection_pool=pool)
    checker = SignatureChecker(settings.amts, max_challenge_length=settings.verify_max_challenge_length)
    metrics = ReceiverMetrics()
    writer = EventWriter(
        redis,
        KeySpace(settings.event_key_prefix),
        dedupe_seconds=settings.event_dedupe_seconds,
        retries=settings.redis_retries,
    )
    receiver = Receiver(settings, redis, pool, writer, metrics, log)
    tally = AsyncSignatureTally(redis, KeySpace(settings.event_key_prefix))
    connect = ConnectFlow(settings, redis_client=redis, metrics=metrics, log=log, origins=origins)
    endpoint = WebhookEndpoint(
        checker=checker,
        writer=writer,
        gate=VerifyGate(settings, checker, redis),
        unsigned_verify=TokenBucket(settings.verify_unsigned_per_minute),
        metrics=metrics,
        log=log,
        max_body_bytes=settings.max_body_bytes,
        max_delivery_age=settings.delivery_age_limit,
        signature_tally=tally,
    )

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        try:
            await redis.ping()
        except (RedisError, OSError) as error:
            return JSONResponse(
                {"status": "unavailable", "redis": redis_problem(settings, error)}, status_code=503
            )
        return JSONResponse({"status": "ready"})

    async def metrics_page(_request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            await writer.load_script()
        except (RedisError, OSError) as error:
            problem = redis_problem(settings, error)
            log.warning(
                "redis_unavailable_at_startup",
                redis=problem["address"],
                error=problem["error"],
                detail=problem["detail"],
            )
        if settings.gc_freeze:
            # Everything alive now (modules, settings, pools) lives as long as the process: keep it out of
            # the collector's scans. Without this a full collection walks it all and shows up as p99 spikes.
            gc.collect()
            gc.freeze()
        log.info(
            "receiver_started",
            redis=settings.redis_address,
            key_prefix=settings.event_key_prefix,
            amt_count=len(settings.amts),
            max_body_bytes=settings.max_body_bytes,
            verify_require_armed=settings.verify_require_armed,
            redis_durable=not durability,
            connect_enabled=settings.connect_enabled,
        )
        try:
            yield
        finally:
            await writer.drain()
            await tally.drain()
            await connect.aclose()
            await redis.aclose()
            await pool.aclose()

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, endpoint, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
            *connect.routes,
        ],
        lifespan=lifespan,
    )
    # No trailing-slash redirect: Starlette builds its Location from the Host header, so any client could
    # have the receiver point elsewhere (POST /webhooks/smartcar/ with Host: evil.example). A 404 instead.
    app.router.redirect_slashes = False
    app.state.receiver = receiver
    return app


def redis_problem(settings: ReceiverSettings, error: Exception) -> dict[str, str]:
    """Why Redis does not answer, for `/readyz` and the logs: where (`redis_address`, no password), the
    error's class, and its words (Redis's or the OS's, such as "Connection refused"), cut short, with the
    password of `REDIS_URL` taken out should it ever appear in them."""
    detail = str(error)
    password = urlsplit(settings.redis_url).password
    for secret in {password, unquote(password)} if password else ():
        detail = detail.replace(secret, "[redacted]")
    if len(detail) > DETAIL_CHARACTERS:
        detail = detail[: DETAIL_CHARACTERS - 3] + "..."
    return {"address": settings.redis_address, "error": type(error).__name__, "detail": detail}


def _check_redis(settings: ReceiverSettings, log: Any) -> list[str]:
    """At start-up: `SettingsError` for a Redis that refuses us, or (production) would lose events; the
    durability problems otherwise, logged. A Redis that does not answer is an outage, not a configuration:
    the receiver starts, answers 503 and logs `redis_unavailable_at_startup` (its lifespan)."""
    try:
        problems = check_event_store(settings, timeout=settings.redis_timeout)
    except (RedisError, OSError):
        return []
    if problems:
        log.warning("redis_not_durable", redis=settings.redis_address, problems=problems)
    return problems


def __getattr__(name: str) -> Any:
    if name == "app":
        try:
            application = create_app()
        except SettingsError as error:
            sys.stderr.write(f"receiver: configuration error: {error}\n")
            raise SystemExit(STARTUP_FAILURE) from None
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
