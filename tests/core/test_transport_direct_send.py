"""The transport's direct path (a plain client's transport, skipping `Client.send`) and its fallbacks.

A Call goes straight through the transport of a client without auth, event hooks or redirect
following; every other client goes through `send()` so that what its owner configured still runs.
"""

from __future__ import annotations

import functools
import http.server
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import certifi
import httpx
import pytest

from smartcar_core import AsyncVehicle, Origins, SmartcarConnectionError, Vehicle, make_client, transport
from smartcar_core.transport import _ssl_verify, make_async_client

ORIGINS = Origins(api="http://smartcar.test")
ODOMETER = {"distance": 12.5}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def odometer_handler(seen: list[httpx.Request]) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json=ODOMETER,
            headers={"sc-request-id": f"req-{len(seen)}", "set-cookie": "session=abc; Path=/"},
        )

    return handle


def test_plain_client_sends_directly_and_keeps_no_cookies() -> None:
    seen: list[httpx.Request] = []
    with httpx.Client(transport=httpx.MockTransport(odometer_handler(seen))) as http:
        vehicle = Vehicle("v-1", "token-1", origins=ORIGINS, http=http)
        first = vehicle.odometer()
        second = vehicle.odometer()
        assert len(http.cookies.jar) == 0  # Client.send would have stored the cookie
    assert (first.distance, first.meta.request_id) == (12.5, "req-1")
    assert second.meta.request_id == "req-2"
    assert [str(request.url) for request in seen] == ["http://smartcar.test/v2.0/vehicles/v-1/odometer"] * 2
    assert seen[0].headers["authorization"] == "Bearer token-1"
    assert "cookie" not in seen[1].headers


def test_query_parameters_do_not_stick_to_a_url() -> None:
    seen: list[httpx.Request] = []
    handler = odometer_handler(seen)

    def permissions(request: httpx.Request) -> httpx.Response:
        handler(request)
        return httpx.Response(200, json={"permissions": ["read_odometer"]})

    with httpx.Client(transport=httpx.MockTransport(permissions)) as http:
        vehicle = Vehicle("v-1", "token-1", origins=ORIGINS, http=http)
        vehicle.permissions(paging={"limit": 5})
        vehicle.permissions()
    assert [request.url.query for request in seen] == [b"limit=5", b""]


def test_the_installed_httpx_offers_the_direct_path() -> None:
    # If this fails, httpx renamed `_transport_for_url`: every call falls back to `Client.send`, which
    # works but loses the speed bench/client_bench.py measures. Adapt `transport` to the new httpx.
    assert transport._DIRECT


def test_without_the_direct_path_a_plain_client_goes_through_send(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "_DIRECT", False)
    seen: list[httpx.Request] = []
    with httpx.Client(transport=httpx.MockTransport(odometer_handler(seen))) as http:
        odometer = Vehicle("v-1", "token-1", origins=ORIGINS, http=http).odometer()
        assert dict(http.cookies) == {"session": "abc"}  # stored by Client.send, never by the direct path
    assert (odometer.distance, odometer.meta.request_id) == (12.5, "req-1")
    assert seen[0].headers["authorization"] == "Bearer token-1"


@pytest.mark.anyio
async def test_without_the_direct_path_a_plain_async_client_goes_through_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "_DIRECT", False)
    async with httpx.AsyncClient(transport=httpx.MockTransport(odometer_handler([]))) as http:
        odometer = await AsyncVehicle("v-2", "token-2", origins=ORIGINS, http=http).odometer()
        assert dict(http.cookies) == {"session": "abc"}
    assert odometer.distance == 12.5


