"""Signed deliveries whose every answer is kept: when it was sent and answered, its status and body.

The benchmark's poster (`bench/workers_poster.post_all`, `ChaosStack.post_all`) stops at the first answer
that is not 200; a scenario that expects 503s, duplicates or refusals posts through here instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from receiver.app import WEBHOOK_PATH
from testsupport.receiver import body_of, signed_headers

NO_ANSWER = 0


@dataclass(frozen=True, slots=True)
class Answer:
    event_id: str
    sent: float
    """`time.monotonic()` when the request went out, and when its answer came."""
    answered: float
    status: int
    """The HTTP status; `NO_ANSWER` when the connection failed."""
    body: bytes

    def during(self, start: float, end: float) -> bool:
        """Sent and answered within [start, end]."""
        return start <= self.sent and self.answered <= end


@dataclass(frozen=True, slots=True)
class Request:
    event_id: str
    body: bytes
    headers: dict[str, str]


def signed(event: Mapping[str, Any] | bytes, amt: str | None) -> Request:
    """The delivery Smartcar would make of `event` (compact JSON, signed with `amt`; None: unsigned)."""
    body = body_of(event)
    event_id = "" if isinstance(event, bytes) else str(event.get("eventId", ""))
    return Request(event_id, body, signed_headers(body, amt))


async def send(http: httpx.AsyncClient, request: Request) -> Answer:
    sent = time.monotonic()
    try:
        response = await http.post(WEBHOOK_PATH, content=request.body, headers=request.headers)
    except httpx.HTTPError:
        return Answer(request.event_id, sent, time.monotonic(), NO_ANSWER, b"")
    return Answer(request.event_id, sent, time.monotonic(), response.status_code, response.content)


def client(url: str, *, connections: int = 32) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0, trust_env=False)


async def send_all(
    url: str,
    requests: Iterable[Request],
    *,
    rate: float | None = None,
    until: Callable[[], bool] | None = None,
    connections: int = 32,
) -> list[Answer]:
    """Send `requests` at `rate` per second (else as fast as `connections` allow), until they run out or
    `until()` says stop; every answer kept, in the order of `requests`."""
    gate = asyncio.Semaphore(connections)
    start = time.monotonic()
    sending: list[asyncio.Task[Answer]] = []

    async with client(url, connections=connections) as http:

        async def one(request: Request) -> Answer:
            async with gate:
                return await send(http, request)

        for index, request in enumerate(requests):
            if until is not None and until():
                break
            if rate is not None:  # the load's pace, not a wait for an outcome
                await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
            sending.append(asyncio.create_task(one(request)))
        return list(await asyncio.gather(*sending))


async def deliver_all(
    url: str,
    events: Iterable[Mapping[str, Any]],
    amt: str,
    *,
    rate: float | None = None,
    until: Callable[[], bool] | None = None,
    connections: int = 32,
) -> list[Answer]:
    """`send_all` of `events`, each signed with `amt` as Smartcar signs it."""
    requests = (signed(event, amt) for event in events)
    return await send_all(url, requests, rate=rate, until=until, connections=connections)
