"""The receiver's side of the event store: one EVALSHA per event that deduplicates, stores and enqueues it.

The script and its arguments are the event store's (`eventstore.scripts.ACCEPT`,
`eventstore.events.accept_arguments`): it is loaded at start-up and then called by its SHA; a Redis that
lost its script cache (restart, SCRIPT FLUSH, failover) gets it again on the NOSCRIPT reply.

Deliveries that arrive together share their round trip: `accept` queues its call and awaits its own reply,
and a flush scheduled on the next turn of the event loop writes everything queued by then on one pooled
connection, as one buffer of EVALSHA commands, and reads the replies in order (no waiting is added; under
load a flush carries a few to a few dozen events). Each event still gets its own script run and its own
answer. redis-py's per-command cost (argument encoding, pipeline bookkeeping, a timeout per read) is most
of a receiver's CPU at thousands of requests a second: the commands are packed here, and redis-py's pool,
connection and hiredis parser do the rest.

Each delivery's arguments are encoded when it is queued, in its own caller: an argument that cannot be
encoded (text holding a lone surrogate, which `parse_envelope` refuses before this) fails that delivery
alone, never the flush that would carry its neighbours.

Retrying a batch after a connection error is safe: an event the first attempt stored is a duplicate the
second time, not a second copy.
"""

from __future__ import annotations

import asyncio
import hashlib

from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from eventstore.events import accept_arguments
from eventstore.keys import KeySpace
from eventstore.scripts import ACCEPT, ACCEPT_KEY_COUNT
from smartcar_core.events import Envelope

MAX_BATCH = 256
# A queued call: its arguments, already in RESP (`_pack`), how many there are, and its caller's future.
_Call = tuple[bytes, int, "asyncio.Future[int]"]
_NUMKEYS = b"$%d\r\n%d\r\n" % (len(str(ACCEPT_KEY_COUNT)), ACCEPT_KEY_COUNT)  # EVALSHA's numkeys, in RESP


class EventWriter:
    def __init__(self, redis: Redis, keyspace: KeySpace, *, dedupe_seconds: int, retries: int = 1) -> None:
        self._redis = redis
        self._pool: ConnectionPool = redis.connection_pool
        self._retries = retries
        self.keyspace = keyspace
        self._dedupe_seconds = dedupe_seconds
        self._sha = hashlib.sha1(ACCEPT.encode(), usedforsecurity=False).hexdigest()
        self._queue: list[_Call] = []  # not empty exactly while a flush that will take it is scheduled
        self._flushes: set[asyncio.Task[None]] = set()

    async def load_script(self) -> None:
        self._sha = await self._redis.script_load(ACCEPT)

    async def accept(self, envelope: Envelope, raw: bytes, received_at: float) -> bool:
        """Store and enqueue `envelope` unless its eventId is known: True when new, False for a duplicate.

        Raises `redis.RedisError` when Redis cannot be reached or refuses the write (nothing is acknowledged),
        and `UnicodeEncodeError`, before anything is queued, for a field that is not valid UTF-8 text.
        """
        args = accept_arguments(
            self.keyspace, envelope, raw, received_at=received_at, dedupe_seconds=self._dedupe_seconds
        )
        packed = _pack(args)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((packed, len(args), future))
        if len(self._queue) == 1:
            self._start_flush()
        return await future == 1

    async def drain(self) -> None:
        """Wait for the flushes in flight (at shutdown, so that no stored event goes unanswered)."""
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    def _start_flush(self) -> None:
        task = asyncio.create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        if self._queue:  # more than one batch's worth waits: the next flush takes it
            self._start_flush()
        try:
            results = await self._results(batch)
        except (RedisError, OSError) as error:
            _fail(batch, error)
            return
        except BaseException as error:  # cancelled at shutdown, or a bug: never leave a caller hanging
            _fail(batch, RedisError(f"event store call interrupted ({type(error).__name__})"))
            raise
        for (_packed, _count, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller went away (its request was cancelled)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(int(result))  # type: ignore[call-overload] # - EVALSHA answers an integer

    async def _results(self, batch: list[_Call]) -> list[object]:
        results = await self._run(batch)
        missing = [index for index, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            await self.load_script()
            rerun = await self._run([batch[index] for index in missing])
            for index, result in zip(missing, rerun, strict=True):
                results[index] = result
        return results

    async def _run(self, batch: list[_Call]) -> list[object]:
        sha = self._sha.encode()
        parts: list[bytes] = []
        for args, count, _future in batch:
            parts += (_head(sha, count), args)
        packed = b"".join(parts)
        retries = self._retries
        while True:
            connection = await self._pool.get_connection()  # type: ignore[no-untyped-call] # - redis-py
            # The connection goes back to the pool with every reply read or closed: an error reply is read
            # whole, and redis-py closes it on anything else a send or a read raises (timeout, reset,
            # LOADING, a bad reply, cancellation), so no reply is left for the connection's next user.
            try:
                await connection.send_packed_command(packed)
                results: list[object] = []
                for _ in batch:
                    try:
                        results.append(await connection.read_response())
                    except ResponseError as error:  # this event's script failed; the others' replies follow
                        results.append(error)
            except (RedisConnectionError, RedisTimeoutError):
                # redis-py has closed the connection; a new one is opened for the retry
                if retries == 0:
                    raise
                retries -= 1
            else:
                return results
            finally:
                await self._pool.release(connection)


def _pack(args: tuple[bytes | str, ...]) -> bytes:
    """The keys and arguments of one EVALSHA in RESP, as redis-py's encoder would write them (text as UTF-8:
    `UnicodeEncodeError` for a lone surrogate; bytes, the raw body among them, exactly as they are)."""
    parts = []
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _head(sha: bytes, count: int) -> bytes:
    """What comes before `count` packed keys and arguments in `EVALSHA <sha> 4 <keys and args>`."""
    return b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%b\r\n%b" % (count + 3, len(sha), sha, _NUMKEYS)


def _fail(batch: list[_Call], error: BaseException) -> None:
    for _packed, _count, future in batch:
        if not future.done():
            future.set_exception(error)
