"""The public port's limits (`receiver.http`), against the receiver under a real uvicorn, over real sockets:
heads too large or with too many fields refused and closed, drip-fed heads and slow bodies cut off, idle
connections closed, idle connections not counted against --limit-concurrency, and no redirect built from
the Host header."""

from __future__ import annotations

import http.client
import select
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import receiver.http
from receiver.app import WEBHOOK_PATH, create_app
from receiver.http import LimitedProtocol, PortLimits, from_environment, hook_problems, protocol_class
from receiver.settings import ReceiverSettings
from testsupport import wait_until
from testsupport.receiver import serve

DEADLINE = 10.0  # seconds any wait below may take before the test fails


@dataclass(frozen=True)
class Port:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def connect(self) -> socket.socket:
        return socket.create_connection(self.address, timeout=DEADLINE)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=DEADLINE, **kwargs)


Serve = Callable[..., AbstractContextManager[Port]]


@pytest.fixture
def public_port(make_settings: Callable[..., ReceiverSettings]) -> Serve:
    """`with public_port(header_timeout=0.5, limit_concurrency=2) as port:` the receiver on the protocol of
    the launch lines, with those receiver settings and uvicorn options."""

    @contextmanager
    def start(
        *, timeout_keep_alive: int = 30, limit_concurrency: int | None = None, **settings: Any
    ) -> Iterator[Port]:
        configured = make_settings(**settings)
        protocol = protocol_class(PortLimits.of(configured))
        with serve(
            create_app(configured),
            http=protocol,
            timeout_keep_alive=timeout_keep_alive,
            limit_concurrency=limit_concurrency,
        ) as live:
            host, port = live.url.removeprefix("http://").rsplit(":", 1)
            yield Port(host, int(port))

    return start


def head(path: str = "/healthz", *fields: str, method: str = "GET") -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: receiver.test", *fields, "", ""]).encode()


