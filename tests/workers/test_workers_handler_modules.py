"""Your own handlers in a real worker process: a module named in `WORKERS_HANDLER_MODULES` is imported at
start-up and its handler runs after the built-in ones, its result recorded with the event's; a module that
takes a built-in handler's name stops the worker's start (not its first event); and
`WORKERS_LOG_TASK_LINES=true` brings back Celery's per-task lines, which are off by default."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventstore.keys import KeySpace
from testsupport import wait_until
from testsupport.workers import WorkerLauncher, accept_event, event_status, refused_in_one_line

AUDIT = """
from workers.api import HandlerContext, handler


@handler("VEHICLE_STATE", name="fleet-audit", order=500)
def audit(ctx: HandlerContext) -> dict[str, object]:
    return {"vehicle": ctx.vehicle_id, "soc": ctx.signal_value("tractionbattery-stateofcharge")}
"""
TAKEN_NAME = """
from workers.api import handler


@handler("VEHICLE_STATE", name="vehicle-state")
def mine(ctx: object) -> None:
    return None
"""
Maker = Callable[..., dict[str, Any]]


def _python_path(directory: Path) -> str:
    return os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("handler-modules")
    (directory / "fleet_audit_handlers.py").write_text(AUDIT)
    (directory / "taken_name_handlers.py").write_text(TAKEN_NAME)
    return directory


@pytest.fixture(scope="module")
def audited(launch: Callable[..., WorkerLauncher], modules: Path) -> WorkerLauncher:
    launcher = launch(handler_modules=["fleet_audit_handlers"], log_task_lines=True)
    launcher.start("audited", concurrency=2, env={"PYTHONPATH": _python_path(modules)})
    return launcher


def test_a_handler_module_named_in_the_settings_runs_in_the_worker(
    audited: WorkerLauncher, module_prefix: str, car: Maker, state_event: Maker
) -> None:
    client = audited.client
    vehicle = car()
    event_id = accept_event(
        client, module_prefix, state_event(vehicle, {"tractionbattery-stateofcharge": 44})
    )
    wait_until(lambda: event_status(client, module_prefix, event_id) == "done", what="the event done")
    stored = client.hget(KeySpace(module_prefix).event(event_id), "results")
    assert stored is not None
    results = json.loads(stored)
    assert results["fleet-audit"]["result"] == {"vehicle": vehicle["id"], "soc": 44}
    assert results["vehicle-state"]["status"] == "done"  # the built-in ones still run, first


def test_task_lines_are_logged_when_asked_for(audited: WorkerLauncher) -> None:
    # The launcher's ping at start-up is a task like any other: received, then succeeded.
    output = audited.processes[0].output()
    assert "Task workers.ping[" in output
    assert "succeeded in" in output


def test_a_handler_module_taking_a_built_in_name_stops_the_start(
    audited: WorkerLauncher, modules: Path
) -> None:
    env = {
        "PYTHONPATH": _python_path(modules),
        "WORKERS_HANDLER_MODULES": json.dumps(["taken_name_handlers"]),
        "WORKERS_QUEUE": f"{audited.settings.queue}.never-consumed",
    }
    result = audited.run_to_exit(env=env, timeout=30)
    line = refused_in_one_line(result)  # exit 78, as for any other setting that cannot work
    assert "WORKERS_HANDLER_MODULES: taken_name_handlers failed to import" in line
    assert "a handler named 'vehicle-state' is already registered" in line
    assert "ready." not in result.stdout + result.stderr  # it never consumed
