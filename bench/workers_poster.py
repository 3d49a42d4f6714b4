"""A light HTTP/1.1 poster for the workers' benchmark: pre-built requests on kept-alive connections.

An httpx client spends about a millisecond of CPU per request, as much as the receiver it loads; on a
2-core machine that would measure the poster. This one writes pre-built request bytes on asyncio
streams and reads just the status line and Content-Length, optionally paced at a fixed rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

WEBHOOK_PATH = "/webhooks/smartcar"
OK = 200


def request_bytes(host: str, port: int, body: bytes, signature: str) -> bytes:
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"SC-Signature: {signature}\r\nUser-Agent: Smartcar/bench\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    host: str, port: int, requests: Sequence[bytes], indexes: range, *, start: float, rate: float | None
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for index in indexes:
            if rate is not None:
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            writer.write(requests[index])
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            if status != OK:
                raise RuntimeError(f"the receiver answered {status} to request {index}")
    finally:
        writer.close()
        await writer.wait_closed()


async def post_all(
    host: str, port: int, requests: Sequence[bytes], *, connections: int = 16, rate: float | None = None
) -> float:
    """Post every request (request i on connection i % connections); returns the seconds it took."""
    start = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(
                host, port, requests, range(first, len(requests), connections), start=start, rate=rate
            )
            for first in range(min(connections, len(requests)))
        )
    )
    return time.perf_counter() - start
