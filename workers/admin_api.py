"""The admin HTTP API: what `smartcar-events` does (events list/show, replay plan/start/status/cancel,
stats, pause/resume) over HTTP, for tools that cannot run the CLI. Its routes: `workers.admin_routes`.

    ADMIN_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') python -m workers.admin_api
    curl -H "Authorization: Bearer $ADMIN_TOKEN" http://127.0.0.1:8081/admin/v1/events?status=failed

- **Off unless `ADMIN_TOKEN` is set**: without it the process exits 78 (EX_CONFIG, as workers and beat
  refuse to start) with one line, `ADMIN_TOKEN is not set: the admin API is off`, so a deployment that
  does not want it leaves the variable unset (a systemd unit then stays down: 78 is not restarted).
- **Its own listener**, `ADMIN_HOST:ADMIN_PORT` (default 127.0.0.1:8081), a process of its own: never
  mounted on the receiver's public app or port.
- **Bearer token**: every `/admin/v1/...` request needs `Authorization: Bearer <ADMIN_TOKEN>`, compared
  in constant time (`hmac.compare_digest` of the two SHA-256 digests, so not even the length leaks). A
  missing and a wrong token get the same 401 (with `WWW-Authenticate: Bearer`); the token is never
  logged nor echoed. `GET /healthz` alone answers without it (the listener is up).
- **Limits**: a request body of at most `ADMIN_MAX_BODY_BYTES` (64 KiB; more: 413), a page of at most
  1000 events. A request it cannot do is a 4xx whose JSON names the problem; a Redis that does not answer
  is a 503; nothing answers a traceback.

The app is built by `create_app(admin, settings, client)` from what it is given (no module state), as
the tests build it; `main()` is the process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import redis
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from eventstore.client import connect
from eventstore.keys import KeySpace
from service_base.logs import configure_logging, get_logger
from service_base.settings import ServiceSettings, SettingsError, env
from workers.admin_routes import AdminRoutes, ApiError, Stores
from workers.replay import REPLAY_TASK
from workers.sending import BrokerUnavailableError, send_task
from workers.settings import WorkerSettings, load_settings

log = get_logger("workers.admin_api")

OFF = "ADMIN_TOKEN is not set: the admin API is off"
SETTINGS_FAILURE = os.EX_CONFIG
MIN_TOKEN_LENGTH = 32
PREFIX = "/admin/v1"
_UNAUTHORIZED = json.dumps({"error": "unauthorized: send Authorization: Bearer <ADMIN_TOKEN>"}).encode()


class AdminSettings(ServiceSettings):
    """The admin API's own settings (the store's, the broker's and the rest are the workers')."""

    model_config = SettingsConfigDict(env_prefix="ADMIN_")
    service: ClassVar[str] = "admin API"

    token: SecretStr | None = Field(None, validation_alias=env("ADMIN_TOKEN"))
    """The bearer token every request needs; unset (or empty): the API is off."""
    host: str = "127.0.0.1"
    """The address it listens on: loopback unless you put it behind your own access control."""
    port: int = Field(8081, ge=1, le=65535)
    max_body_bytes: int = Field(65536, ge=1024, le=16 * 2**20)
    """Largest request body read; larger ones get 413."""

    @field_validator("token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"at least {MIN_TOKEN_LENGTH} characters (make one: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        return value


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class BearerAuth:
    """Lets a request through only with `Authorization: Bearer <token>` (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: SecretStr) -> None:
        self.app = app
        self._digest = _digest(token.get_secret_value().encode())

    def allowed(self, scope: Scope) -> bool:
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, credential = given.partition(b" ")
        match = hmac.compare_digest(_digest(credential.strip()), self._digest)
        return scheme.lower() == b"bearer" and match

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        log.info("admin_unauthorized", path=scope.get("path"), peer=(scope.get("client") or ("-",))[0])
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_UNAUTHORIZED)).encode()),
            (b"www-authenticate", b'Bearer realm="smartcar-admin"'),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": _UNAUTHORIZED})


def body_reader(limit: int) -> Callable[[Request], Any]:
    """Reads a request's JSON object, at most `limit` bytes (413 past it, before reading more); an empty
    body is `{}`."""

    async def read(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the body is over {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the body is over {limit} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            return {}
        try:
            found = json.loads(raw)
        except ValueError as error:
            raise ApiError(400, f"the body is not JSON: {error}") from None
        if not isinstance(found, dict):
            raise ApiError(400, "the body must be a JSON object")
        return found

    return read


def _api_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)  # noqa: S101 - registered for ApiError only
    return JSONResponse({"error": error.message, **error.extra}, status_code=error.status)


def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)  # noqa: S101 - registered for HTTPException only
    return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)


def create_app(
    admin: AdminSettings,
    settings: WorkerSettings,
    client: redis.Redis,
    *,
    ask_workers: Callable[[], bool] | None = None,
) -> Starlette:
    """The admin app on `client` (the event store's Redis, a sync client answering bytes). `ask_workers`
    sends the workers the replay task (default: through the broker of `settings`)."""
    if admin.token is None:
        raise SettingsError(OFF)
    if ask_workers is None:
        ask_workers = _asker(settings)
    stores = Stores(client, KeySpace(settings.event_key_prefix), settings.done_retention)
    routes = AdminRoutes(stores, ask_workers=ask_workers, body=body_reader(admin.max_body_bytes))

    def unavailable(_request: Request, error: Exception) -> JSONResponse:
        message = f"the event store's Redis at {settings.redis_address} did not answer: {error}"
        return JSONResponse({"error": message}, status_code=503)

    def failed(request: Request, error: Exception) -> JSONResponse:
        log.error("admin_request_failed", path=request.url.path, error=f"{type(error).__name__}: {error}")
        return JSONResponse({"error": "internal error (logged)"}, status_code=500)

    return Starlette(
        routes=[
            Route("/healthz", _healthz, methods=["GET"]),
            Mount(PREFIX, routes=routes.routes(), middleware=[Middleware(BearerAuth, token=admin.token)]),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            redis.RedisError: unavailable,
            Exception: failed,
        },
    )


def _healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _asker(settings: WorkerSettings) -> Callable[[], bool]:
    def ask() -> bool:
        try:
            send_task(settings, REPLAY_TASK)
        except BrokerUnavailableError as error:
            log.warning("replay_task_not_sent", problem=str(error), outcome="beat's next replay task runs it")
            return False
        return True

    return ask


def main() -> int:
    """`python -m workers.admin_api`: serve on ADMIN_HOST:ADMIN_PORT; 78 with one line when off or when
    a setting cannot work."""
    try:
        admin = AdminSettings.load()
        settings = load_settings() if admin.token is not None else None
    except SettingsError as error:
        sys.stderr.write(f"{error}\n")
        return SETTINGS_FAILURE
    if admin.token is None or settings is None:
        sys.stderr.write(f"{OFF}\n")
        return SETTINGS_FAILURE
    import uvicorn  # noqa: PLC0415 - the server only when serving

    configure_logging(settings.log_format, settings.log_level)
    client = connect(settings.redis_url)
    try:
        app = create_app(admin, settings, client)
        log.info("admin_api_listening", host=admin.host, port=admin.port, redis=settings.redis_address)
        uvicorn.run(app, host=admin.host, port=admin.port, access_log=False, log_level="warning")
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
