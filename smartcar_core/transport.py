"""Sending Calls: pooled httpx clients shared by every Vehicle, and the mapping of network failures.

One `httpx.Client` per process (thread-safe, kept-alive connections) and one `httpx.AsyncClient` per
event loop are created on first use. Pass your own client to any object to control TLS, proxies or
pool sizes; `make_client()` builds one with our defaults.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import ssl
import threading
import weakref
from collections.abc import Callable
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


Verify = bool | str | os.PathLike[str] | ssl.SSLContext


# What one thread's pool of a `per_thread` client holds: a thread sends one request at a time, to one of
# a few origins (the API, the token endpoint).
PER_THREAD_LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=4, keepalive_expiry=5.0)


_CLOSED = "Cannot send a request, as the transport has been closed."


class PerThreadTransport(httpx.BaseTransport):
    """A transport of its own for each thread that sends, made by `factory` on the thread's first request.

    Why: httpcore's sync pool walks every connection it holds, under one lock, on each request and each
    response's close. A worker sending from a hundred threads through one pool spent about a third of its
    CPU there (a py-spy profile of bench/workers_bench.py); a thread's own pool holds one or two
    connections and no other thread waits on its lock. The cost: connections are not shared between
    threads, so a pool of threads keeps about one kept-alive connection per thread and origin. The
    transports of every thread are closed by `close()`.
    """

    def __init__(self, factory: Callable[[], httpx.BaseTransport]) -> None:
        self._factory = factory
        self._local = threading.local()
        self._lock = threading.Lock()
        self._made: list[httpx.BaseTransport] = []
        self._closed = False

    def _own(self) -> httpx.BaseTransport:
        transport: httpx.BaseTransport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._factory()
            with self._lock:
                if self._closed:
                    transport.close()
                    raise RuntimeError(_CLOSED)
                self._made.append(transport)
            self._local.transport = transport
        return transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:  # a thread's own transport would otherwise outlive close()
            raise RuntimeError(_CLOSED)
        return self._own().handle_request(request)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            made, self._made = self._made, []
        for transport in made:
            transport.close()


def make_client(
    *,
    verify: Verify = True,
    limits: httpx.Limits = DEFAULT_LIMITS,
    http2: bool = False,
    wrap: Callable[[httpx.BaseTransport], httpx.BaseTransport] | None = None,
    per_thread: bool = False,
) -> httpx.Client:
    """A pooled sync client with our defaults.

    `verify` may name a CA bundle file or directory (a private or test CA) or be an `ssl.SSLContext`.
    `wrap` gets the client's transport and returns the one to use (to measure every request, say): a
    wrapped transport keeps the direct path below, which event hooks would turn off. `per_thread` gives
    each sending thread a pool of its own (`PerThreadTransport`, `PER_THREAD_LIMITS`), for a client many
    threads send on at once; `limits` then applies to each thread's pool only if given explicitly.
    A client given a transport (`wrap` or `per_thread`) does not read proxies from the environment.
    """
    ssl_verify = _ssl_verify(verify)
    transport: httpx.BaseTransport | None = None
    if per_thread:
        own = PER_THREAD_LIMITS if limits is DEFAULT_LIMITS else limits
        # One SSL context for every thread's transport: each new one loads the CA bundle again, 20 ms of
        # CPU (measured), which a worker's event threads spent at start-up, on both cores for seconds.
        shared = httpx.create_ssl_context(ssl_verify) if isinstance(ssl_verify, bool) else ssl_verify
        transport = PerThreadTransport(lambda: httpx.HTTPTransport(verify=shared, limits=own, http2=http2))
    if wrap is not None:
        transport = wrap(transport or httpx.HTTPTransport(verify=ssl_verify, limits=limits, http2=http2))
    return httpx.Client(
        verify=ssl_verify, limits=limits, timeout=DEFAULT_TIMEOUT, http2=http2, transport=transport
    )


def make_async_client(*, verify: Verify = True, limits: httpx.Limits = DEFAULT_LIMITS) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=_ssl_verify(verify), limits=limits, timeout=DEFAULT_TIMEOUT)


def _ssl_verify(verify: Verify) -> bool | ssl.SSLContext:
    """httpx deprecates `verify=<path>`: a CA path becomes the SSL context httpx asks for."""
    if isinstance(verify, bool | ssl.SSLContext):
        return verify
    if os.path.isdir(verify):  # noqa: PTH112 - accepts str and PathLike alike, as ssl does
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


def shared_client() -> httpx.Client:
    """The process-wide pooled client (created on first use; honours SSL_CERT_FILE and proxies)."""
    global _shared_client  # noqa: PLW0603 - one pool per process is the point
    if _shared_client is None:
        with _shared_lock:
            if _shared_client is None:
                _shared_client = make_client()
                # Kept-alive sockets are closed at exit rather than left to the garbage collector.
                atexit.register(_shared_client.close)
    return _shared_client


def shared_async_client() -> httpx.AsyncClient:
    """The pooled async client of the running event loop (an AsyncClient cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _shared_async.get(loop)
    if client is None or client.is_closed:
        client = make_async_client()
        _shared_async[loop] = client
    return client


def network_error(error: httpx.RequestError) -> SmartcarError:
    """A typed error for a failure below HTTP, or an answer that could not be read (bad gzip).

    `request_sent` is False only when the failure happened before any byte could reach Smartcar
    (connect errors, a full pool); then even a command is safe to send again.
    """
    not_sent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    description = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        return SmartcarTimeoutError(f"Request timed out ({description})", request_sent=not not_sent)
    return SmartcarConnectionError(description, request_sent=not not_sent)


# `Client.send` runs an auth flow, a redirect loop and the event hooks, and stores each response's
# cookies in the client's jar through urllib shims: a quarter of the time of a kept-alive GET (measured
# by bench/client_bench.py). A Call carries its own Authorization, and we neither follow redirects
# nor send cookies, so a plain client sends a Call straight through its transport (the proxy mounted
# for the URL included). Plain means: an httpx.Client or AsyncClient itself, whose `send` is still
# httpx's own (a subclass, or a tracing library that wraps `send`, must see every request), without
# auth, event hooks or redirect following. Any other client gets `send()`, and so does every client
# if httpx stops offering `_transport_for_url`. Skipped on the direct path: httpx's INFO log line
# per request and `response.elapsed`.
_DIRECT = hasattr(httpx.Client, "_transport_for_url") and hasattr(httpx.AsyncClient, "_transport_for_url")
_HTTPX_SEND: dict[type[object], object] = {
    cls: inspect.unwrap(cls.send) for cls in (httpx.Client, httpx.AsyncClient)
}


def _is_plain(client: httpx.Client | httpx.AsyncClient) -> bool:
    hooks = client.event_hooks
    return (
        _DIRECT
        and type(client).send is _HTTPX_SEND.get(type(client))
        and client.auth is None
        and not client.follow_redirects
        and not hooks["request"]
        and not hooks["response"]
    )


def _check_open(client: httpx.Client | httpx.AsyncClient) -> None:
    if client.is_closed:
        raise RuntimeError("Cannot send a request, as the client has been closed.")


def _send_direct(client: httpx.Client, request: httpx.Request) -> httpx.Response:
    _check_open(client)
    transport = client._transport_for_url(request.url)  # noqa: SLF001 - see _DIRECT
    try:
        response = transport.handle_request(request)
    except httpx.RequestError as error:
        error.request = request  # as Client.send does: the cause then says which request failed
        raise
    response.request = request
    try:
        response.read()
    finally:
        response.close()
    return response


async def _send_direct_async(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    _check_open(client)
    transport = client._transport_for_url(request.url)  # noqa: SLF001 - see _DIRECT
    try:
        response = await transport.handle_async_request(request)
    except httpx.RequestError as error:
        error.request = request
        raise
    response.request = request
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response


def send(client: httpx.Client, call: Call[R], timeout: httpx.Timeout) -> R:
    request = call.to_request(timeout)
    try:
        response = _send_direct(client, request) if _is_plain(client) else client.send(request)
    except httpx.RequestError as error:
        raise network_error(error) from error
    return call.handle(response)


async def send_async(client: httpx.AsyncClient, call: Call[R], time_limits: httpx.Timeout) -> R:
    request = call.to_request(time_limits)
    try:
        if _is_plain(client):
            response = await _send_direct_async(client, request)
        else:
            response = await client.send(request)
    except httpx.RequestError as error:
        raise network_error(error) from error
    return call.handle(response)
