"""The receiver's HTTP protocol for the public port: uvicorn's httptools protocol, with limits on what one
client may make the process hold. Selected with `uvicorn receiver.app:app --http
receiver.http:LimitedHttpToolsProtocol` (uvicorn imports a `module:attribute` given to `--http`).

uvicorn's own httptools protocol has none of these, and each was measured to matter:

- **head size and field count** (`RECEIVER_MAX_HEADER_BYTES`, `RECEIVER_MAX_HEADERS`): httptools keeps an
  unterminated header in memory however long it grows (16 MiB sent, 16 MiB grown). Past either limit: 431
  and the connection closed.
- **head timeout** (`RECEIVER_HEADER_TIMEOUT`): from a head's first byte until its end. `--timeout-keep-alive`
  covers only the gap between requests; a client dripping a header byte a second was never closed (a
  slowloris). Past it: 408 and closed.
- **body timeout** (`RECEIVER_BODY_TIMEOUT`): from the end of the head until the end of the body; past it the
  connection is closed (nothing was acknowledged: Smartcar retries).
- **a new connection that sends nothing** is closed after `--timeout-keep-alive`, like one idle between
  requests (uvicorn arms that timer only after a response).
- **`--limit-concurrency` counts requests in flight**, not open connections: with uvicorn's count a few idle
  sockets turned every request, `/healthz` included, into a 503.

The cost on the hot path is kept to a few operations per read: `len(data)` added up while a head is read, a
comparison at the end of the head, and a timer only for a head or a body that spans several reads (a delivery
that arrives in one read arms none). No byte is looked at in Python.

The limits are the receiver's settings, read once: `LimitedHttpToolsProtocol` is built on first access (at
uvicorn's start-up) from the environment, after `hook_problems()` has checked that uvicorn still has what is
overridden here; either failing stops the start with one line on stderr and exit status 3, as the app does.
Tests build their own class with `protocol_class(PortLimits(...))`; importing this module reads nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from http import HTTPStatus
from importlib.metadata import version
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from receiver.app import STARTUP_FAILURE
from receiver.settings import ReceiverSettings, SettingsError, load_settings
from service_base.logs import get_logger

# What this module overrides or reads, by the uvicorn function that must still do it (see hook_problems).
_RELIED_ON: dict[str, frozenset[str]] = {
    "__init__": frozenset(
        {"app", "limit_concurrency", "tasks", "loop", "cycle", "server_state", "transport"}
        | {"timeout_keep_alive", "timeout_keep_alive_task"}
    ),
    "on_message_begin": frozenset({"url", "headers"}),
    "on_headers_complete": frozenset({"app", "limit_concurrency"}),
    "data_received": frozenset({"feed_data", "send_400_response"}),
    "connection_made": frozenset({"transport"}),
    "connection_lost": frozenset(),
    "on_message_complete": frozenset(),
    "send_400_response": frozenset(),
    "timeout_keep_alive_handler": frozenset(),
}


@dataclass(frozen=True, slots=True)
class PortLimits:
    """What one client may make a receiver process hold (the RECEIVER_* settings of the same names)."""

    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float

    @classmethod
    def of(cls, settings: ReceiverSettings) -> PortLimits:
        return cls(
            settings.max_header_bytes, settings.max_headers, settings.header_timeout, settings.body_timeout
        )


class _Stop(Exception):  # noqa: N818 - not an error: stops the parser on a request already answered
    """Raised from a parser callback to stop httptools; uvicorn then calls `send_400_response`, which does
    nothing on a connection already answered and closing."""


log = get_logger("receiver.http")
_HEAD_TOO_LARGE = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
_HEAD_TOO_SLOW = HTTPStatus.REQUEST_TIMEOUT


async def _busy(_scope: Any, _receive: Any, send: Any) -> None:
    """The answer past `--limit-concurrency` (requests in flight): 503, which Smartcar retries."""
    body = b'{"error":"too many requests in flight, retry later"}'
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with `limits` (a subclass per set of limits: `protocol_class`)."""

    limits: ClassVar[PortLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._app = self.app
        # uvicorn's own check (connections or tasks) is switched off; ours counts requests in flight.
        self._max_in_flight, self.limit_concurrency = self.limit_concurrency, None
        # Bytes of the current head received so far; None while a body is read (the head is complete).
        self._head_received: int | None = 0
        # The head's or the body's deadline, while either is incomplete at the end of a read.
        self._deadline: asyncio.TimerHandle | None = None

    # --- the connection ---

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_received is not None:
            self._head_received += len(data)
        super().data_received(data)  # the parser's callbacks below run in here
        received = self._head_received
        if self.transport.is_closing():
            return
        if received is None:  # a body, incomplete after this read
            if self._deadline is None:
                self._deadline = self.loop.call_later(self.limits.body_timeout, self._body_too_slow)
        elif received:  # a head, incomplete after this read: everything received since it began is head
            if received > self.limits.max_header_bytes:
                self._refuse(_HEAD_TOO_LARGE, f"request head over {self.limits.max_header_bytes} bytes")
            elif self._deadline is None:
                self._deadline = self.loop.call_later(self.limits.header_timeout, self._head_too_slow)

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # not already refused by a limit (answered and closing)
            super().send_400_response(msg)

    # --- parser callbacks ---

    def on_headers_complete(self) -> None:
        received, self._head_received = self._head_received, None
        self._cancel_deadline()
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            self._refuse(_HEAD_TOO_LARGE, f"more than {limits.max_headers} header fields")
            raise _Stop
        # `received` is exact unless the head began inside a read (pipelined: 0), or the read that ended it
        # also held body bytes (past the limit): only then are the parsed bytes counted.
        if not received or received > limits.max_header_bytes:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > limits.max_header_bytes:
                self._refuse(_HEAD_TOO_LARGE, f"request head over {limits.max_header_bytes} bytes")
                raise _Stop
        busy = self._max_in_flight is not None and len(self.tasks) >= self._max_in_flight
        if busy:
            log.warning("concurrency_limit_exceeded", limit=self._max_in_flight)
        self.app = _busy if busy else self._app  # uvicorn's on_headers_complete runs self.app
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        self._head_received = 0  # whatever follows on this connection begins the next head
        super().on_message_complete()

    # --- deadlines and refusals ---

    def _head_too_slow(self) -> None:
        self._deadline = None
        self._refuse(_HEAD_TOO_SLOW, f"request head not complete within {self.limits.header_timeout:g} s")

    def _body_too_slow(self) -> None:
        self._deadline = None
        log.warning("request_body_too_slow", seconds=self.limits.body_timeout, outcome="connection closed")
        self.transport.close()  # the app reading the body sees a disconnect

    def _refuse(self, status: HTTPStatus, problem: str) -> None:
        """Answer `status` (a JSON body, as the app's refusals have) and close the connection; only close it
        while the response to an earlier (pipelined) request is pending: no answer can go before that one."""
        log.warning("request_refused", problem=problem, status=status.value, outcome="connection closed")
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        body = json.dumps({"error": problem}).encode()
        response = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
        response += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        response += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body)]
        response += [b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(response))
        self.transport.close()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def protocol_class(limits: PortLimits) -> type[LimitedProtocol]:
    """The protocol class with `limits`, for uvicorn's `http=` (tests, embedding)."""

    class LimitedHttpToolsProtocol(LimitedProtocol):
        pass

    LimitedHttpToolsProtocol.limits = limits
    return LimitedHttpToolsProtocol