class RecordingClient(httpx.Client):
    """A subclass that overrides `send`, as an instrumented or test client would."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: list[str] = []

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        self.sent.append(request.url.path)
        return super().send(request, **kwargs)


def test_a_subclass_of_the_client_goes_through_its_send() -> None:
    with RecordingClient(transport=httpx.MockTransport(odometer_handler([]))) as http:
        Vehicle("v-1", "token-1", origins=ORIGINS, http=http).odometer()
    assert http.sent == ["/v2.0/vehicles/v-1/odometer"]


def test_a_send_wrapped_by_a_tracing_library_still_sees_every_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    traced: list[str] = []
    original = httpx.Client.send

    @functools.wraps(original)
    def traced_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        traced.append(request.method)
        return original(self, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", traced_send)
    with httpx.Client(transport=httpx.MockTransport(odometer_handler([]))) as http:
        Vehicle("v-1", "token-1", origins=ORIGINS, http=http).odometer()
    assert traced == ["GET"]


@pytest.mark.anyio
async def test_an_async_send_wrapped_by_a_tracing_library_still_sees_every_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    traced: list[str] = []
    original = httpx.AsyncClient.send

    @functools.wraps(original)
    async def traced_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        traced.append(request.method)
        return await original(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", traced_send)
    async with httpx.AsyncClient(transport=httpx.MockTransport(odometer_handler([]))) as http:
        await AsyncVehicle("v-2", "token-2", origins=ORIGINS, http=http).odometer()
    assert traced == ["GET"]


def test_client_with_event_hooks_goes_through_send() -> None:
    seen: list[httpx.Request] = []
    hooked: list[str] = []
    with httpx.Client(
        transport=httpx.MockTransport(odometer_handler(seen)),
        event_hooks={"request": [lambda request: hooked.append(request.method)]},
    ) as http:
        Vehicle("v-1", "token-1", origins=ORIGINS, http=http).odometer()
    assert hooked == ["GET"]


class Signed(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-signed"] = "yes"
        yield request


def test_client_with_auth_goes_through_send() -> None:
    seen: list[httpx.Request] = []
    with httpx.Client(transport=httpx.MockTransport(odometer_handler(seen)), auth=Signed()) as http:
        Vehicle("v-1", "token-1", origins=ORIGINS, http=http).odometer()
    assert seen[0].headers["x-signed"] == "yes"


def test_client_that_follows_redirects_goes_through_send() -> None:
    seen: list[httpx.Request] = []
    answer = odometer_handler(seen)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v2.0/"):
            return httpx.Response(307, headers={"location": "http://smartcar.test/moved/odometer"})
        return answer(request)

    with httpx.Client(transport=httpx.MockTransport(handle), follow_redirects=True) as http:
        odometer = Vehicle("v-1", "token-1", origins=ORIGINS, http=http).odometer()
    assert odometer.distance == 12.5
    assert seen[0].url.path == "/moved/odometer"


def test_proxy_mounted_for_the_url_is_used() -> None:
    direct: list[httpx.Request] = []
    proxied: list[httpx.Request] = []
    with httpx.Client(
        transport=httpx.MockTransport(odometer_handler(direct)),
        mounts={"http://smartcar.test": httpx.MockTransport(odometer_handler(proxied))},
    ) as http:
        Vehicle("v-1", "token-1", origins=ORIGINS, http=http).odometer()
    assert (len(direct), len(proxied)) == (0, 1)


def test_closed_client_refuses_to_send() -> None:
    http = httpx.Client(transport=httpx.MockTransport(odometer_handler([])))
    http.close()
    with pytest.raises(RuntimeError, match="closed"):
        Vehicle("v-1", "token-1", origins=ORIGINS, http=http).odometer()


class FailingBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that breaks after the headers arrived: the request did reach the server."""

    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"dist'
        raise httpx.ReadError("connection reset")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"dist'
        raise httpx.ReadError("connection reset")

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def test_failure_while_reading_the_body_is_a_sent_connection_error_and_closes_it() -> None:
    body = FailingBody()
    transport = httpx.MockTransport(lambda _: httpx.Response(200, stream=body))
    with httpx.Client(transport=transport) as http, pytest.raises(SmartcarConnectionError) as raised:
        Vehicle("v-1", "token-1", origins=ORIGINS, http=http).odometer()
    assert raised.value.request_sent is True
    assert body.closed


def test_connect_failure_is_an_unsent_connection_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")  # as HTTPTransport raises it: without the request

    with (
        httpx.Client(transport=httpx.MockTransport(refuse)) as http,
        pytest.raises(SmartcarConnectionError) as raised,
    ):
        Vehicle("v-1", "token-1", origins=ORIGINS, http=http).odometer()
    assert raised.value.request_sent is False
    # The cause names the failed request, as Client.send's errors do.
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    assert raised.value.__cause__.request.url.path == "/v2.0/vehicles/v-1/odometer"


