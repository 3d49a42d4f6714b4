"""The workers' Prometheus metrics: what the runs do (per process) and what the store holds (at scrape).

Two kinds, on purpose:

- counters and histograms of this process's work (`WorkerMetrics`: events by outcome, dead letters and
  retries by Smartcar error, Smartcar calls by endpoint with their latency and status, measured in the
  runtime's httpx transport (event hooks would turn off `smartcar_core.transport`'s direct path),
  commands by how they ended, token refreshes), in a registry of their own so that tests can build many.
  Children of labelled metrics are cached: the hot path calls `.inc()` / `.observe()` on a bound child.
  With the prefork pool set `PROMETHEUS_MULTIPROC_DIR` (an empty directory, wiped at each start), as for
  the receiver: every process writes its values there and the worker's `/metrics` sums them;
- gauges of the whole store (`StoreCollector`: whether Redis keeps what it acknowledged, inbox depth and
  the age of its oldest event, runs in progress, parked retries, dead letters, pending and how overdue
  the most overdue one is, vehicles whose events wait for re-consent, the last reconciliation's drift
  by kind), read from
  Redis when Prometheus scrapes, never kept up to date on the hot path. Every worker exports the same
  values: alert on `max()` of them.

`serve` runs `/metrics` on `WORKERS_METRICS_PORT` in the worker's main process (a bootstep).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from eventstore.codec import text, text_map
from eventstore.durability import read_durability
from eventstore.keys import KeySpace
from service_base.logs import get_logger

log = get_logger("workers.metrics")

CALL_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 310.0)
RUN_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 330.0)
Buckets = tuple[float, ...]
Clock = Callable[[], float]
_ID = re.compile(r"^[0-9a-fA-F-]{16,}$|^\d+$")


def endpoint_of(path: str) -> str:
    """A Smartcar URL path as a label: ids and signal codes replaced (`/v2.0/vehicles/{id}/charge`)."""
    parts = path.strip("/").split("/")
    shaped = []
    for position, part in enumerate(parts):
        if position and parts[position - 1] == "signals":
            shaped.append("{code}")
        elif _ID.match(part):
            shaped.append("{id}")
        else:
            shaped.append(part)
    return "/" + "/".join(shaped)


class _Labelled:
    """A labelled metric whose children are made once per label values and kept."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, documentation: str, labels: list[str]) -> _Labelled:
            return _Labelled(Counter(name, documentation, labels, registry=self.registry))

        def histogram(name: str, documentation: str, labels: list[str], buckets: Buckets) -> _Labelled:
            return _Labelled(Histogram(name, documentation, labels, buckets=buckets, registry=self.registry))

        self.events = counter(
            "smartcar_events", "Runs of stored events by outcome and event type.", ["outcome", "type"]
        )
        self.run_seconds = histogram(
            "smartcar_event_run_seconds", "Time of one run of an event.", ["outcome"], RUN_SECONDS_BUCKETS
        )
        self.dead_letters = counter(
            "smartcar_dead_letters",
            "Events dead-lettered, by Smartcar error type and code (the error's class otherwise).",
            ["error_type", "error_code"],
        )
        self.retries = counter(
            "smartcar_event_retries",
            "Runs that ended in a retry (retry, deferred, held), by Smartcar error type and code.",
            ["outcome", "error_type", "error_code"],
        )
        self.calls = counter(
            "smartcar_api_calls",
            "Smartcar HTTP calls by endpoint and HTTP status (the error's class when none came).",
            ["endpoint", "status"],
        )
        self.call_seconds = histogram(
            "smartcar_api_call_seconds",
            "Time to Smartcar's answer (its headers), by endpoint.",
            ["endpoint"],
            CALL_SECONDS_BUCKETS,
        )
        self.api_errors = counter(
            "smartcar_api_errors", "Smartcar errors the workers got, by type and code.", ["type", "code"]
        )
        self.commands = counter(
            "smartcar_commands",
            "Commands by how they ended: sent, benign, confirmed, recorded, withdrawn, ambiguous, failed.",
            ["command", "how"],
        )
        self.token_refreshes = counter(
            "smartcar_token_refreshes",
            "Token refreshes by outcome: refreshed, client_rejected (our client id/secret), grant_refused "
            "(the owner must connect again), failed (Smartcar or the network).",
            ["outcome"],
        )
        self.replays = counter(
            "smartcar_replays",
            "Events a replay job went through, by trigger (operator, resolved) and outcome: replayed, "
            "done_since, in_progress, gone (skipped, with why).",
            ["trigger", "outcome"],
        )
        self.auto_replays = counter(
            "smartcar_auto_replays",
            "Replay jobs started by a RESOLVED VEHICLE_ERROR, by the error's type and code.",
            ["error_type", "error_code"],
        )

    def measured(self, transport: httpx.BaseTransport) -> httpx.BaseTransport:
        """`transport`, counting and timing every Smartcar request it sends (`make_client(wrap=...)`)."""
        return _MeasuredTransport(transport, self)


