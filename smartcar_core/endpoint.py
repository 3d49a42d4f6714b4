"""One description per endpoint, two ways to send it.

An endpoint is a function that builds a `Call` (see `protocol`). `@endpoint` turns it into a descriptor:
read from a sync object (a `SyncSender` such as `Vehicle`) it is a plain method returning the result;
read from an async object (`AsyncVehicle`) it is a coroutine method. Both come from the same function,
as the Node SDK's methods all come from one METHODS_MAP.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

import httpx

from smartcar_core.config import DEFAULT_TIMEOUT
from smartcar_core.protocol import Call
from smartcar_core.transport import send, send_async, shared_async_client, shared_client

P = ParamSpec("P")
R = TypeVar("R")
OwnerT = TypeVar("OwnerT")


class SyncSender:
    """Sends Calls on a pooled `httpx.Client` (the shared one unless given)."""

    def __init__(
        self, *, http: httpx.Client | None = None, timeout: httpx.Timeout | float | None = None
    ) -> None:
        self._http = http
        self._timeout = _timeout(timeout)

    def _send(self, call: Call[R]) -> R:
        return send(self._http or shared_client(), call, self._timeout)


class AsyncSender:
    """Sends Calls on a pooled `httpx.AsyncClient` (the running loop's shared one unless given)."""

    def __init__(
        self, *, http: httpx.AsyncClient | None = None, timeout: httpx.Timeout | float | None = None
    ) -> None:
        self._http = http
        self._timeout = _timeout(timeout)

    async def _send(self, call: Call[R]) -> R:
        return await send_async(self._http or shared_async_client(), call, self._timeout)


def _timeout(value: httpx.Timeout | float | None) -> httpx.Timeout:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, httpx.Timeout):
        return value
    return httpx.Timeout(value, connect=min(value, DEFAULT_TIMEOUT.connect or value))


class Endpoint(Generic[OwnerT, P, R]):
    def __init__(self, build: Callable[Concatenate[OwnerT, P], Call[R]]) -> None:
        self.build = build
        self.name = self.__name__ = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name
        self.build.__name__ = self.__name__ = name
        self.build.__qualname__ = self.__qualname__ = f"{owner.__qualname__}.{name}"

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: SyncSender, owner: type[Any]) -> Callable[P, R]: ...
    @overload
    def __get__(self, obj: AsyncSender, owner: type[Any]) -> Callable[P, Awaitable[R]]: ...
    def __get__(self, obj: object, owner: type[Any]) -> Any:
        if obj is None:
            return self
        build = self.build
        if isinstance(obj, AsyncSender):
            sender = obj

            async def call_async(*args: P.args, **kwargs: P.kwargs) -> R:
                return await sender._send(build(sender, *args, **kwargs))  # type: ignore[arg-type]  # noqa: SLF001

            return functools.update_wrapper(call_async, build)
        if isinstance(obj, SyncSender):
            sync_sender = obj

            def call(*args: P.args, **kwargs: P.kwargs) -> R:
                return sync_sender._send(build(sync_sender, *args, **kwargs))  # type: ignore[arg-type]  # noqa: SLF001

            return functools.update_wrapper(call, build)
        raise TypeError(
            f"{owner.__name__} must be a SyncSender or an AsyncSender to send {self.build.__name__}"
        )


def endpoint(build: Callable[Concatenate[OwnerT, P], Call[R]]) -> Endpoint[OwnerT, P, R]:
    """Declare an endpoint by the function that builds its Call."""
    return Endpoint(build)
