"""Helpers for testing the receiver, and for testing against it: run the app in-process (httpx's ASGI
transport, lifespan included) or under a real uvicorn in a thread (`testsupport.serve_asgi`, on a socket
bound first), post signed deliveries, read the event store back with a plain Redis client.

    async with asgi_client(create_app(settings)) as http:
        response = await deliver(http, event, amt=amt)
    with serve(create_app(settings)) as live:      # live.webhook_url for an emitter
        ...
"""

from __future__ import annotations

import asyncio
import json
import socket
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from starlette.applications import Starlette

from eventstore.keys import KeySpace
from eventstore.record import EventRecord
from receiver.app import WEBHOOK_PATH
from smartcar_core.webhooks import signature_of
from testsupport import bound_socket, serve_asgi

SERVER_START_SECONDS = 10.0


def body_of(event: Mapping[str, Any] | bytes) -> bytes:
    """The bytes Smartcar would send for `event`: compact JSON (bytes are kept as they are)."""
    return event if isinstance(event, bytes) else json.dumps(event, separators=(",", ":")).encode()


def signed_headers(body: bytes, amt: str | None) -> dict[str, str]:
    """A delivery's headers; `amt=None` leaves `SC-Signature` out."""
    headers = {"Content-Type": "application/json"}
    if amt is not None:
        headers["SC-Signature"] = signature_of(amt, body)
    return headers


async def deliver(
    http: httpx.AsyncClient, event: Mapping[str, Any] | bytes, *, amt: str | None
) -> httpx.Response:
    """POST `event` to the webhook path as Smartcar does: compact JSON signed with `amt` (None: unsigned)."""
    body = body_of(event)
    return await http.post(WEBHOOK_PATH, content=body, headers=signed_headers(body, amt))


def read_record(client: redis.Redis, keyspace: KeySpace, event_id: str) -> dict[str, Any]:
    """The stored event (text fields decoded, `raw` as bytes); empty when there is none."""
    stored = client.hgetall(keyspace.event(event_id))
    return EventRecord.from_hash(stored).as_dict() if stored else {}


def read_inbox(client: redis.Redis, keyspace: KeySpace) -> list[str]:
    """The ids waiting for the relay, oldest last (the receiver pushes on the left)."""
    return [item.decode() for item in client.lrange(keyspace.inbox, 0, -1)]  # type: ignore[union-attr] # - sync


@dataclass(frozen=True, slots=True)
class Harness:
    """A client on a receiver plus what its deliveries are checked against: the store, the keys, the AMT."""

    http: httpx.AsyncClient
    redis: redis.Redis
    keys: KeySpace
    amt: str

    async def deliver(
        self, event: Mapping[str, Any] | bytes, *, amt: str | None = None, unsigned: bool = False
    ) -> httpx.Response:
        """POST `event` signed with `amt` (default: the harness's), or with no signature at all."""
        return await deliver(self.http, event, amt=None if unsigned else amt or self.amt)

    def record(self, event_id: str) -> dict[str, Any]:
        return read_record(self.redis, self.keys, event_id)

    def inbox(self) -> list[str]:
        return read_inbox(self.redis, self.keys)


@asynccontextmanager
async def asgi_client(
    app: Starlette, *, client_address: str = "203.0.113.9"
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app in-process, with the app's lifespan run around it as uvicorn would."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_address, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver.test") as client:
            yield client


@dataclass(frozen=True, slots=True)
class LiveReceiver:
    url: str
    app: Starlette

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH


@contextmanager
def serve(app: Starlette, **config: Any) -> Iterator[LiveReceiver]:
    """The app under a real uvicorn (httptools, lifespan on, no access log; `config`: uvicorn's options) in
    a thread, on a socket bound first, until the block ends."""
    with serve_asgi(app, start_timeout=SERVER_START_SECONDS, what="the receiver", **config) as url:
        yield LiveReceiver(url, app)


class TcpProxy:
    """A TCP relay to `target` on a fixed local port that a test can cut (`stop`) and restore (`start`):
    a Redis outage as the receiver's connections see it (refused connections, broken pooled ones).

    The port is held from the start by a bound socket that never listens (connections to it are refused
    while the relay is stopped, and no other process can take it); `start` listens beside it (SO_REUSEPORT).

    `fail_next(marker, mode)` breaks the next connection whose request contains `marker`, once: `"cut"`
    closes it before the request reaches Redis; `"mute"` lets the request through and drops the replies
    (the command ran, its answer never comes: a timeout).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        weakref.finalize(self, holder.close)
        self.port: int = holder.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._failure: tuple[bytes, str] | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def fail_next(self, marker: bytes, mode: str) -> None:
        if mode not in {"cut", "mute"}:
            raise ValueError("mode is 'cut' or 'mute'")
        self._failure = (marker, mode)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, sock=bound_socket(port=self.port, reuse_port=True)
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, upstream_writer))
        muted = asyncio.Event()
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer, muted, inspect=True),
            self._pipe(upstream_reader, client_writer, muted, inspect=False),
            return_exceptions=True,
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        muted: asyncio.Event,
        *,
        inspect: bool,
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if inspect and self._failure is not None and self._failure[0] in chunk:
                    _marker, mode = self._failure
                    self._failure = None
                    if mode == "cut":
                        return
                    muted.set()
                if not inspect and muted.is_set():
                    continue
                writer.write(chunk)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()
