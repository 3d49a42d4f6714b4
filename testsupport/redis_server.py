"""A `redis-server` of a test's own, for scenarios that stop, kill and restart Redis.

    with RedisServer(tmp_path) as server:          # a free port, AOF (appendfsync everysec), data in tmp_path
        client = redis.Redis.from_url(server.url(0))
        server.kill()                              # SIGKILL: what the AOF holds is all that is left
        server.start()                             # the same port and directory: the AOF is loaded again

Nothing is saved by RDB snapshots (`save ""`): what comes back after a restart is the AOF's doing. The
server's own log is `redis.log` in the directory; `close` (the block's end) kills it if it still runs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from testsupport import free_port, wait_until
from testsupport.processes import listening

START_SECONDS = 20.0
Fsync = Literal["always", "everysec", "no"]


class RedisServer:
    def __init__(self, directory: Path, *, appendfsync: Fsync = "everysec", port: int | None = None) -> None:
        self.directory = directory
        self.appendfsync = appendfsync
        self.port = port or free_port()
        self.log_path = directory / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False
        self.restarts = 0

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (or start again, on the same port and directory) and wait until it answers PING. If another
        process took the port `free_port` gave out, a first start tries another port; a restart fails."""
        for _attempt in range(3):
            self._start()
            if self.process is not None and listening(self.process.pid, self.port):
                if self.started:
                    self.restarts += 1
                self.started = True
                return
            self.kill()
            if self.started:
                break
            self.port = free_port()
        raise RuntimeError(f"another process holds port {self.port}: whatever answers there is not ours")

    def _start(self) -> None:
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
            "--maxmemory-policy", "noeviction", "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # noqa: S603 - our own command line
        with redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1) as client:

            def answers() -> bool:
                if not self.running:
                    raise AssertionError(f"redis-server exited:\n{self.log()[-2000:]}")
                return bool(client.ping())

            wait_until(
                answers,
                timeout=START_SECONDS,
                interval=0.05,
                what=f"redis-server on port {self.port}",
                ignoring=(redis.RedisError,),
            )

    def shutdown(self) -> None:
        """SHUTDOWN: Redis flushes and fsyncs its AOF, then exits."""
        # No retry: the closed connection is SHUTDOWN's answer (redis-py swallows it), not a reason to
        # try again against a port that now refuses.
        with redis.Redis(port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0)) as client:
            client.shutdown()
        self._wait()

    def kill(self) -> None:
        """SIGKILL: no flush, no fsync; what reached the AOF file is what a restart finds."""
        if self.running and self.process is not None:
            self.process.kill()
        self._wait()

    def _wait(self) -> None:
        if self.process is not None:
            self.process.wait(15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.kill()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