def hook_problems(base: type = HttpToolsProtocol) -> list[str]:
    """What no longer matches the overrides above in uvicorn's httptools protocol (empty: nothing)."""
    found = []
    for name, names in _RELIED_ON.items():
        code = getattr(getattr(base, name, None), "__code__", None)
        if code is None:
            found.append(f"uvicorn's HttpToolsProtocol has no {name} any more")
        elif missing := sorted(names - set(code.co_names)):
            found.append(f"uvicorn's HttpToolsProtocol.{name} no longer uses {', '.join(missing)}")
    return [
        f"{problem} (uvicorn {version('uvicorn')}): receiver.http relies on it; update receiver.http, or run "
        "with --http httptools (without its limits)"
        for problem in found
    ]


def from_environment(base: type = HttpToolsProtocol) -> type[LimitedProtocol]:
    """`LimitedHttpToolsProtocol`: the limits of the environment's settings, once uvicorn is checked; one
    line on stderr and exit status 3 otherwise."""
    problems = hook_problems(base)
    if problems:
        sys.stderr.write(f"receiver: cannot serve: {'; '.join(problems)}\n")
        raise SystemExit(STARTUP_FAILURE)
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.stderr.write(f"receiver: configuration error: {error}\n")
        raise SystemExit(STARTUP_FAILURE) from None
    return protocol_class(PortLimits.of(settings))


def __getattr__(name: str) -> Any:
    if name == "LimitedHttpToolsProtocol":
        built = from_environment()
        globals()[name] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
