"""A stand-in for Smartcar's vehicle API that answers odometer reads, for the client benchmark.

It answers `GET /v2.0/vehicles/{id}/odometer` with `{"distance": 12345.6}` and the `sc-*` headers
Smartcar sends, after an optional delay (a car that takes its time). Anything else gets Smartcar's
404 body; a request without a bearer token gets the 401 one. Served by uvicorn (httptools, uvloop,
HTTP/1.1 keep-alive), plain or over TLS, on a listening socket the parent process inherits to it: the
parent knows the port before the server starts, and no port can be taken in between.

    python bench/odometer_server.py --fd 5 [--delay 0.1] [--certfile server.pem --keyfile server.key]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import socket
from collections.abc import Sequence
from datetime import UTC, datetime

import uvicorn
from starlette.types import Receive, Scope, Send

ODOMETER_PATH = re.compile(r"/v2\.0/vehicles/[^/]+/odometer")
DISTANCE = 12345.6
KEEP_ALIVE_SECONDS = 60

_NOT_FOUND = json.dumps(
    {
        "type": "RESOURCE_NOT_FOUND",
        "code": "PATH",
        "description": "The requested resource does not exist.",
        "docURL": "https://smartcar.com/docs/errors/api-errors/resource-not-found-errors#path",
        "statusCode": 404,
        "requestId": "benchmark",
        "resolution": {"type": None},
    }
).encode()
_UNAUTHORIZED = json.dumps(
    {
        "type": "AUTHENTICATION",
        "code": None,
        "description": "The request is missing a valid access token.",
        "docURL": "https://smartcar.com/docs/errors/api-errors/authentication-errors",
        "statusCode": 401,
        "requestId": "benchmark",
        "resolution": {"type": "REAUTHENTICATE"},
    }
).encode()


class OdometerApp:
    """A raw ASGI app: the benchmark measures clients, so the server should cost as little as it can."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self._request_ids = itertools.count(1)
        self._body = json.dumps({"distance": DISTANCE}).encode()

    async def __call__(self, scope: Scope, _receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: nothing to start or stop
            return
        headers = dict(scope["headers"])
        request_id = f"bench-{next(self._request_ids):08d}".encode()
        if scope["method"] != "GET" or not ODOMETER_PATH.fullmatch(scope["path"]):
            await _answer(send, 404, _NOT_FOUND, request_id)
            return
        if not headers.get(b"authorization", b"").startswith(b"Bearer "):
            await _answer(send, 401, _UNAUTHORIZED, request_id)
            return
        if self.delay:
            await asyncio.sleep(self.delay)
        fetched_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()
        await _answer(
            send,
            200,
            self._body,
            request_id,
            [
                (b"sc-unit-system", headers.get(b"sc-unit-system", b"metric")),
                (b"sc-data-age", fetched_at),
                (b"sc-fetched-at", fetched_at),
            ],
        )


async def _answer(
    send: Send, status: int, body: bytes, request_id: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"sc-request-id", request_id),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(
    sock: socket.socket, *, delay: float = 0.0, certfile: str | None = None, keyfile: str | None = None
) -> None:
    config = uvicorn.Config(
        OdometerApp(delay=delay),
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--fd", type=int, required=True, help="an inherited, listening TCP socket")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    serve(socket.socket(fileno=args.fd), delay=args.delay, certfile=args.certfile, keyfile=args.keyfile)


if __name__ == "__main__":
    main()