class _MeasuredTransport(httpx.BaseTransport):
    """Times each request to Smartcar's answer (its headers) and counts it by endpoint and status."""

    def __init__(self, inner: httpx.BaseTransport, metrics: WorkerMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        endpoint = endpoint_of(request.url.path)
        started = time.monotonic()
        try:
            response = self.inner.handle_request(request)
        except Exception as error:
            self.metrics.calls(endpoint, type(error).__name__).inc()
            raise
        self.metrics.call_seconds(endpoint).observe(time.monotonic() - started)
        self.metrics.calls(endpoint, str(response.status_code)).inc()
        return response

    def close(self) -> None:
        self.inner.close()


class StoreCollector(Collector):
    """The store's gauges, read from Redis at each scrape (O(1) commands: a pipeline, then INFO)."""

    def __init__(self, client: redis.Redis, keys: KeySpace, *, clock: Clock = time.time) -> None:
        self.redis = client
        self.keys = keys
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        keys = self.keys
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.llen(keys.inbox)
                pipe.lindex(keys.inbox, -1)
                pipe.zcard(keys.leases)
                pipe.zcard(keys.scheduled)
                pipe.zcard(keys.dead)
                pipe.zcard(keys.pending)
                pipe.zrange(keys.pending, 0, 0, withscores=True)
                pipe.hgetall(keys.fleet_reconcile)
                pipe.zcard(keys.held_vehicles)
                inbox, oldest, running, scheduled, dead, pending, first, reconciled, held = pipe.execute()
            received = self.redis.hget(keys.event(text(oldest)), "received_at") if oldest else None
            durability = read_durability(self.redis)
        except (redis.RedisError, OSError) as error:
            log.warning("metrics_store_unavailable", error=type(error).__name__)
            yield GaugeMetricFamily("smartcar_store_up", "Whether the event store answered this scrape.", 0)
            return
        now = self.clock()
        yield GaugeMetricFamily("smartcar_store_up", "Whether the event store answered this scrape.", 1)
        if durability is not None:  # a Redis that refuses INFO says nothing either way
            yield GaugeMetricFamily(
                "smartcar_store_durable",
                "1 when Redis keeps what it acknowledged (append-only file on, no eviction), else 0.",
                0 if durability else 1,
            )
        yield GaugeMetricFamily("smartcar_inbox_depth", "Events stored and not yet handed to Celery.", inbox)
        age = max(0.0, now - float(received)) if received else 0.0
        yield GaugeMetricFamily(
            "smartcar_inbox_oldest_age_seconds", "Age of the oldest event waiting in the inbox.", age
        )
        yield GaugeMetricFamily("smartcar_runs_in_progress", "Runs holding a lease now.", running)
        yield GaugeMetricFamily("smartcar_scheduled_retries", "Retries parked until they are due.", scheduled)
        yield GaugeMetricFamily("smartcar_dead_letters_stored", "Dead letters in the store now.", dead)
        yield GaugeMetricFamily("smartcar_pending_events", "Events neither done nor failed.", pending)
        overdue = max(0.0, now - float(first[0][1])) if first else 0.0
        yield GaugeMetricFamily(
            "smartcar_pending_overdue_seconds",
            "How far past its expected time the most overdue pending event is (the sweeper's input).",
            overdue,
        )
        yield GaugeMetricFamily(
            "smartcar_vehicles_needing_reconsent",
            "Vehicles whose access was lost (grant refused, revoked, a permission missing): events wait.",
            held,
        )
        yield from _fleet_drift(text_map(reconciled))


def _fleet_drift(report: dict[str, str]) -> Iterator[GaugeMetricFamily]:
    """The last reconciliation's drift by kind (`workers.reconcile`), and when it ran; none before one."""
    if not report:
        return
    what = "Vehicles the last reconciliation found out of step, by kind."
    drift = GaugeMetricFamily("smartcar_fleet_drift", what, labels=["kind"])
    for kind in ("gone", "not_subscribed", "no_tokens", "needs_reconsent"):
        drift.add_metric([kind], float(report.get(kind) or 0))
    yield drift
    yield GaugeMetricFamily(
        "smartcar_fleet_reconciled_at_seconds",
        "When the last reconciliation with Smartcar's connections ran (epoch seconds).",
        float(report.get("at") or 0),
    )


class _Process(Collector):
    """This process's work: its own registry, or every process's with `PROMETHEUS_MULTIPROC_DIR`."""

    def __init__(self, metrics: Callable[[], WorkerMetrics]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call] # - prometheus-client leaves it untyped
            yield from registry.collect()
        else:
            yield from self.metrics().registry.collect()


def exposition_registry(metrics: Callable[[], WorkerMetrics], store: StoreCollector) -> CollectorRegistry:
    """What the worker's `/metrics` shows: this process's (or all processes') work and the store's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Process(metrics))
    registry.register(store)
    return registry


def serve(port: int, address: str, registry: CollectorRegistry) -> Callable[[], None]:
    """`/metrics` on `address:port` on a daemon thread; returns what stops it."""
    server, thread = start_http_server(port, address, registry=registry)
    log.info("metrics_listening", address=address, port=server.server_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        if isinstance(thread, threading.Thread):
            thread.join(5)

    return stop
