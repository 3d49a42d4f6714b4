"""Test support shared by tests/, bench/ and scripts/: never imported by a production package.

`testsupport.receiver` drives the receiver (signed deliveries, an in-process or live app, a Redis proxy
that can be cut); `testsupport.workers` drives the workers (events stored as the receiver stores them,
worker subprocesses). The simulator's own `smartcar_simulator.testing` runs a local Smartcar.

This module holds what all of them use, once:

- `serve_asgi(app)`: an ASGI app under a real uvicorn (httptools, lifespan on, no access log) in a thread,
  on a socket bound before the server starts (no free-then-rebind race); yields its URL once started.
  It is the simulator's (`smartcar_simulator.serving`), which `run_simulator` serves on too.
- `bound_socket()`: a listening socket on 127.0.0.1, port chosen by the OS, for uvicorn's
  `Server.run(sockets=[sock])` or a child process that inherits it.
- `free_port()`: a port nothing listens on, for a child process told `--port N`, or as a closed port
  (another process may take it before the child binds: in-process, serve with `serve_asgi`).
- `wait_until(predicate, timeout=, interval=, what=)`, and `wait_until_async` for async tests: poll until
  the predicate returns something truthy (returned); AssertionError naming `what` after the deadline.
- `delete_keys(client, pattern, ...)`: delete a test's or a run's Redis keys afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import redis

from smartcar_simulator.serving import bound_socket, serve_asgi

__all__ = ["bound_socket", "delete_keys", "free_port", "serve_asgi", "wait_until", "wait_until_async"]

T = TypeVar("T")


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (the OS's pick, given back)."""
    with bound_socket() as sock:
        port: int = sock.getsockname()[1]
        return port


class _Poll(Generic[T]):
    """One wait: each call returns the predicate's truthy value, or None (not yet: sleep and call again);
    AssertionError once the deadline has passed, from the last exception `ignoring` let through."""

    def __init__(
        self,
        predicate: Callable[[], T],
        *,
        timeout: float,
        what: str,
        ignoring: tuple[type[Exception], ...],
    ) -> None:
        self.predicate = predicate
        self.timeout = timeout
        self.what = what
        self.ignoring = ignoring
        self.deadline = time.monotonic() + timeout
        self.error: Exception | None = None

    def __call__(self) -> T | None:
        try:
            value = self.predicate()
        except self.ignoring as error:
            self.error = error
        else:
            if value:
                return value
        if time.monotonic() > self.deadline:
            raise AssertionError(
                f"timed out after {self.timeout:g} s waiting for {self.what}"
            ) from self.error
        return None


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "the condition",
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Poll `predicate` every `interval` s until it returns something truthy, and return that; AssertionError
    naming `what` after `timeout` s. Exceptions of the `ignoring` types count as "not yet"."""
    poll = _Poll(predicate, timeout=timeout, what=what, ignoring=ignoring)
    while (value := poll()) is None:
        time.sleep(interval)
    return value


async def wait_until_async(
    predicate: Callable[[], T],
    *,
    timeout: float = 20.0,  # noqa: ASYNC109 - wait_until's signature: the deadline is the point
    interval: float = 0.05,
    what: str = "the condition",
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """`wait_until` in a running event loop: the loop runs between polls (the predicate is a plain call)."""
    poll = _Poll(predicate, timeout=timeout, what=what, ignoring=ignoring)
    while (value := poll()) is None:  # noqa: ASYNC110 - a plain predicate, no event to wait on
        await asyncio.sleep(interval)
    return value


def delete_keys(client: redis.Redis, *patterns: str) -> None:
    """Delete every key matching one of `patterns` (SCAN, then UNLINK a thousand at a time)."""
    for pattern in patterns:
        batch = list(client.scan_iter(match=pattern, count=1000))
        while batch:
            client.unlink(*batch[:1000])
            batch = batch[1000:]
