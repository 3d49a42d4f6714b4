"""Each Procfile command started for real, the way a Procfile runner starts it (`sh -c <line>`), answering
its health check, then stopped with SIGTERM: web, worker and beat against the test Redis (database 13,
under this test's key prefix), and Procfile.dev's simulator. The worker and beat are also asked the
liveness command of their Kubernetes manifests."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from deploy.support import BIN, DEPLOY, procfile, yaml_documents
from receiver.app import STARTUP_FAILURE
from testsupport import free_port, wait_until
from testsupport.processes import rss_bytes
from testsupport.workers import WorkerLauncher, WorkerProcess, settings_environment
from workers.settings import WorkerSettings

AMT = "deploy-test-amt-0123456789"
# A single uvicorn process re-raises the SIGTERM it shut down gracefully on (uvicorn's Server), so its
# status is SIGTERM's (143 in a shell; systemd counts it a clean stop); its supervisor (--workers 2 and
# more) exits 0.
STOPPED = {1: -signal.SIGTERM, 2: 0}


class Started:
    """One Procfile line running under `sh -c`, its output in a file; stopped (and reaped) at the end."""

    def __init__(self, name: str, line: str, env: Mapping[str, str], directory: Path) -> None:
        self.log_path = directory / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the Procfile's own line
                ["/bin/sh", "-c", line],
                env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env},
                cwd=directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"exited with {self.process.returncode}:\n{self.output()[-3000:]}")

    def terminate(self, timeout: float) -> int:
        """SIGTERM (the line ends in `exec`: the program itself gets it); its exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"still running {timeout:g} s after SIGTERM:\n{self.output()[-3000:]}"
            ) from None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Started]]:
    processes: list[Started] = []
    yield processes
    for process in processes:
        process.kill()


def answers(url: str, process: Started) -> bool:
    process.check_alive()
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def worker_settings(redis_url: str, key_prefix: str) -> WorkerSettings:
    return WorkerSettings(
        redis_url=redis_url,
        token_encryption_key=Fernet.generate_key().decode(),
        event_key_prefix=key_prefix,
        queue=f"{key_prefix}queue",
        broker_key_prefix=key_prefix,
        log_format="console",
    )


def liveness(workload: str) -> list[str]:
    """The liveness command of a workload in deploy/k8s/base."""
    [deployment] = [
        item
        for item in yaml_documents(DEPLOY / "k8s" / "base" / f"{workload}.yaml")
        if item["kind"] == "Deployment"
    ]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return list(container["livenessProbe"]["exec"]["command"])


def probe(command: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a liveness command as the kubelet would, in the pod's environment (HOSTNAME: the pod's name)."""
    return subprocess.run(  # noqa: S603 - the manifest's own command
        command,
        env={
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOSTNAME": socket.gethostname(),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )


@pytest.mark.parametrize("processes", sorted(STOPPED))
def test_web_serves_its_health_paths_with_a_fresh_metrics_directory_and_stops_on_sigterm(
    processes: int, redis_url: str, key_prefix: str, tmp_path: Path, started: list[Started]
) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_999999.db").write_bytes(b"left by a previous run")
    port = free_port()
    env = {
        "SMARTCAR_AMT": AMT,
        "REDIS_URL": redis_url,
        "EVENT_KEY_PREFIX": key_prefix,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(processes),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "LOG_FORMAT": "json",
    }
    web = Started("web", procfile()["web"], env, tmp_path)
    started.append(web)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(f"{base}/healthz", web), timeout=30, interval=0.1, what="web's /healthz")
    assert httpx.get(f"{base}/readyz", timeout=5).json() == {"status": "ready"}
    page = httpx.get(f"{base}/metrics", timeout=5)
    assert page.status_code == 200
    assert "smartcar_webhook_requests_total" in page.text
    assert not (metrics / "counter_999999.db").exists(), "the metrics directory was not emptied"
    assert web.terminate(timeout=30) == STOPPED[processes], web.output()[-3000:]
    assert "Finished server process" in web.output(), "uvicorn did not shut down gracefully"


def test_web_refuses_a_bad_setting_with_exit_3_and_one_line_under_several_processes(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """uvicorn's supervisor alone would exit 0 here: the preflight before it says what is wrong."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = {
        "SMARTCAR_AMT": AMT,
        "REDIS_URL": redis_url,
        "EVENT_KEY_PREFIX": key_prefix,
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "RECEIVER_MAX_BODY_BYTES": "a lot",
    }
    web = Started("web", procfile()["web"], env, tmp_path)
    status = web.process.wait(60)
    lines = [line for line in web.output().splitlines() if "configuration error" in line]
    assert status == STARTUP_FAILURE, web.output()[-3000:]
    assert len(lines) == 1
    assert "RECEIVER_MAX_BODY_BYTES" in lines[0]
    assert "Traceback" not in web.output()
    assert "Started parent process" not in web.output()  # uvicorn never ran