def read_until_closed(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection (a reset counts as closed); socket.timeout, which
    fails the test, when it keeps it open past DEADLINE."""
    sock.settimeout(DEADLINE)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed nor written to the connection (nothing to read, no EOF)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# ---- heads ------------------------------------------------------------------------------------------


def test_a_head_over_the_size_limit_gets_431_and_the_connection_closed(public_port: Serve) -> None:
    with public_port() as port:  # the default: 16 KiB
        with port.connect() as sock:
            sock.sendall(head("/healthz", "X-Padding: " + "a" * 20_000))
            answer = read_until_closed(sock)
        assert status_of(answer) == 431
        assert b"connection: close" in answer
        assert b'{"error": "request head over 16384 bytes"}' in answer
        assert port.get("/healthz", headers={"X-Padding": "a" * 15_000}).status_code == 200  # under it


def test_an_unterminated_header_is_cut_off_not_held(public_port: Serve) -> None:
    """The measured problem: 16 MiB of one header, never ended, all kept. Now the connection is closed after
    the limit: the client cannot even send that much."""
    with public_port(max_header_bytes=4096) as port, port.connect() as sock:
        sock.sendall(head("/healthz").removesuffix(b"\r\n") + b"X-Endless: ")
        sent, refused = 0, False
        deadline = time.monotonic() + DEADLINE
        while sent < 16 * 2**20 and time.monotonic() < deadline:
            try:
                sent += sock.send(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                refused = True
                break
        assert refused, f"the server took {sent} bytes of one header"
        assert sent < 16 * 2**20
        answer = read_until_closed(sock)
        assert answer == b"" or status_of(answer) == 431  # a reset may overtake the answer


def test_a_head_with_too_many_fields_gets_431(public_port: Serve) -> None:
    with public_port(max_headers=20) as port:
        fields = [f"X-Field-{number}: {number}" for number in range(20)]  # and Host: 21
        with port.connect() as sock:
            sock.sendall(head("/healthz", *fields))
            answer = read_until_closed(sock)
        assert status_of(answer) == 431
        assert b"more than 20 header fields" in answer
        with port.connect() as sock:
            sock.sendall(head("/healthz", *fields[2:], "Connection: close"))  # 20 in all
            assert status_of(read_until_closed(sock)) == 200


def test_a_pipelined_head_over_the_limit_closes_the_connection(public_port: Serve) -> None:
    """A head that begins inside a read (after another request) is measured by its parsed fields. The
    connection is closed without a 431, which cannot go before the answer still owed to the first request."""
    with public_port() as port, port.connect() as sock:
        sock.sendall(head("/healthz") + head("/healthz", "X-Padding: " + "a" * 20_000))
        answer = read_until_closed(sock)
    assert answer.count(b"HTTP/1.1 ") <= 1, answer  # never two answers: the second head was refused
    assert b"431" not in answer


def test_a_drip_fed_head_is_closed_after_the_header_timeout(public_port: Serve) -> None:
    """A slowloris: a header byte every 50 ms, never an end. Closed (408) once the head has taken longer
    than RECEIVER_HEADER_TIMEOUT from its first byte, however regularly bytes keep coming."""
    with public_port(header_timeout=0.5) as port, port.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer = b""
        while time.monotonic() - started < DEADLINE:
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                answer = read_until_closed(sock)
                break
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
        closed_after = time.monotonic() - started
    assert 0.5 <= closed_after < DEADLINE
    assert status_of(answer) == 408
    assert b"request head not complete within 0.5 s" in answer


def test_a_request_the_parser_refuses_still_gets_uvicorns_400(public_port: Serve) -> None:
    with public_port() as port, port.connect() as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = read_until_closed(sock)
    assert status_of(answer) == 400
    assert answer.endswith(b"Invalid HTTP request received.")


def test_heads_and_bodies_in_several_reads_in_time_keep_their_connection(public_port: Serve) -> None:
    """The deadlines end with what they time: a connection whose head and body each came in pieces, in
    time, is still served well after both timeouts (kept alive, as any other)."""
    with public_port(header_timeout=0.3, body_timeout=0.3) as port, port.connect() as sock:
        request = head(WEBHOOK_PATH, "Content-Type: application/json", "Content-Length: 2", method="POST")
        for piece in (request[:20], request[20:] + b"{", b"}"):
            sock.sendall(piece)
            time.sleep(0.05)  # each piece its own read
        answer = sock.recv(65536)
        assert status_of(answer) == 401  # the app's own answer (unsigned): the request went through whole
        time.sleep(0.6)  # past both timeouts: neither may still be armed
        assert still_open(sock)
        sock.sendall(head("/healthz", "Connection: close"))
        assert status_of(read_until_closed(sock)) == 200


# ---- bodies, idle connections, concurrency ----------------------------------------------------------


def test_a_slow_body_holds_a_request_slot_until_the_body_timeout_closes_it(public_port: Serve) -> None:
    """--limit-concurrency counts requests in flight: one whose body stalls holds the only slot (503 for
    the next), until RECEIVER_BODY_TIMEOUT closes its connection and the slot is free again."""
    with public_port(body_timeout=2.0, limit_concurrency=1) as port, port.connect() as stalled:
        stalled.sendall(
            head(WEBHOOK_PATH, "Content-Type: application/json", "Content-Length: 100", method="POST")
            + b'{"eventId":'
        )
        wait_until(lambda: port.get("/healthz").status_code == 503, timeout=DEADLINE, what="the slot taken")
        stalled.sendall(b'"still-coming",')  # more of the body, not all of it: the deadline stays
        assert read_until_closed(stalled) == b""  # closed by the body timeout, unanswered
        wait_until(lambda: port.get("/healthz").status_code == 200, timeout=DEADLINE, what="the slot free")


def test_a_connection_that_sends_nothing_is_closed_after_the_keep_alive_timeout(public_port: Serve) -> None:
    with public_port(timeout_keep_alive=1) as port:
        with port.connect() as sock:
            started = time.monotonic()
            assert read_until_closed(sock) == b""
            # Not before the timeout, give or take the event loop's timer resolution (libuv's is a
            # millisecond, and the client's clock starts after the server's: a run measured 0.9997 s).
            assert time.monotonic() - started >= 1 - 0.01
        connection = http.client.HTTPConnection(*port.address, timeout=DEADLINE)
        try:  # and one idle after a response, as uvicorn itself does
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() == b'{"status":"ok"}'
            assert connection.sock is not None
            assert read_until_closed(connection.sock) == b""
        finally:
            connection.close()


def test_healthz_answers_while_more_idle_connections_are_open_than_the_concurrency_limit(
    public_port: Serve,
) -> None:
    """uvicorn's own check counts open connections: two idle sockets made every request a 503."""
    with public_port(limit_concurrency=2) as port, ExitStack() as stack:
        idle = []
        for _ in range(3):  # idle after a response: certainly accepted and counted by the server
            connection = http.client.HTTPConnection(*port.address, timeout=DEADLINE)
            stack.callback(connection.close)
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() == b'{"status":"ok"}'
            assert connection.sock is not None
            idle.append(connection.sock)
        idle += [stack.enter_context(port.connect()) for _ in range(2)]  # never sent a byte
        assert port.get("/healthz").json() == {"status": "ok"}
        assert all(still_open(sock) for sock in idle)


# ---- redirects ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("POST", WEBHOOK_PATH + "/"), ("GET", "/healthz/"), ("GET", "/readyz/")]
)
def test_no_redirect_is_built_from_the_host_header(public_port: Serve, method: str, path: str) -> None:
    with public_port() as port:
        answer = httpx.request(
            method,
            port.url + path,
            headers={"Host": "evil.example", "Content-Type": "application/json"},
            content=b"{}" if method == "POST" else None,
            timeout=DEADLINE,
        )
    assert answer.status_code == 404
    assert "location" not in answer.headers
    assert "evil.example" not in answer.text


