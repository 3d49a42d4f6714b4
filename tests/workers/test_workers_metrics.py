"""The workers' metrics: their values after a scripted scenario against the simulator, the store's gauges
read at scrape, and `/metrics` served by a real worker process (or a one-line refusal for a taken port)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from eventstore.keys import KeySpace
from smartcar_core import transport
from smartcar_simulator.testing import RunningSimulator
from testsupport import free_port, wait_until
from testsupport.redis_server import RedisServer
from testsupport.workers import WorkerLauncher, accept_event, event_status, refused_in_one_line
from workers.metrics import StoreCollector, endpoint_of
from workers.process import Outcome, process_event
from workers.runtime import Runtime

Maker = Callable[..., dict[str, Any]]
CHARGING = {"soc": 0.9, "charging": True, "plugged_in": True, "charge_limit": 1.0}
SIGNALS = {
    "tractionbattery-stateofcharge": 90,
    "charge-ischarging": True,
    "charge-ischargingcableconnected": True,
}


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def _event(runtime: Runtime, connect: Maker, state_event: Maker, index: int) -> tuple[dict[str, Any], str]:
    vehicle = connect(runtime, index, **CHARGING)
    return vehicle, accept_event(runtime.redis, runtime.keys.prefix, state_event(vehicle, SIGNALS))


def test_a_scripted_scenario_shows_in_the_counters_and_the_store_gauges(
    sim: RunningSimulator, sim_runtime: Callable[..., Runtime], connect: Maker, state_event: Maker
) -> None:
    runtime = sim_runtime(charging_rule_enabled=True, max_countdown=0)
    registry = runtime.metrics.registry
    # 1. done: the stop command sent.
    _, done = _event(runtime, connect, state_event, 0)
    assert process_event(runtime, done).outcome is Outcome.DONE
    # 2. retried once (a server error), then done.
    vehicle, retried = _event(runtime, connect, state_event, 1)
    server_error = {"type": "SERVER", "code": "INTERNAL", "status": 500}
    sim.control.add_fault(vehicle_id=vehicle["id"], path="charge", method="POST", count=1, error=server_error)
    assert process_event(runtime, retried).outcome is Outcome.RETRY
    assert process_event(runtime, retried).outcome is Outcome.DONE
    # 3. dead-lettered: a never-retry error.
    vehicle, dead = _event(runtime, connect, state_event, 2)
    billing = {"type": "BILLING", "code": "VEHICLE_LIMIT", "status": 430}
    sim.control.add_fault(vehicle_id=vehicle["id"], path="charge", method="POST", count=1, error=billing)
    assert process_event(runtime, dead).outcome is Outcome.DEAD
    # 3b. held for re-consent: refused again after the one refresh (access revoked).
    vehicle, held = _event(runtime, connect, state_event, 3)
    refused = {"type": "AUTHENTICATION", "code": None, "status": 401}
    sim.control.add_fault(vehicle_id=vehicle["id"], path="charge", method="POST", count=2, error=refused)
    assert process_event(runtime, held).detail["outcome"] == "held"
    # 4. a second delivery of a finished event: skipped.
    assert process_event(runtime, done).outcome is Outcome.SKIPPED

    assert _value(registry, "smartcar_events_total", outcome="done", type="VEHICLE_STATE") == 2
    assert _value(registry, "smartcar_events_total", outcome="retry", type="VEHICLE_STATE") == 1
    assert _value(registry, "smartcar_events_total", outcome="dead", type="VEHICLE_STATE") == 1
    assert _value(registry, "smartcar_events_total", outcome="held", type="VEHICLE_STATE") == 1
    assert _value(registry, "smartcar_events_total", outcome="skipped", type="-") == 1
    assert (
        _value(
            registry,
            "smartcar_event_retries_total",
            outcome="retry",
            error_type="SERVER",
            error_code="INTERNAL",
        )
        == 1
    )
    assert (
        _value(registry, "smartcar_dead_letters_total", error_type="BILLING", error_code="VEHICLE_LIMIT") == 1
    )
    held_labels = {"outcome": "held", "error_type": "AUTHENTICATION", "error_code": "-"}
    assert _value(registry, "smartcar_event_retries_total", **held_labels) == 1
    assert _value(registry, "smartcar_api_errors_total", type="AUTHENTICATION", code="-") == 2
    assert _value(registry, "smartcar_commands_total", command="stop_charge", how="sent") == 2
    assert _value(registry, "smartcar_commands_total", command="stop_charge", how="failed") == 3
    assert _value(registry, "smartcar_token_refreshes_total", outcome="refreshed") == 1
    charge = "/v2.0/vehicles/{id}/charge"
    assert _value(registry, "smartcar_api_calls_total", endpoint=charge, status="200") == 2
    assert _value(registry, "smartcar_api_calls_total", endpoint=charge, status="500") == 1
    assert _value(registry, "smartcar_api_calls_total", endpoint=charge, status="401") == 2
    assert _value(registry, "smartcar_api_calls_total", endpoint=charge, status="430") == 1
    assert _value(registry, "smartcar_api_call_seconds_count", endpoint=charge) == 6
    assert _value(registry, "smartcar_event_run_seconds_count", outcome="done") == 2

    gauges = CollectorRegistry()
    gauges.register(StoreCollector(runtime.redis, runtime.keys))
    assert _value(gauges, "smartcar_store_up") == 1
    assert _value(gauges, "smartcar_store_durable") == 0  # the test Redis keeps nothing on disk
    assert _value(gauges, "smartcar_dead_letters_stored") == 1
    assert _value(gauges, "smartcar_inbox_depth") == 4  # stored by the test, never relayed
    assert _value(gauges, "smartcar_inbox_oldest_age_seconds") > 0
    assert _value(gauges, "smartcar_runs_in_progress") == 0
    assert _value(gauges, "smartcar_pending_events") == 1  # each one ended but the held one
    assert _value(gauges, "smartcar_scheduled_retries") == 1  # parked until its owner connects again
    assert _value(gauges, "smartcar_vehicles_needing_reconsent") == 1


def test_a_redis_with_an_append_only_file_and_no_eviction_is_durable(tmp_path: Path, key_prefix: str) -> None:
    with RedisServer(tmp_path) as server, redis.Redis.from_url(server.url()) as client:
        gauges = CollectorRegistry()
        gauges.register(StoreCollector(client, KeySpace(key_prefix)))
        assert _value(gauges, "smartcar_store_durable") == 1


def test_calls_are_measured_in_the_transport_and_keep_the_direct_path(
    make_runtime: Callable[..., Runtime],
) -> None:
    runtime = make_runtime()
    assert transport._is_plain(runtime.http)  # no event hooks: Calls still go straight to the transport
    with pytest.raises(httpx.ConnectError):
        runtime.http.get(f"http://127.0.0.1:{free_port()}/v2.0/vehicles/0b2f6c5e3c1a4e558f7d/odometer")
    labels = {"endpoint": "/v2.0/vehicles/{id}/odometer", "status": "ConnectError"}
    assert _value(runtime.metrics.registry, "smartcar_api_calls_total", **labels) == 1


def test_the_store_gauges_say_when_redis_does_not_answer(key_prefix: str) -> None:
    gauges = CollectorRegistry()
    gauges.register(StoreCollector(redis.Redis(port=1, socket_connect_timeout=0.2), KeySpace(key_prefix)))
    assert _value(gauges, "smartcar_store_up") == 0
    assert gauges.get_sample_value("smartcar_inbox_depth") is None


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/v2.0/vehicles/0b2f6c5e-3c1a-4e55-8f7d-2f0c1b9a7e11/charge", "/v2.0/vehicles/{id}/charge"),
        (
            "/v3/vehicles/0b2f6c5e3c1a4e558f7d/signals/tractionbattery-stateofcharge",
            "/v3/vehicles/{id}/signals/{code}",
        ),
        ("/oauth/token", "/oauth/token"),
        ("/v2.0/vehicles/12345/webhooks/wh-1", "/v2.0/vehicles/{id}/webhooks/wh-1"),
    ],
)
def test_a_url_path_becomes_a_label_without_ids(path: str, endpoint: str) -> None:
    assert endpoint_of(path) == endpoint


def _scrape(url: str) -> dict[str, float]:
    page = httpx.get(url, timeout=5).text
    return {
        sample.name + repr(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


def test_a_worker_serves_its_metrics_and_refuses_a_port_that_is_taken(
    launch: Callable[..., WorkerLauncher], module_prefix: str, car: Maker, state_event: Maker
) -> None:
    prefix = f"{module_prefix}metrics:"
    port = free_port()
    launcher = launch(
        event_key_prefix=prefix, queue=f"{prefix}queue", broker_key_prefix=prefix, metrics_port=port
    )
    worker = launcher.start("measured", concurrency=2)
    event_id = accept_event(launcher.client, prefix, state_event(car(), {"charge-ischarging": True}))
    wait_until(lambda: event_status(launcher.client, prefix, event_id) == "done", timeout=20)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(
        lambda: (
            _scrape(url).get("smartcar_events_total[('outcome', 'done'), ('type', 'VEHICLE_STATE')]") == 1
        ),
        timeout=10,
        what="the done event counted",
    )
    scraped = _scrape(url)
    assert scraped["smartcar_store_up[]"] == 1
    assert scraped["smartcar_inbox_depth[]"] == 0
    assert worker.alive()
    # A second worker on the same port: refused before it consumes, in one line naming the setting.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = str(taken.getsockname()[1])
        line = refused_in_one_line(launcher.run_to_exit(env={"WORKERS_METRICS_PORT": busy}))
    assert f"WORKERS_METRICS_PORT: cannot listen on 0.0.0.0:{busy}" in line