def cut_off(port: int, head: bytes, *, send_for: float = 20.0) -> tuple[int, bytes]:
    """Open a connection, send `head`, then a byte of it every 20 ms (a slowloris) or 64 KiB at a time (an
    endless header) until the server closes it: the bytes it took, and what it answered."""
    drip = head.endswith(b"\r\n")
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        deadline = time.monotonic() + send_for
        while time.monotonic() < deadline:
            if select.select([sock], [], [], 0.02 if drip else 0)[0]:
                break
            try:
                sent += sock.send(b"X" if drip else b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            raise AssertionError(f"still open after {send_for:g} s and {sent} bytes")
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
    return sent, answer


def test_web_cuts_off_endless_and_drip_fed_heads_with_the_settings_limits(
    redis_url: str, key_prefix: str, tmp_path: Path, started: list[Started]
) -> None:
    """The launch line's protocol (`--http receiver.http:LimitedHttpToolsProtocol`) with RECEIVER_* limits.
    The problems it was measured for: 16 MiB of one unterminated header on two connections grew the process
    by 16 MiB, and a head dripped a byte at a time was never closed."""
    port = free_port()
    env = {
        "SMARTCAR_AMT": AMT,
        "REDIS_URL": redis_url,
        "EVENT_KEY_PREFIX": key_prefix,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "RECEIVER_MAX_HEADER_BYTES": "4096",
        "RECEIVER_HEADER_TIMEOUT": "1",
    }
    web = Started("web", procfile()["web"], env, tmp_path)
    started.append(web)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(f"{base}/healthz", web), timeout=30, interval=0.1, what="web's /healthz")
    assert httpx.get(f"{base}/healthz", headers={"X-Padding": "a" * 8000}, timeout=5).status_code == 431

    endless = b"POST /webhooks/smartcar HTTP/1.1\r\nHost: receiver\r\nX-Endless: "
    cut_off(port, endless)  # once before measuring: whatever a first refusal allocates
    before = rss_bytes(web.process.pid)
    for _ in range(2):
        sent, answer = cut_off(port, endless)
        assert sent < 16 * 2**20
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    grown = rss_bytes(web.process.pid) - before
    assert grown < 4 * 2**20, f"grew by {grown / 2**20:.1f} MiB"

    started_at = time.monotonic()
    _, answer = cut_off(port, b"GET /healthz HTTP/1.1\r\n")
    assert time.monotonic() - started_at >= 1
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    assert web.terminate(timeout=30) == STOPPED[1], web.output()[-3000:]


def test_worker_runs_a_task_answers_its_liveness_ping_and_stops_on_sigterm(
    redis_url: str, key_prefix: str, tmp_path: Path, started: list[Started]
) -> None:
    settings = worker_settings(redis_url, key_prefix)
    env = settings_environment(settings)
    worker = Started("worker", procfile()["worker"], env, tmp_path)
    started.append(worker)
    launcher = WorkerLauncher(settings, tmp_path)
    try:
        # The Procfile's worker consumes the queue itself: the ping task goes there.
        launcher.wait_ready(
            WorkerProcess("worker", worker.process, worker.log_path, settings.queue), timeout=45
        )
        answered = probe(liveness("worker"), env)
        assert answered.returncode == 0, answered.stdout + answered.stderr
        assert "pong" in answered.stdout
    finally:
        launcher.client.close()
    assert worker.terminate(timeout=30) == 0, worker.output()[-3000:]


def test_beat_starts_keeps_its_schedule_in_its_state_directory_answers_pings_and_stops(
    redis_url: str, key_prefix: str, tmp_path: Path, started: list[Started]
) -> None:
    settings = worker_settings(redis_url, key_prefix)
    state = tmp_path / "state"
    env = {**settings_environment(settings), "STATE_DIRECTORY": str(state)}
    beat = Started("beat", procfile()["beat"], env, tmp_path)
    started.append(beat)

    def running() -> bool:
        beat.check_alive()
        return "beat: Starting..." in beat.output()

    wait_until(running, timeout=30, interval=0.1, what="beat's 'beat: Starting...' line")

    def pinged() -> bool:
        beat.check_alive()
        return probe(liveness("beat"), env).returncode == 0

    wait_until(pinged, timeout=40, interval=0.5, what="beat to answer its liveness ping")
    assert sorted(path.name for path in state.glob("celerybeat-schedule*"))
    assert not list(tmp_path.glob("celerybeat-schedule*")), "beat wrote its schedule where it was started"
    assert beat.terminate(timeout=30) == 0, beat.output()[-3000:]


def test_the_dev_simulator_answers_its_health_path_and_stops_on_sigterm(
    tmp_path: Path, started: list[Started]
) -> None:
    port = free_port()
    env = {
        "SIMULATOR_PORT": str(port),
        "PORT": str(free_port()),  # where it delivers webhooks: nothing listens, it retries
        "SMARTCAR_AMT": AMT,
        "SMARTCAR_WEBHOOK_ID": "wh-deploy-test",
    }
    simulator = Started("simulator", procfile("Procfile.dev")["simulator"], env, tmp_path)
    started.append(simulator)
    url = f"http://127.0.0.1:{port}/_sim/health"
    wait_until(lambda: answers(url, simulator), timeout=30, interval=0.1, what="the simulator's /_sim/health")
    assert simulator.terminate(timeout=20) == STOPPED[1], simulator.output()[-3000:]
    assert "Finished server process" in simulator.output(), "uvicorn did not shut down gracefully"
