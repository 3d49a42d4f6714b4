"""One log shape across the services: a worker run with `LOG_FORMAT=json` writes Celery's own log lines
in the shape of ours, which is the receiver's (`event`, `level`, `timestamp`, `logger_name`)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from service_base.logs import bound_logger, configure_logging
from testsupport.workers import WorkerLauncher

SHAPE = {"event", "level", "timestamp", "logger_name"}


def receiver_line_keys() -> set[str]:
    out = io.StringIO()
    configure_logging("json", "info", out)
    bound_logger("receiver").info("webhook", event_id="e-1")
    line: dict[str, Any] = json.loads(out.getvalue())
    return set(line) - {"event_id"}


def test_celery_lines_are_json_in_the_shape_of_ours(launch: Callable[..., WorkerLauncher]) -> None:
    assert receiver_line_keys() == SHAPE
    launcher = launch()
    worker = launcher.start("json-logs", concurrency=2, env={"LOG_FORMAT": "json"})
    worker.stop()
    output = worker.output()
    # Celery's own format would be "[2026-12-01 09:30:43,336: INFO/MainProcess] ..."
    assert not [line for line in output.splitlines() if line.startswith("[20")]
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert all(set(line) >= SHAPE for line in lines), lines
    writers = {line["logger_name"] for line in lines}
    assert "celery.apps.worker" in writers  # "... ready."
    assert "workers.relay" in writers  # ours: relay_started, relay_stopped
    assert {"relay_started", "relay_stopped"} <= {line["event"] for line in lines}


def test_console_logs_leave_celerys_format_alone(launch: Callable[..., WorkerLauncher]) -> None:
    launcher = launch()
    worker = launcher.start("console-logs", concurrency=2, env={"LOG_FORMAT": "console"})
    worker.stop()
    assert any(line.startswith("[20") and "ready." in line for line in worker.output().splitlines())
