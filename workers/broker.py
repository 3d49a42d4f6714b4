"""Kombu's Redis transport, with one synchronous Redis client per channel instead of one per command.

A worker's consumer is one thread: it pops each message, records it as unacknowledged, hands it to the
pool, and (late acks) removes it from the unacknowledged index when the task ends. Kombu builds a new
`redis.Redis` object (with its table of ~300 response callbacks) for each of those steps and for every
publish: a tenth of a busy worker's CPU, most of it on that one thread. A client over a connection pool
is thread-safe, so the channel keeps one, and makes a new one only when kombu replaces the pool (after a
connection error). Everything else is kombu's. Selected with `broker_transport` (see `workers.app`).

(Acknowledging in batches from a background thread was tried as well: no gain measurable above the
machine's noise, so kombu's acknowledgement stays as it is.)

`_create_client` is private to kombu: `problems(channel)` checks at start-up that kombu still has it as
overridden here, and still takes its per-command clients from it; a worker refuses to start otherwise.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any, cast

import redis
from kombu.transport import redis as kombu_redis

_OVERRIDDEN = ["self", "asynchronous"]


class Channel(kombu_redis.Channel):
    _sync_client: Any = None
    _sync_pool: Any = None

    def _connparams(self, asynchronous: bool = False) -> Any:
        # After two drops in a row kombu can close the connection and then, restoring the unacked
        # messages, ask the closed one for a new pool: `connection.client` is None, and kombu's
        # AttributeError ('NoneType' object has no attribute 'hostname') stops the consumer (kombu #582,
        # #970). Said as what it is, a lost connection, the consumer reconnects; what was unacked comes
        # back after the visibility timeout, and the leases and the sweeper take the events over sooner.
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection is closed")
        parent = cast("Any", super())
        return parent._connparams(asynchronous=asynchronous)  # noqa: SLF001 - the override

    def _create_client(self, asynchronous: bool = False) -> Any:
        parent = cast("Any", super())
        if asynchronous:
            return parent._create_client(asynchronous=True)  # noqa: SLF001 - the override
        pool = self.pool
        if self._sync_client is None or self._sync_pool is not pool:
            self._sync_client = parent._create_client(asynchronous=False)  # noqa: SLF001 - the override
            self._sync_pool = pool
        return self._sync_client


class Transport(kombu_redis.Transport):
    Channel = Channel


def hook_problems(kombu_channel: type) -> list[str]:
    """What no longer matches the override above in kombu's redis `Channel` class (empty: nothing)."""
    create_client = getattr(kombu_channel, "_create_client", None)
    if create_client is None:
        return ["kombu's redis Channel has no _create_client any more"]
    found = []
    signature = inspect.signature(create_client)
    if list(signature.parameters) != _OVERRIDDEN or signature.parameters["asynchronous"].default is not False:
        found.append(f"kombu's redis Channel._create_client{signature} changed")
    if not isinstance(inspect.getattr_static(kombu_channel, "pool", None), property):
        found.append("kombu's redis Channel has no pool property any more")
    connparams = getattr(kombu_channel, "_connparams", None)
    if connparams is None or list(inspect.signature(connparams).parameters) != _OVERRIDDEN:
        found.append("kombu's redis Channel._connparams(self, asynchronous) changed")
    return found


def problems(channel: Any) -> list[str]:
    """Whether kombu's Redis transport still works as `Channel` assumes, on a live broker channel."""
    found = hook_problems(kombu_redis.Channel)
    if not found and not isinstance(channel, Channel):
        found.append(f"the broker channel is a {type(channel).__name__}, not workers.broker.Channel")
    if not found:
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            if first is not second:
                found.append("kombu no longer takes its per-command Redis clients from _create_client")
    return [
        f"{problem} (kombu {version('kombu')}): workers.broker overrides it; update it, or drop "
        "broker_transport from workers.app to run on kombu's own transport"
        for problem in found
    ]