# ---- the start-up check -------------------------------------------------------------------------------


def test_uvicorn_still_has_what_the_protocol_overrides() -> None:
    assert hook_problems() == []
    assert issubclass(protocol_class(PortLimits(4096, 50, 1.0, 1.0)), LimitedProtocol)


def test_the_launch_lines_protocol_is_built_once_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--http receiver.http:LimitedHttpToolsProtocol`: the limits of the RECEIVER_* settings."""
    monkeypatch.setenv("SMARTCAR_AMT", "amt-from-env-0123456789")
    monkeypatch.setenv("RECEIVER_MAX_HEADERS", "50")
    monkeypatch.setenv("RECEIVER_HEADER_TIMEOUT", "2.5")
    monkeypatch.delitem(vars(receiver.http), "LimitedHttpToolsProtocol", raising=False)
    try:
        built = receiver.http.LimitedHttpToolsProtocol
        assert issubclass(built, LimitedProtocol)
        assert built.limits == PortLimits(16384, 50, 2.5, 30.0)
        assert receiver.http.LimitedHttpToolsProtocol is built
    finally:
        vars(receiver.http).pop("LimitedHttpToolsProtocol", None)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = receiver.http.nothing


def test_an_invalid_limit_stops_the_start_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SMARTCAR_AMT", "amt-from-env-0123456789")
    monkeypatch.setenv("RECEIVER_MAX_HEADER_BYTES", "1")
    with pytest.raises(SystemExit) as stopped:
        from_environment()
    assert stopped.value.code == 3
    line = capsys.readouterr().err
    assert line.startswith(
        "receiver: configuration error: invalid receiver settings: RECEIVER_MAX_HEADER_BYTES"
    )
    assert line.count("\n") == 1
    assert "amt-from-env" not in line


class _OlderProtocol:
    """A stand-in for a uvicorn whose protocol lost a method and stopped using an attribute."""

    def __init__(self) -> None:
        self.app = None

    def on_headers_complete(self) -> None:
        self.app = None


def test_a_changed_uvicorn_is_named_and_stops_the_start_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    problems = "\n".join(hook_problems(_OlderProtocol))
    assert "uvicorn's HttpToolsProtocol has no data_received any more" in problems
    assert "HttpToolsProtocol.on_headers_complete no longer uses limit_concurrency" in problems
    with pytest.raises(SystemExit) as stopped:
        from_environment(_OlderProtocol)
    assert stopped.value.code == 3
    line = capsys.readouterr().err
    assert line.startswith("receiver: cannot serve: uvicorn's HttpToolsProtocol")
    assert line.count("\n") == 1
    assert "update receiver.http, or run with --http httptools" in line
