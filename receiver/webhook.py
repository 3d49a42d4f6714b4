"""POST /webhooks/smartcar: verify, validate, store, then acknowledge. No 2xx before Redis has the event.

A plain ASGI app (mounted by the Starlette router, which answers 405 for other methods) because this is the
hot path: it reads the headers it needs once, caps the body while it streams, and writes its small JSON
replies itself. Order of checks, each one cheaper than the next:

1. content type (415) and declared length (413), before a byte of the body is read;
2. the body, cut off past the cap (413);
3. `SC-Signature` over the raw bytes (401). An unsigned body is only parsed when it may be a VERIFY, and
   only so many a minute (429 beyond: `TokenBucket`);
4. the envelope (400 with what is wrong), and a replay of an old signed body (400);
5. VERIFY: answered when `VerifyGate` allows (else 403); everything else: one Redis round trip (503 when Redis
   fails, so that Smartcar retries), then 200 accepted / duplicate.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from eventstore.signatures import AsyncSignatureTally
from receiver.metrics import Outcome, ReceiverMetrics, VerifyRefusal
from receiver.signatures import SignatureChecker, SignatureFailure
from receiver.verify import TokenBucket, VerifyGate
from receiver.writer import EventWriter
from smartcar_core.events import Envelope, EnvelopeError, parse_envelope

_JSON = b"application/json"
# Only a body naming VERIFY can be a challenge; any other unsigned body is refused unread.
_VERIFY_MARKERS = (b"VERIFY", b"verify")
_LENGTH_DIGITS = 18  # a Content-Length with more significant digits is past any body cap


class _ClientGoneError(Exception):
    """The client disconnected before its body was read; there is nobody to answer."""


class _BodyTooLargeError(Exception):
    pass


class _Refusal(NamedTuple):
    status: int
    outcome: Outcome
    problem: str


async def _reply(
    send: Send, status: int, payload: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", _JSON), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] != "http.request":
        raise _ClientGoneError
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise _BodyTooLargeError
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGoneError
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class WebhookEndpoint:
    """The ASGI app behind POST /webhooks/smartcar."""

    def __init__(
        self,
        *,
        checker: SignatureChecker,
        writer: EventWriter,
        gate: VerifyGate,
        unsigned_verify: TokenBucket,
        metrics: ReceiverMetrics,
        log: Any,
        max_body_bytes: int,
        max_delivery_age: float,
        signature_tally: AsyncSignatureTally | None = None,
    ) -> None:
        self._checker = checker
        self._tally = signature_tally
        self._writer = writer
        self._gate = gate
        self._unsigned_verify = unsigned_verify
        self._metrics = metrics
        self._outcomes = metrics.outcomes
        self._log = log
        self._limit = max_body_bytes
        self._max_age = max_delivery_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        signature, refusal = self._check_head(scope["headers"])
        if refusal is not None:
            await self._refuse(send, scope, *refusal)
            return
        try:
            raw = await _read_body(receive, self._limit)
        except _BodyTooLargeError:
            await self._refuse(send, scope, 413, Outcome.TOO_LARGE, f"body over {self._limit} bytes")
            return
        except _ClientGoneError:
            return
        received_at = time.time()
        self._metrics.body_bytes.observe(len(raw))

        failure = self._checker.check(raw, signature) if signature is not None else SignatureFailure.MISSING
        if failure is not None and await self._refused_unread(send, scope, failure, raw):
            return
        try:
            envelope = parse_envelope(raw)
        except EnvelopeError as error:
            if failure is not None:  # unsigned and not a VERIFY after all: say nothing about its content
                await self._unauthorized(send, scope, failure, raw)
            else:
                await self._refuse(send, scope, 400, Outcome.INVALID, error.problem, field=error.field)
            return
        if envelope.is_verify:
            await self._verify(send, scope, envelope)
        elif failure is not None:
            await self._unauthorized(send, scope, failure, raw)
        else:
            await self._store(send, scope, envelope, raw, received_at)

    async def _refused_unread(self, send: Send, scope: Scope, failure: SignatureFailure, raw: bytes) -> bool:
        """Answer a request whose signature failed without parsing it, unless it is an unsigned one that may
        be a VERIFY, within the rate (False: parse it). An unsigned VERIFY past the rate gets 429."""
        if failure is not SignatureFailure.MISSING or not _may_be_verify(raw):
            await self._unauthorized(send, scope, failure, raw)
            return True
        if not self._unsigned_verify.take():  # before parsing: a flood costs no parse past the rate
            await self._rate_limited(send, scope)
            return True
        return False

    def _check_head(self, headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, _Refusal | None]:
        """The `SC-Signature` value, or why the request is refused before its body is read."""
        content_type = length = signature = None
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == b"sc-signature":
                signature = value
        if content_type is None or content_type.partition(b";")[0].strip().lower() != _JSON:
            return None, _Refusal(415, Outcome.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        if length is not None:
            return signature, self._length_refusal(length)
        return signature, None

    def _length_refusal(self, length: bytes) -> _Refusal | None:
        """Why a declared `Content-Length` is refused: not a number (400), or past the cap (413)."""
        if not length.isdigit():  # ASCII digits only; then the optional whitespace HTTP allows (OWS)
            length = length.strip(b" \t")
            if not length.isdigit():
                return _Refusal(400, Outcome.INVALID, "invalid Content-Length")
        if len(length) > _LENGTH_DIGITS:  # past any cap, unless zeros lead (int() takes 4,300 digits)
            length = length.lstrip(b"0") or b"0"
        if len(length) > _LENGTH_DIGITS or int(length) > self._limit:
            return _Refusal(413, Outcome.TOO_LARGE, f"body over {self._limit} bytes")
        return None

    async def _store(
        self, send: Send, scope: Scope, envelope: Envelope, raw: bytes, received_at: float
    ) -> None:
        # `meta.deliveredAt` read by the parser, one rule with the workers' (ms, s, or ISO-8601 with a zone).
        delivered_at = envelope.delivered_at
        if delivered_at is not None and received_at - delivered_at > self._max_age:
            await self._refuse(
                send,
                scope,
                400,
                Outcome.STALE,
                "delivery older than the dedupe window (a replayed body?)",
                event_id=envelope.event_id,
            )
            return
        started = time.perf_counter()
        try:
            new = await self._writer.accept(envelope, raw, received_at)
        except (RedisError, OSError) as error:
            self._outcomes[Outcome.UNAVAILABLE].inc()
            self._log.error(
                "webhook_store_failed",
                outcome=Outcome.UNAVAILABLE.value,
                event_id=envelope.event_id,
                delivery_id=envelope.delivery_id,
                vehicle_id=envelope.vehicle_id,
                error=type(error).__name__,
                detail=str(error),  # Redis's words (MISCONF, OOM, READONLY, refused at host:port): no secret
            )
            await _reply(
                send, 503, {"error": "event store unavailable, retry later"}, [(b"retry-after", b"5")]
            )
            return
        self._metrics.store_seconds.observe(time.perf_counter() - started)
        outcome = Outcome.ACCEPTED if new else Outcome.DUPLICATE
        self._outcomes[outcome].inc()
        if not new:
            self._metrics.duplicates.inc()
        self._log.info(
            "webhook",
            outcome=outcome.value,
            event_id=envelope.event_id,
            event_type=envelope.event_type,
            delivery_id=envelope.delivery_id,
            vehicle_id=envelope.vehicle_id,
            test=envelope.is_test,
        )
        await _reply(send, 200, {"status": outcome.value, "eventId": envelope.event_id})

    async def _verify(self, send: Send, scope: Scope, envelope: Envelope) -> None:
        challenge = envelope.challenge or ""
        refusal = await self._gate.refusal(challenge)
        if refusal is not None:
            self._metrics.verify_refusals[refusal].inc()
            status, outcome = (
                (503, Outcome.UNAVAILABLE)
                if refusal is VerifyRefusal.UNAVAILABLE
                else (403, Outcome.VERIFY_REFUSED)
            )
            await self._refuse(
                send,
                scope,
                status,
                outcome,
                f"VERIFY refused: {refusal.value}",
                webhook_id=envelope.webhook_id,
            )
            return
        self._outcomes[Outcome.VERIFY_ANSWERED].inc()
        self._log.info(
            "webhook_verify",
            outcome=Outcome.VERIFY_ANSWERED.value,
            event_id=envelope.event_id,
            webhook_id=envelope.webhook_id,
            version=envelope.version,
        )
        await _reply(send, 200, {"challenge": self._checker.answer(challenge)})

    async def _rate_limited(self, send: Send, scope: Scope) -> None:
        self._metrics.verify_refusals[VerifyRefusal.RATE_LIMITED].inc()
        retry_after = self._unsigned_verify.retry_after()
        await self._refuse(
            send,
            scope,
            429,
            Outcome.RATE_LIMITED,
            "too many unsigned VERIFY requests: retry later",
            headers=[(b"retry-after", b"%d" % retry_after)],
            retry_after=retry_after,
        )

    async def _unauthorized(self, send: Send, scope: Scope, failure: SignatureFailure, raw: bytes) -> None:
        self._metrics.signature_failures[failure].inc()
        if self._tally is not None:  # for `smartcar-events doctor`: counted in the background, never awaited
            self._tally.record(failure.value)
        if _may_be_verify(raw):
            self._metrics.verify_refusals[VerifyRefusal.SIGNATURE].inc()
        await self._refuse(
            send, scope, 401, Outcome.UNAUTHORIZED, f"SC-Signature {failure.value}", reason=failure.value
        )

    async def _refuse(
        self,
        send: Send,
        scope: Scope,
        status: int,
        outcome: Outcome,
        problem: str,
        *,
        headers: Iterable[tuple[bytes, bytes]] = (),
        **context: Any,
    ) -> None:
        self._outcomes[outcome].inc()
        client = scope.get("client")
        self._log.warning(
            "webhook_refused",
            outcome=outcome.value,
            status=status,
            problem=problem,
            client=client[0] if client else None,
            **context,
        )
        payload: dict[str, Any] = {"error": problem}
        if "field" in context:
            payload["field"] = context["field"]
        await _reply(send, status, payload, headers)


def _may_be_verify(raw: bytes) -> bool:
    return any(marker in raw for marker in _VERIFY_MARKERS)
