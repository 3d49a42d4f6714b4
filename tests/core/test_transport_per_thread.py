"""`make_client(per_thread=True)`: each sending thread on a pool of its own (`PerThreadTransport`)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import cast

import httpx
import pytest

from smartcar_core import Origins, Vehicle, make_client
from smartcar_core.transport import PerThreadTransport


class Made:
    """A factory of mock transports that remembers what it made and what was closed."""

    def __init__(self) -> None:
        self.made: list[httpx.MockTransport] = []
        self.closed: list[httpx.MockTransport] = []

    def __call__(self) -> httpx.BaseTransport:
        number = str(len(self.made) + 1)  # each transport answers with its number
        transport = httpx.MockTransport(lambda _request: httpx.Response(200, text=number))
        closing = transport.close

        def close() -> None:
            self.closed.append(transport)
            closing()

        transport.close = close  # type: ignore[method-assign]
        self.made.append(transport)
        return transport


def _send_from_thread(transport: httpx.BaseTransport) -> str:
    """The answer to a request sent from a new thread (what that thread raised is raised here)."""
    answers: list[str] = []
    errors: list[Exception] = []

    def send() -> None:
        try:
            response = transport.handle_request(httpx.Request("GET", "http://smartcar.test/"))
            answers.append(response.read().decode())
        except Exception as error:  # noqa: BLE001 - handed to the test's thread
            errors.append(error)

    thread = threading.Thread(target=send)
    thread.start()
    thread.join(10)
    if errors:
        raise errors[0]
    return answers[0]


def test_a_thread_keeps_its_transport_and_another_thread_gets_its_own() -> None:
    made = Made()
    transport = PerThreadTransport(made)
    first = transport.handle_request(httpx.Request("GET", "http://smartcar.test/")).read().decode()
    again = transport.handle_request(httpx.Request("GET", "http://smartcar.test/")).read().decode()
    other = _send_from_thread(transport)
    assert (first, again, other) == ("1", "1", "2")
    assert len(made.made) == 2


def test_close_closes_every_thread_s_transport_and_refuses_new_ones() -> None:
    made = Made()
    transport = PerThreadTransport(made)
    transport.handle_request(httpx.Request("GET", "http://smartcar.test/"))
    _send_from_thread(transport)
    transport.close()
    assert made.closed == made.made
    assert len(made.closed) == 2
    with pytest.raises(RuntimeError, match="closed"):
        transport.handle_request(httpx.Request("GET", "http://smartcar.test/"))
    with pytest.raises(RuntimeError, match="closed"):  # a thread that had none yet
        _send_from_thread(transport)
    assert len(made.made) == 2


class _Odometer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    peers: list[int]

    def do_GET(self) -> None:
        self.peers.append(self.client_address[1])
        body = b'{"distance": 1.5}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[int]]]:
    peers: list[int] = []
    handler = type("Handler", (_Odometer,), {"peers": peers})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}", peers
        httpd.shutdown()


def test_a_per_thread_client_keeps_one_connection_per_thread_over_real_http(
    server: tuple[str, list[int]],
) -> None:
    origin, peers = server
    with make_client(per_thread=True) as http:
        vehicle = Vehicle("v-1", "token", origins=Origins(api=origin), http=http)

        def read_twice() -> None:
            assert vehicle.odometer().distance == 1.5
            assert vehicle.odometer().distance == 1.5

        threads = [threading.Thread(target=read_twice) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        read_twice()
    assert len(peers) == 6
    assert len(set(peers)) == 3  # one kept-alive connection per thread, each used twice


def test_every_thread_s_transport_shares_one_ssl_context() -> None:
    """A new SSL context loads the CA bundle (20 ms of CPU): a hundred threads must not each make one."""
    client = make_client(per_thread=True)
    transport = client._transport
    assert isinstance(transport, PerThreadTransport)
    made: list[httpx.BaseTransport] = []
    for _ in range(3):
        thread = threading.Thread(target=lambda: made.append(transport._own()))
        thread.start()
        thread.join(10)
    own = [cast("httpx.HTTPTransport", each) for each in made]
    assert len({id(each) for each in own}) == 3
    assert len({id(each._pool._ssl_context) for each in own}) == 1
    client.close()
