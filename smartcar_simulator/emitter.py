"""Deliver webhook payloads the way Smartcar does, to test a receiver against the real semantics.

Smartcar POSTs JSON signed with `SC-Signature` (hex HMAC-SHA256 of the exact body bytes, keyed with the
Application Management Token), gives the target 15 seconds, counts any non-2xx answer (redirects
included: they are not followed), a timeout or a connection error as a failure, retries three times
after 25, 50 and 100 seconds and then drops the payload. Every attempt keeps the `eventId` and carries a
new `meta.deliveryId` and `meta.deliveredAt`. `time_scale` shrinks the retry schedule for tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self, TypeAlias

import httpx
import structlog

from smartcar_core._version import __version__
from smartcar_core.events import EnvelopeError, parse_envelope
from smartcar_core.webhooks import signature_of
from smartcar_simulator.payloads import new_id, now_ms

Event: TypeAlias = Mapping[str, Any] | bytes
"""A payload to deliver: a dict (serialised compactly, re-stamped per attempt) or exact bytes (sent as is)."""

USER_AGENT = f"smartcar-simulator/{__version__}"
SMARTCAR_TIMEOUT = 15.0
SMARTCAR_RETRY_DELAYS = (25.0, 50.0, 100.0)
MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of a receiver's answer
ERROR_EXCERPT_CHARS = 200
MAX_RECORDED_ATTEMPTS = 100_000

logger = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One POST of one event. `sent_at` is epoch seconds; `error` is None exactly when a 2xx came back."""

    event_id: str
    delivery_id: str | None
    attempt: int
    sent_at: float
    status_code: int | None
    latency_seconds: float
    error: str | None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def outcome(self) -> str:
        """The status code as text, or `timeout` / `error` when no answer came."""
        if self.status_code is not None:
            return str(self.status_code)
        return "timeout" if self.timed_out else "error"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class BurstReport:
    """What a burst did: attempts by outcome (`200`, `503`, `timeout`, `error`), latencies in seconds."""

    events: int
    attempts: int
    delivered: int
    by_status: dict[str, int]
    latency_p50: float
    latency_p90: float
    latency_p99: float
    latency_max: float
    duration_seconds: float

    @property
    def rate(self) -> float:
        """Events started per second, over the whole burst."""
        return self.events / self.duration_seconds if self.duration_seconds > 0 else 0.0

    @classmethod
    def of(cls, events: int, attempts: Sequence[DeliveryAttempt], duration_seconds: float) -> BurstReport:
        latencies = sorted(attempt.latency_seconds for attempt in attempts)
        return cls(
            events=events,
            attempts=len(attempts),
            delivered=len({attempt.event_id for attempt in attempts if attempt.ok}),
            by_status=dict(Counter(attempt.outcome for attempt in attempts)),
            latency_p50=percentile(latencies, 50),
            latency_p90=percentile(latencies, 90),
            latency_p99=percentile(latencies, 99),
            latency_max=latencies[-1] if latencies else 0.0,
            duration_seconds=duration_seconds,
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class WebhookEmitter:
    """Delivers events to one target URL with Smartcar's signature, timeout and retry schedule.

    Pass `http` to share a client (its redirects are still not followed); otherwise the emitter owns
    one with `max_connections` connections. `sign_verify` signs VERIFY events too (Smartcar does not
    document whether it does; by default they go unsigned). At most `max_recorded_attempts` attempts
    are kept in `attempts`, the oldest dropped first.
    """

    def __init__(
        self,
        *,
        target_url: str,
        amt: str,
        timeout: float = SMARTCAR_TIMEOUT,
        retry_delays: Sequence[float] = SMARTCAR_RETRY_DELAYS,
        time_scale: float = 1.0,
        http: httpx.AsyncClient | None = None,
        sign_verify: bool = False,
        user_agent: str = USER_AGENT,
        max_connections: int = 100,
        max_recorded_attempts: int = MAX_RECORDED_ATTEMPTS,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if time_scale < 0 or any(delay < 0 for delay in retry_delays):
            raise ValueError("retry delays and time_scale cannot be negative")
        self.target_url = target_url
        self.timeout = timeout
        self.retry_delays = tuple(retry_delays)
        self.time_scale = time_scale
        self.sign_verify = sign_verify
        self.user_agent = user_agent
        self._amt = amt
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            trust_env=False,
        )
        self._attempts: deque[DeliveryAttempt] = deque(maxlen=max_recorded_attempts)
        self._tasks: set[asyncio.Task[list[DeliveryAttempt]]] = set()

    def __repr__(self) -> str:
        return f"WebhookEmitter(target_url={self.target_url!r}, time_scale={self.time_scale!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @property
    def attempts(self) -> list[DeliveryAttempt]:
        """Every recorded attempt so far, oldest first."""
        return list(self._attempts)

    def attempts_for(self, event_id: str) -> list[DeliveryAttempt]:
        return [attempt for attempt in self._attempts if attempt.event_id == event_id]

    @property
    def pending(self) -> int:
        """Background deliveries (from `send`) not finished yet, retries included."""
        return len(self._tasks)

    async def deliver(self, event: Event) -> list[DeliveryAttempt]:
        """The whole schedule: a first attempt and up to len(retry_delays) retries until a 2xx."""
        event_id, signed = _identify(event, sign_verify=self.sign_verify)
        attempts: list[DeliveryAttempt] = []
        for number, delay in enumerate((0.0, *self.retry_delays), start=1):
            if delay:
                await asyncio.sleep(delay * self.time_scale)
            attempt = await self._attempt(event, event_id, number, signed=signed)
            attempts.append(attempt)
            if attempt.ok:
                return attempts
        logger.warning(
            "webhook_dropped", event_id=event_id, attempts=len(attempts), last_error=attempts[-1].error
        )
        return attempts

    def send(self, event: Event) -> asyncio.Task[list[DeliveryAttempt]]:
        """`deliver` in the background; the emitter keeps the task until it ends (or `aclose` cancels it)."""
        task = asyncio.get_running_loop().create_task(self.deliver(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def burst(
        self, events: Iterable[Event], rate: float = 500.0, concurrency: int = 64, *, retries: bool = False
    ) -> BurstReport:
        """Load generator: start events at `rate` per second, at most `concurrency` in flight.

        Starts follow a fixed timetable (event i at i / rate seconds), so a slow receiver makes the
        generator catch up rather than drift. Without `retries` each event gets one attempt.
        """
        if rate <= 0 or concurrency < 1:
            raise ValueError("rate must be positive and concurrency at least 1")
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(concurrency)
        results: list[DeliveryAttempt] = []
        running: set[asyncio.Task[None]] = set()

        async def one(event: Event) -> None:
            try:
                if retries:
                    results.extend(await self.deliver(event))
                else:
                    event_id, signed = _identify(event, sign_verify=self.sign_verify)
                    results.append(await self._attempt(event, event_id, 1, signed=signed))
            finally:
                slots.release()

        started = loop.time()
        count = 0
        try:
            for count, event in enumerate(events, start=1):
                wait = started + (count - 1) / rate - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await slots.acquire()
                task = loop.create_task(one(event))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.gather(*list(running))
        finally:
            for task in list(running):
                task.cancel()
        return BurstReport.of(count, results, loop.time() - started)

    async def aclose(self) -> None:
        """Cancel background deliveries and close the HTTP client if the emitter created it."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_http:
            await self._http.aclose()

    async def _attempt(self, event: Event, event_id: str, number: int, *, signed: bool) -> DeliveryAttempt:
        body, delivery_id = _serialise(event)
        headers = {"Content-Type": "application/json", "User-Agent": self.user_agent}
        if signed:
            headers["SC-Signature"] = signature_of(self._amt, body)
        status: int | None = None
        error: str | None = None
        timed_out = False
        sent_at = time.time()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                status, excerpt = await self._post(body, headers)
        except (TimeoutError, httpx.TimeoutException):
            timed_out = True
            error = f"timeout: no answer within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if not 200 <= status < 300:  # noqa: PLR2004 - the 2xx range is what Smartcar accepts
                error = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
        attempt = DeliveryAttempt(
            event_id=event_id,
            delivery_id=delivery_id,
            attempt=number,
            sent_at=sent_at,
            status_code=status,
            latency_seconds=time.perf_counter() - started,
            error=error,
            timed_out=timed_out,
        )
        self._attempts.append(attempt)
        if error is not None:
            logger.info(
                "webhook_attempt_failed",
                event_id=event_id,
                delivery_id=delivery_id,
                attempt=number,
                error=error,
            )
        return attempt

    async def _post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        """POST and read at most MAX_RESPONSE_BYTES of the answer; return its status and an excerpt."""
        request = self._http.build_request("POST", self.target_url, content=body, headers=headers)
        response = await self._http.send(request, stream=True, follow_redirects=False)
        try:
            received = bytearray()
            async for chunk in response.aiter_raw():
                received += chunk
                if len(received) >= MAX_RESPONSE_BYTES:
                    break
        finally:
            await response.aclose()
        excerpt = received[:ERROR_EXCERPT_CHARS].decode(errors="replace").strip()
        return response.status_code, excerpt


def event_id_of(event: Event) -> str:
    """The id a receiver derives for `event` (legacy envelopes have none of their own)."""
    return _identify(event, sign_verify=False)[0]


def _identify(event: Event, *, sign_verify: bool) -> tuple[str, bool]:
    """The event id a receiver will see (as `parse_envelope` derives it) and whether to sign the event."""
    if isinstance(event, Mapping) and isinstance(event.get("eventId"), str):
        is_verify = event.get("eventType") == "VERIFY"
        return event["eventId"], sign_verify or not is_verify
    raw = event if isinstance(event, bytes) else _dumps(event)
    try:
        envelope = parse_envelope(raw)
    except EnvelopeError:
        # Deliberately malformed payloads are sent too (to test a receiver's refusals): name them by content.
        return "unparsed-" + hashlib.sha256(raw).hexdigest()[:32], True
    return envelope.event_id, sign_verify or not envelope.is_verify


def _serialise(event: Event) -> tuple[bytes, str | None]:
    """One attempt's bytes and delivery id: a fresh meta.deliveryId and deliveredAt when there is a meta."""
    if isinstance(event, bytes):
        return event, None
    meta = event.get("meta")
    if not isinstance(meta, Mapping):
        return _dumps(event), None
    delivery_id = new_id()
    stamped = {**event, "meta": {**meta, "deliveryId": delivery_id, "deliveredAt": now_ms()}}
    return _dumps(stamped), delivery_id


def _dumps(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
