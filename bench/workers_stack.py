"""The processes of the workers' benchmark: the simulator, the receiver and worker processes.

Each runs in a process of its own (never sharing the GIL with the measuring script), logs to a file in
the run's directory, and is stopped at the end of the run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from testsupport import wait_until

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 30.0


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    def answering() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{url} did not start:\n{log.read_text(errors='replace')[-2000:]}")
        with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - local
            return bool(answer.status == 200)

    try:
        wait_until(answering, timeout=START_SECONDS, interval=0.1, what=url, ignoring=(OSError,))
    except AssertionError:
        raise RuntimeError(f"{url} did not answer in {START_SECONDS:g} s") from None


@contextlib.contextmanager
def process(
    command: list[str], env: Mapping[str, str], log: Path, *, ready_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        child = subprocess.Popen(  # noqa: S603 - our own command line
            command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        if ready_url is not None:
            wait_http(ready_url, child, log)
        yield child
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


def simulator_command(port: int, vehicles: int, latency: float) -> list[str]:
    return [
        sys.executable, "-m", "smartcar_simulator", "--host", HOST, "--port", str(port),
        "--vehicles", str(vehicles), "--seed", "1", "--latency", str(latency), "--log-level", "warning",
    ]  # fmt: skip


def receiver_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "receiver.app:app", "--host", HOST, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
