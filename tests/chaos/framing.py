"""HTTP framing no client library will send, written on raw sockets: truncated and lying Content-Length,
chunked bodies past the cap and broken, huge and many headers, bytes no header may hold, request lines
that are not HTTP/1.1, every method on every path, content types, pipelining, Expect: 100-continue.

`frames(round, sign, fresh_body)` builds one round (sizes vary with the round); `send(host, port,
frame)` writes it, half-closes, and reads back every status line until the server closes. A frame that
carries a signed body of its own (`event_id`) lets the scenario check that a refusal stored nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from receiver.app import WEBHOOK_PATH

STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")  # a pipelined answer starts right after the last body
READ_SECONDS = 10.0
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # the start of a TLS ClientHello
CAP = 256 * 1024  # the receiver's default RECEIVER_MAX_BODY_BYTES
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "FOO")
PATHS = (
    "/", WEBHOOK_PATH, WEBHOOK_PATH + "/", WEBHOOK_PATH.upper(), WEBHOOK_PATH + "?x=1&x=2",
    WEBHOOK_PATH + "%00", "/healthz", "/readyz", "/metrics", "/nope", "/%ff", "/%2e%2e/%2e%2e/etc/passwd",
    "//webhooks/smartcar", "*", "/" + "a" * 8000,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Frame:
    label: str
    data: bytes
    event_id: str | None = None
    """The fresh event whose signed body the frame carries (None: none, or several)."""
    incomplete: bool = False
    """The request never ends: the client half-closes its side (the server sees it go) instead of
    waiting for an answer."""


@dataclass(frozen=True, slots=True)
class Framed:
    frame: Frame
    statuses: list[int]
    """Every status line read back, in order; empty when the server closed without answering."""


Sign = Callable[[bytes], str]
Fresh = Callable[[], tuple[str, bytes]]


def request(
    body: bytes,
    *,
    method: str = "POST",
    path: str = WEBHOOK_PATH,
    version: str = "HTTP/1.1",
    headers: list[bytes] | None = None,
    signature: str | None = None,
    length: bytes | None = None,
    close: bool = True,
    host: bool = True,
) -> bytes:
    """A request's bytes: `headers` are raw lines; `length` the Content-Length as written (None: the true
    one, b"": none). `close`: ask the server to close once it has answered (so that every answer is read
    by reading to the end)."""
    lines = [f"{method} {path} {version}".encode(), *([b"Host: receiver"] if host else [])]
    if close:
        lines.append(b"Connection: close")
    lines += headers if headers is not None else [b"Content-Type: application/json"]
    if signature is not None:
        lines.append(b"SC-Signature: " + signature.encode())
    written = str(len(body)).encode() if length is None else length
    if written:
        lines.append(b"Content-Length: " + written)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(body: bytes, size: int, *, last: bytes = b"0\r\n\r\n") -> bytes:
    parts = [
        b"%x\r\n%b\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]
    return b"".join(parts) + last


def _same(body: bytes) -> bytes:
    return body


def frames(number: int, sign: Sign, fresh: Fresh) -> list[Frame]:
    """One round of framing cases; each that carries a body carries a fresh signed event."""
    made: list[Frame] = []

    def add(
        label: str,
        *,
        shape: Callable[[bytes], bytes] = _same,
        lie: Callable[[int], int] | None = None,
        incomplete: bool = False,
        **options: Any,
    ) -> None:
        """A request for a fresh event's body, signed (`options` go to `request`; `shape` bends the body
        after it is signed; `lie` gives the Content-Length to claim for the body's true length)."""
        event_id, body = fresh()
        if lie is not None:
            options["length"] = b"%d" % lie(len(body))
        data = request(shape(body), signature=sign(body), **options)
        made.append(Frame(f"{label} (round {number})", data, event_id, incomplete))

    grow = number + 1
    json_type = b"Content-Type: application/json"
    chunked_type = [json_type, b"Transfer-Encoding: chunked"]
    event_id, body = fresh()
    add("truncated body", lie=lambda true: true + 10 * grow, incomplete=True)
    add("body longer than said", lie=lambda true: true // 2)
    add("length past the cap", length=b"%d" % (CAP * grow + 1))
    for lie in (b"abc", b"-1", b"+5", b" 5 ", b"5 5", b"0x10", b"1e3", b"9" * 30, b"\xff"):
        add(f"Content-Length {lie!r}", length=lie)
    add("two lengths", headers=[json_type, b"Content-Length: 3"])
    add("chunked", shape=lambda b: chunked(b, 7 * grow), headers=chunked_type, length=b"")
    add("chunked and a length", shape=lambda b: chunked(b, 9), headers=chunked_type, length=b"5")
    past_cap = b" " * (CAP + grow)
    add(
        "chunked past the cap",
        shape=lambda b: chunked(b + past_cap, 65_536),
        headers=chunked_type,
        length=b"",
    )
    add(
        "chunked, bad size",
        shape=lambda b: b"zz\r\n" + b + b"\r\n0\r\n\r\n",
        headers=chunked_type,
        length=b"",
    )
    add(
        "chunked, huge size",
        shape=lambda b: b"FFFFFFFFFFFF\r\n" + b,
        headers=chunked_type,
        length=b"",
        incomplete=True,
    )
    add(
        "chunked, no end",
        shape=lambda b: chunked(b, 5, last=b""),
        headers=chunked_type,
        length=b"",
        incomplete=True,
    )
    trailer = b"0;x=y\r\nX-T: 1\r\n\r\n"
    add("chunked, extensions", shape=lambda b: chunked(b, 11, last=trailer), headers=chunked_type, length=b"")
    add("a huge header", headers=[json_type, b"X-Big: " + b"a" * (16_384 * grow)])
    add("many headers", headers=[json_type, *(b"X-H%d: v" % i for i in range(400 * grow))])
    for raw in (
        b"X-Nul: a\x00b",
        b"X-Cr: a\rb",
        b"X-Utf: \xc3\xa9\xff",
        b"Bad Name: x",
        b": empty",
        b" folded: x",
    ):
        add(f"header {raw[:12]!r}", headers=[json_type, raw])
    add("a folded header", headers=[json_type, b"X-Fold: a\r\n  b"])
    for kind in (
        b"text/plain",
        b"application/json; charset=latin-1",
        b"APPLICATION/JSON",
        b"application/jsonx",
    ):
        add(f"Content-Type {kind!r}", headers=[b"Content-Type: " + kind])
    for kind in (b"application/json, text/html", b"multipart/form-data; boundary=x"):
        add(f"Content-Type {kind!r}", headers=[b"Content-Type: " + kind])
    add("no Content-Type", headers=[])
    add("Expect: 100-continue", headers=[json_type, b"Expect: 100-continue"])
    add("HTTP/1.0 without Host", version="HTTP/1.0", host=False)
    signature = b"SC-Signature: \xe9" + sign(body).encode()[1:]
    made.append(
        Frame(
            f"signature with non-ASCII (round {number})",
            request(body, headers=[json_type, signature]),
            event_id,
        )
    )
    lines = (b"GARBAGE", b"GET", b"GET / HTTP/9.9", b"get / HTTP/1.1", b"PRI * HTTP/2.0\r\n\r\nSM", TLS_HELLO)
    made += [Frame(f"request line {line[:16]!r} (round {number})", line + b"\r\n\r\n") for line in lines]
    _, first = fresh()
    _, second = fresh()
    pipelined = (
        request(first, signature=sign(first), close=False)
        + request(b"{", signature=sign(b"{"), close=False)
        + request(second, signature=sign(second))
    )
    made.append(Frame(f"pipelined (round {number})", pipelined))
    for method in METHODS:
        for path in PATHS:
            add(f"{method} {path[:24]}", method=method, path=path)
    return made


async def send(host: str, port: int, frame: Frame) -> Framed:
    """Write the frame (half-close after it if it is incomplete), and read every answer until the server
    closes (or READ_SECONDS pass)."""
    reader, writer = await asyncio.open_connection(host, port)
    received = b""
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(frame.data)
            await writer.drain()
            if frame.incomplete:
                writer.write_eof()
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(READ_SECONDS):
                while chunk := await reader.read(65_536):
                    received += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return Framed(frame, [int(status) for status in STATUS.findall(received)])