@pytest.mark.anyio
async def test_async_connect_failure_is_an_unsent_connection_error_naming_its_request() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        with pytest.raises(SmartcarConnectionError) as raised:
            await AsyncVehicle("v-2", "token-2", origins=ORIGINS, http=http).odometer()
    assert raised.value.request_sent is False
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    assert raised.value.__cause__.request.url.path == "/v2.0/vehicles/v-2/odometer"


@pytest.mark.anyio
async def test_async_plain_client_sends_directly() -> None:
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(odometer_handler(seen))) as http:
        odometer = await AsyncVehicle("v-2", "token-2", origins=ORIGINS, http=http).odometer()
        assert len(http.cookies.jar) == 0
    assert (odometer.distance, odometer.meta.request_id) == (12.5, "req-1")
    assert seen[0].url.path == "/v2.0/vehicles/v-2/odometer"


@pytest.mark.anyio
async def test_async_client_with_event_hooks_goes_through_send() -> None:
    hooked: list[int] = []

    async def record(response: httpx.Response) -> None:
        hooked.append(response.status_code)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(odometer_handler([])), event_hooks={"response": [record]}
    ) as http:
        await AsyncVehicle("v-2", "token-2", origins=ORIGINS, http=http).odometer()
    assert hooked == [200]


@pytest.mark.anyio
async def test_async_failure_while_reading_the_body_closes_it() -> None:
    body = FailingBody()
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, stream=body))
    ) as http:
        with pytest.raises(SmartcarConnectionError):
            await AsyncVehicle("v-2", "token-2", origins=ORIGINS, http=http).odometer()
    assert body.closed


@pytest.mark.anyio
async def test_async_closed_client_refuses_to_send() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(odometer_handler([])))
    await http.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await AsyncVehicle("v-2", "token-2", origins=ORIGINS, http=http).odometer()


class KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[tuple[str, int]]

    def do_GET(self) -> None:
        self.connections.add(self.client_address)
        body = b'{"distance": 7.0}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture
def keep_alive_server() -> Iterator[tuple[str, set[tuple[str, int]]]]:
    connections: set[tuple[str, int]] = set()
    handler = type("Handler", (KeepAliveHandler,), {"connections": connections})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", connections
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_direct_path_returns_each_connection_to_the_pool(
    keep_alive_server: tuple[str, set[tuple[str, int]]],
) -> None:
    origin, connections = keep_alive_server
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(limits=limits, timeout=httpx.Timeout(5.0, pool=1.0)) as http:
        vehicle = Vehicle("v-3", "token-3", origins=Origins(api=origin), http=http)
        distances = {vehicle.odometer().distance for _ in range(20)}
    # A connection the direct path failed to release would make the second call time out on the pool.
    assert distances == {7.0}
    assert len(connections) == 1


def test_a_ca_path_becomes_an_ssl_context_that_trusts_it() -> None:
    ca_file = certifi.where()
    for verify in (ca_file, Path(ca_file)):
        context = _ssl_verify(verify)
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        assert len(context.get_ca_certs()) > 10
    directory = _ssl_verify(str(Path(ca_file).parent))
    assert isinstance(directory, ssl.SSLContext)
    assert directory.verify_mode == ssl.CERT_REQUIRED


def test_ssl_contexts_and_booleans_pass_through() -> None:
    context = ssl.create_default_context()
    assert _ssl_verify(context) is context
    for flag in (True, False):
        assert _ssl_verify(flag) is flag


@pytest.mark.anyio
async def test_make_client_with_a_ca_file_does_not_trip_httpx_deprecation() -> None:
    # pytest turns warnings into errors, and httpx warns when it is handed `verify=<str>` itself.
    with make_client(verify=certifi.where()) as http:
        assert not http.is_closed
    async with make_async_client(verify=Path(certifi.where())) as async_http:
        assert not async_http.is_closed
