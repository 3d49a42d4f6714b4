"""Sending Calls: pooled httpx clients shared by every Vehicle, and the mapping of network failures.

One `httpx.Client` per process (thread-safe, kept-alive connections) and one `httpx.AsyncClient` per
event loop are created on first use. Pass your own client to any object to control TLS, proxies or
pool sizes; `make_client()` builds one with our defaults.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TypeVar

import httpx

from smartcar_core.config import DEFAULT_LIMITS, DEFAULT_TIMEOUT
from smartcar_core.errors import SmartcarConnectionError, SmartcarError, SmartcarTimeoutError
from smartcar_core.protocol import Call

R = TypeVar("R")

_shared_lock = threading.Lock()
_shared_client: httpx.Client | None = None
_shared_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def make_client(
    *, verify: bool | str = True, limits: httpx.Limits = DEFAULT_LIMITS, http2: bool = False
) -> httpx.Client:
    """A pooled sync client with our defaults. `verify` may name a CA bundle (a test certificate)."""
    return httpx.Client(verify=verify, limits=limits, timeout=DEFAULT_TIMEOUT, http2=http2)


def make_async_client(
    *, verify: bool | str = True, limits: httpx.Limits = DEFAULT_LIMITS
) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=verify, limits=limits, timeout=DEFAULT_TIMEOUT)


def shared_client() -> httpx.Client:
    """The process-wide pooled client (created on first use; honours SSL_CERT_FILE and proxies)."""
    global _shared_client  # noqa: PLW0603 - one pool per process is the point
    if _shared_client is None:
        with _shared_lock:
            if _shared_client is None:
                _shared_client = make_client()
    return _shared_client


def shared_async_client() -> httpx.AsyncClient:
    """The pooled async client of the running event loop (an AsyncClient cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _shared_async.get(loop)
    if client is None or client.is_closed:
        client = make_async_client()
        _shared_async[loop] = client
    return client


def network_error(error: httpx.TransportError) -> SmartcarError:
    """A typed error for a failure below HTTP.

    `request_sent` is False only when the failure happened before any byte could reach Smartcar
    (connect errors, a full pool); then even a command is safe to send again.
    """
    not_sent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    description = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        return SmartcarTimeoutError(f"Request timed out ({description})", request_sent=not not_sent)
    return SmartcarConnectionError(description, request_sent=not not_sent)


def send(client: httpx.Client, call: Call[R], timeout: httpx.Timeout) -> R:
    try:
        response = client.send(call.to_request(timeout))
    except httpx.TransportError as error:
        raise network_error(error) from error
    return call.handle(response)


async def send_async(client: httpx.AsyncClient, call: Call[R], time_limits: httpx.Timeout) -> R:
    try:
        response = await client.send(call.to_request(time_limits))
    except httpx.TransportError as error:
        raise network_error(error) from error
    return call.handle(response)
