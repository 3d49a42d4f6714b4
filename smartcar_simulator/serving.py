"""An ASGI app under a real uvicorn in a thread, on a socket bound before the server starts.

The port is known as soon as the socket is bound and nothing else can take it before uvicorn listens
(picking a free port, closing it and letting uvicorn bind it again is a race). `run_simulator` serves the
simulator this way; `serve_asgi` serves any small app (a test's webhook receiver) the same way.

    with serve_asgi(app) as url:     # http://127.0.0.1:<port>, answering at once
        httpx.get(url + "/hook")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT = 15.0
# httptools (uvicorn[standard] installs it), the app's lifespan run, no access line per request.
SERVE_DEFAULTS: dict[str, Any] = {
    "http": "httptools",
    "lifespan": "on",
    "access_log": False,
    "log_level": "warning",
    "ws": "none",
}


def bound_socket(host: str = "127.0.0.1", port: int = 0, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to `host:port` (0: a port the OS picks) and listening, ready for uvicorn's
    `Server.run(sockets=[sock])`; connections made before the server runs wait in its backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)  # noqa: FBT003 - the socket API
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


@contextlib.contextmanager
def serve_in_thread(
    server: uvicorn.Server,
    sock: socket.socket,
    *,
    start_timeout: float = START_TIMEOUT,
    what: str = "the server",
) -> Iterator[None]:
    """`server` running in a thread on `sock` until the block ends (RuntimeError if it has not started
    within `start_timeout` s, or its app's startup failed); then stopped, joined, and `sock` closed."""

    def run() -> None:
        # uvicorn calls sys.exit when the app's startup fails: in this thread that ends the thread, as
        # Python's own thread hook would, and the wait below reports it.
        with contextlib.suppress(SystemExit):
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, name=f"uvicorn-{sock.getsockname()[1]}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"{what} did not start (see its log)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start within {start_timeout:g} s (see its log)")
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=start_timeout)
        sock.close()


@contextlib.contextmanager
def serve_asgi(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    start_timeout: float = START_TIMEOUT,
    what: str = "the app",
    **config: Any,
) -> Iterator[str]:
    """`app` under uvicorn in a thread on a free port of `host`, bound first; yields its URL once the server
    has started (its lifespan included), and stops it when the block ends.

    `config` overrides uvicorn's options (`SERVE_DEFAULTS`: httptools, lifespan on, no access log).
    """
    server = uvicorn.Server(uvicorn.Config(app, **{**SERVE_DEFAULTS, **config}))
    sock = bound_socket(host)
    with serve_in_thread(server, sock, start_timeout=start_timeout, what=what):
        yield url_of(sock)
