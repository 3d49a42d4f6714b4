"""Calls of one script that many threads make at once, sent to Redis together, each with its own answer.

Why: a worker runs events on a couple of hundred threads, and each run begins and ends with a script
call (`EventStore.begin`, `EventStore.done`). Alone, every call is a round trip of its own: redis-py's
connection checkout and health check, a send and a receive, and the thread giving the GIL up and taking
it back while it waits. With two hundred threads those were the largest part of a worker's CPU per event
(bench/README.md, "Workers"). Here the calls that arrive while one is on its way wait for it, and then go
out together in one pipeline: one round trip for all of them. Each call is still its own script run,
atomic as before, and each caller gets its own answer or its own error; only the round trip is shared.

No thread is added. The first caller that finds nothing on its way sends (it leads); callers arriving
meanwhile queue up and wait. When the leader's batch is answered, the first of those still waiting is
woken to lead the next batch, so no caller sends for others more than once. A caller alone waits for
nothing: its call goes out at once, as a plain script call would.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError

Keys = Sequence[str | bytes]
Arguments = Sequence[str | bytes | int | float]


class _Call:
    """One call, and the latch its caller waits on: a lock taken at once, given back by `wake`. A lock,
    not a `threading.Event`: the event's condition and waiter cost a tenth of a worker's CPU (py-spy)."""

    __slots__ = ("_latch", "answer", "args", "error", "keys", "leads")

    def __init__(self, keys: Keys, args: Arguments) -> None:
        self.keys, self.args = keys, args
        self.answer: Any = None
        self.error: BaseException | None = None
        self.leads = False  # woken to send the next batch, not with its answer
        self._latch = threading.Lock()
        self._latch.acquire()

    def wait(self) -> None:
        """Until `wake` (each wait is matched by one wake)."""
        self._latch.acquire()

    def wake(self) -> None:
        self._latch.release()


class SharedCalls:
    """`script` (Lua text) called as `calls(keys=..., args=...)`, like redis-py's registered script, by
    any number of threads; calls made at the same time share a round trip."""

    def __init__(self, client: redis.Redis, script: str) -> None:
        self._client = client
        self._script = client.register_script(script)
        self._lock = threading.Lock()
        self._waiting: list[_Call] = []
        self._sending = False

    def __call__(self, *, keys: Keys, args: Arguments) -> Any:
        call = _Call(keys, args)
        with self._lock:
            self._waiting.append(call)
            leads = not self._sending
            self._sending = True
        if not leads:
            call.wait()
            leads, call.leads = call.leads, False
        if leads:
            self._send_next()
            call.wait()  # answered by the batch just sent
        if call.error is not None:
            raise call.error
        return call.answer

    def _send_next(self) -> None:
        """Send what waits now; then wake the first caller still waiting to send the rest, if any."""
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self._send(batch)
        finally:
            for call in batch:
                call.wake()
            with self._lock:
                if self._waiting:
                    self._waiting[0].leads = True
                    self._waiting[0].wake()
                else:
                    self._sending = False

    def _send(self, batch: list[_Call]) -> None:
        if len(batch) == 1:
            self._alone(batch[0])
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for call in batch:
                    pipe.evalsha(self._script.sha, len(call.keys), *call.keys, *call.args)
                answers = pipe.execute(raise_on_error=False)
        except BaseException as error:  # noqa: BLE001 - the round trip failed: every caller in it hears so
            for call in batch:
                call.error = error
            return
        for call, answer in zip(batch, answers, strict=True):
            if isinstance(answer, NoScriptError):  # Redis lost its scripts (restart, flush): load, call again
                self._alone(call)
            elif isinstance(answer, BaseException):
                call.error = answer
            else:
                call.answer = answer

    def _alone(self, call: _Call) -> None:
        """One call by the registered script, which loads the script again on NOSCRIPT."""
        try:
            call.answer = self._script(keys=call.keys, args=call.args)
        except BaseException as error:  # noqa: BLE001 - handed to its caller, raised there
            call.error = error
