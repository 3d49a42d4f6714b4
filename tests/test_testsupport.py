"""testsupport's own helpers: the bound-socket server, free_port, wait_until (sync and async), delete_keys."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from testsupport import bound_socket, delete_keys, free_port, serve_asgi, wait_until, wait_until_async

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello from {request.url.port}")


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_serve_asgi_answers_at_once_on_the_port_it_yields() -> None:
    with serve_asgi(Starlette(routes=[Route("/", hello)])) as url:
        port = httpx.URL(url).port
        assert port is not None
        answer = httpx.get(url + "/", timeout=5)  # one request: no retry loop, the server is up
        assert (answer.status_code, answer.text) == (200, f"hello from {port}")
    assert refused(port)  # stopped, and its socket closed


def test_serve_asgi_runs_the_lifespan_before_it_yields() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = Starlette(routes=[Route("/", hello)], lifespan=lifespan)
    with serve_asgi(app) as url:
        assert events == ["startup"]
        assert httpx.get(url + "/", timeout=5).status_code == 200
    assert events == ["startup", "shutdown"]


def test_serve_asgi_fails_clearly_when_the_app_does_not_start() -> None:
    async def connect_database() -> None:
        raise RuntimeError("no database")

    @asynccontextmanager
    async def broken(_app: Starlette) -> AsyncIterator[None]:
        await connect_database()
        yield

    app = Starlette(lifespan=broken)
    with (
        pytest.raises(RuntimeError, match="the broken app did not start"),
        serve_asgi(app, what="the broken app"),
    ):
        pytest.fail("the block must not run")


def test_bound_socket_is_listening_before_any_server_runs() -> None:
    with bound_socket() as sock:
        host, port = sock.getsockname()[:2]
        assert host == "127.0.0.1"
        assert port > 0
        with socket.create_connection((host, port), timeout=5):  # queued in the backlog: accepted
            pass


def test_free_port_is_a_port_nothing_listens_on() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert refused(port)


def test_wait_until_returns_the_first_truthy_value() -> None:
    answers = iter([None, [], 0, ["found"]])
    assert wait_until(lambda: next(answers), timeout=5, interval=0) == ["found"]


def test_wait_until_names_what_it_waited_for_after_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^timed out after 0\.2 s waiting for the answer$"):
        wait_until(lambda: False, timeout=0.2, interval=0.01, what="the answer")
    assert time.monotonic() - started >= 0.2


def test_wait_until_ignores_only_the_errors_it_is_told_to() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("not yet")
        return "up"

    assert wait_until(flaky, timeout=5, interval=0, ignoring=(OSError,)) == "up"
    with pytest.raises(ZeroDivisionError):
        wait_until(lambda: 1 / 0, timeout=5)


def test_wait_until_gives_the_last_ignored_error_as_the_cause() -> None:
    def down() -> bool:
        raise ConnectionRefusedError("port closed")

    with pytest.raises(AssertionError, match="waiting for the port") as caught:
        wait_until(down, timeout=0.05, interval=0.01, what="the port", ignoring=(OSError,))
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


async def test_wait_until_async_lets_the_loop_run_between_polls() -> None:
    with serve_asgi(Starlette(routes=[Route("/", hello)])) as url:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            request = asyncio.get_running_loop().create_task(http.get("/"))  # runs only while the poll awaits
            assert await wait_until_async(request.done, timeout=5, interval=0.01) is True
            assert request.result().status_code == 200


async def test_wait_until_async_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"^timed out after 0\.05 s waiting for nothing$"):
        await wait_until_async(lambda: None, timeout=0.05, interval=0.01, what="nothing")


def test_delete_keys_deletes_every_match_and_nothing_else(client: redis.Redis, key_prefix: str) -> None:
    other = f"test:{uuid.uuid4().hex[:12]}:kept"
    client.mset({f"{key_prefix}{n}": n for n in range(2500)} | {f"_kombu.binding.{key_prefix}q": 1, other: 1})
    try:
        delete_keys(client, f"{key_prefix}*", f"_kombu.binding*.{key_prefix}*")
        assert list(client.scan_iter(match=f"*{key_prefix}*", count=1000)) == []
        assert client.exists(other) == 1
    finally:
        client.delete(other)
