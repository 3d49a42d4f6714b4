"""Replays through real worker processes and beat: dead letters made by the simulator's faults, replayed by
id, by filter and by time window, at a measured rate, cancelled, resumed after a SIGKILL of the worker and
of the CLI, commands never sent twice unless asked, and the automatic replay when Smartcar says RESOLVED."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eventstore.codec import text
from eventstore.commands import CommandStore
from eventstore.keys import KeySpace
from eventstore.replays import JobStatus, ReplayJob, ReplayStore
from smartcar_simulator import payloads
from smartcar_simulator.testing import RunningSimulator
from testsupport import wait_until
from testsupport.workers import WorkerLauncher, accept_event, settings_environment, store_minted
from workers.cli import app
from workers.sending import send_task
from workers.sweeper import SWEEP_TASK

PROBE = """
from workers.api import HandlerContext, handler


@handler("VEHICLE_STATE", name="replay-probe", order=500)
def probe(ctx: HandlerContext) -> dict[str, object]:
    outcome = ctx.run_command("lock", step="probe:lock")
    ctx.gateway.call(ctx.vehicle_id, lambda v: v.odometer())
    return {"command": outcome.as_result()}
"""
BILLING = {"type": "BILLING", "code": "VEHICLE_LIMIT"}
runner = CliRunner()
Maker = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def workers(
    launch: Callable[..., WorkerLauncher],
    simulator: RunningSimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> WorkerLauncher:
    modules = tmp_path_factory.mktemp("replay-modules")
    (modules / "replay_probe_handlers.py").write_text(PROBE)
    path = os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")]))
    launcher = launch(
        origins=simulator.origins,
        smartcar_client_id=simulator.client_id,
        smartcar_client_secret=simulator.client_secret,
        handler_modules=["replay_probe_handlers"],
        replay_interval=1.0,
        replay_lease=3.0,
        replay_run_seconds=20.0,
        # A killed worker's runs (the events it was running when the test kills it) are taken over in
        # seconds, not after the shipped 20 s lease: the test's own waits stay inside pytest's timeout.
        lease_seconds=4.0,
        lease_renew_interval=1.0,
        lease_check_interval=1.0,
        max_countdown=0,
    )
    launcher.env["PYTHONPATH"] = path
    launcher.start("w1", concurrency=8)
    launcher.start_beat()
    return launcher


@pytest.fixture
def cli_env(workers: WorkerLauncher, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    environment = settings_environment(workers.settings)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


def _keys(workers: WorkerLauncher) -> KeySpace:
    return KeySpace(workers.settings.event_key_prefix)


def _status(workers: WorkerLauncher, event_id: str) -> str:
    value = workers.client.hget(_keys(workers).event(event_id), "status")
    return text(value) if value else ""


def _dead_letters(
    workers: WorkerLauncher, sim: RunningSimulator, count: int, index: int = 0
) -> tuple[str, list[str]]:
    """`count` dead letters of one vehicle: each sent its lock (once), then its odometer read was refused."""
    vehicle = sim.control.vehicles()[index]
    store_minted(workers.tokens, sim.control.mint_tokens(user_id=vehicle["user_id"]))
    sim.control.add_fault(vehicle_id=vehicle["id"], path="odometer", count=count, error=BILLING)
    car = {**vehicle, "make": "TESLA", "model": "Model 3", "year": 2022}
    ids = []
    for _ in range(count):
        now = payloads.now_ms()
        item = payloads.signal_item(
            "charge-ischarging", name="IsCharging", group="Charge", body={"value": True},
            oem_updated_at=now, retrieved_at=now,
        )  # fmt: skip
        body = payloads.vehicle_state_event(car, [item], webhook_id="wh", triggers=["charge-ischarging"])
        ids.append(accept_event(workers.client, workers.settings.event_key_prefix, body))
    wait_until(lambda: all(_status(workers, event_id) == "failed" for event_id in ids), timeout=60)
    return vehicle["id"], ids


def _locks(sim: RunningSimulator, vehicle_id: str) -> int:
    return len(sim.control.requests(vehicle_id=vehicle_id, path="security", method="POST"))


def _job(workers: WorkerLauncher, job_id: str) -> ReplayJob:
    job = ReplayStore(workers.client, _keys(workers)).get(job_id)
    assert job is not None
    return job


def _finished(workers: WorkerLauncher, job_id: str, timeout: float = 60) -> ReplayJob:
    wait_until(lambda: _job(workers, job_id).finished, timeout=timeout)
    return _job(workers, job_id)


def _created(result: Any) -> str:
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stderr.splitlines() if line.startswith("replay job "))
    return str(line.split()[2]).rstrip(":")


def test_a_plan_first_then_a_job_by_ids_that_sends_no_command_twice(
    workers: WorkerLauncher, sim: RunningSimulator, cli_env: dict[str, str]
) -> None:
    vehicle_id, ids = _dead_letters(workers, sim, 3)
    assert _locks(sim, vehicle_id) == 3
    planned = runner.invoke(app, ["replay", *ids, "missing-event", "--json"])
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert plan["events"] == 3
    assert plan["by_type"] == {"VEHICLE_STATE": 3}
    assert plan["by_error"] == {"BILLING:VEHICLE_LIMIT": 3}
    assert plan["skipped"] == {"not stored (never received, or past its retention)": 1}
    assert "SC-Signature" in plan["note"]
    assert "add --yes" in planned.stderr
    assert all(_status(workers, event_id) == "failed" for event_id in ids)  # a plan changes nothing
    job_id = _created(runner.invoke(app, ["replay", *ids, "--rate", "50", "--yes"]))  # follows: plain lines
    job = _finished(workers, job_id)
    assert (job.status, job.counts["replayed"]) == (JobStatus.DONE, 3)
    wait_until(lambda: all(_status(workers, event_id) == "done" for event_id in ids), timeout=30)
    assert _locks(sim, vehicle_id) == 3  # the lock of each (event, step) was done: not sent again
    record = json.loads(runner.invoke(app, ["events", "show", ids[0], "--json"]).stdout)
    assert [entry["outcome"] for entry in record["attempts"]][:2] == ["failed", "replayed"]
    assert record["results"]["replay-probe"]["result"]["command"]["how"] == "recorded"
    again = runner.invoke(app, ["replay", *ids, "--json"])
    assert again.exit_code == 1  # nothing left to replay: each is done
    assert json.loads(again.stdout)["skipped"] == {"done (since it failed, or never failed)": 3}
    shown = json.loads(runner.invoke(app, ["replay", "status", job_id, "--json"]).stdout)
    assert (shown["status"], shown["done"], shown["total"], shown["taken"]) == ("done", 3, 3, 1)
    assert runner.invoke(app, ["replay", "status", "nope"]).exit_code == 1
    assert runner.invoke(app, ["replay"]).exit_code == 2
    assert runner.invoke(app, ["replay", ids[0], "--since", "1h"]).exit_code == 2
    assert runner.invoke(app, ["replay", ids[0], "--rate", "0"]).exit_code == 2
    assert runner.invoke(app, ["replay", "--since", "soon"]).exit_code == 2


def test_a_time_window_replays_the_failed_at_the_rate_and_an_event_is_in_one_job(
    workers: WorkerLauncher, sim: RunningSimulator, cli_env: dict[str, str]
) -> None:
    vehicle_id, ids = _dead_letters(workers, sim, 50, index=1)
    locks = _locks(sim, vehicle_id)
    args = ["replay", "--since", "10m", "--vehicle", vehicle_id, "--rate", "20"]
    plan = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert (plan["events"], plan["estimated_seconds"]) == (50, 2.5)
    job_id = _created(runner.invoke(app, [*args, "--yes", "--detach"]))
    other = runner.invoke(app, [*args, "--json"])
    assert other.exit_code == 1
    skipped = json.loads(other.stdout)["skipped"]
    assert set(skipped) == {f"already in replay {job_id}"}  # those it replayed already are failed no more
    assert skipped[f"already in replay {job_id}"] >= 40
    job = _finished(workers, job_id)
    took = float(job.fields["finished_at"]) - float(job.fields["started_at"])
    assert took >= 2.2, took  # 50 at 20 a second: the 50th goes 2.45 s after the first
    assert job.counts["replayed"] == 50
    wait_until(lambda: all(_status(workers, event_id) == "done" for event_id in ids), timeout=60)
    assert _locks(sim, vehicle_id) == locks


def test_cancel_stops_a_job_and_resend_sends_again_and_is_recorded(
    workers: WorkerLauncher, sim: RunningSimulator, cli_env: dict[str, str]
) -> None:
    vehicle_id, ids = _dead_letters(workers, sim, 12, index=2)
    job_id = _created(runner.invoke(app, ["replay", *ids[:10], "--rate", "2", "--yes", "--detach"]))
    wait_until(lambda: _job(workers, job_id).cursor >= 2, timeout=30)
    cancelled = runner.invoke(app, ["replay", "cancel", job_id])
    assert cancelled.exit_code == 0, cancelled.output
    job = _job(workers, job_id)
    assert job.status is JobStatus.CANCELLED
    left = [event_id for event_id in ids[:10] if _status(workers, event_id) == "failed"]
    assert len(left) >= 10 - job.cursor
    assert runner.invoke(app, ["replay", "cancel", "nope"]).exit_code == 1

    locks = _locks(sim, vehicle_id)
    job_id = _created(runner.invoke(app, ["replay", ids[10], "--resend-commands", "--yes", "--detach"]))
    _finished(workers, job_id)
    wait_until(lambda: _status(workers, ids[10]) == "done", timeout=30)
    assert _locks(sim, vehicle_id) == locks + 1  # sent again, as asked
    record = json.loads(runner.invoke(app, ["events", "show", ids[10], "--json"]).stdout)
    replayed = next(entry for entry in record["attempts"] if entry["outcome"] == "replayed")
    assert replayed["resend_commands"] == ["probe:lock"]
    assert replayed["reason"] == "operator replay (commands resent)"
    step = CommandStore(workers.client, _keys(workers), retention=60).read(ids[10], "probe:lock")
    assert step.fields["resend_job"] == job_id


def test_a_job_goes_on_after_the_cli_and_the_worker_are_killed(
    workers: WorkerLauncher, sim: RunningSimulator, cli_env: dict[str, str], tmp_path: Path
) -> None:
    vehicle_id, ids = _dead_letters(workers, sim, 40, index=3)
    locks = _locks(sim, vehicle_id)
    with (tmp_path / "out").open("wb") as out, (tmp_path / "err").open("wb") as err:
        cli = subprocess.Popen(  # noqa: S603 - our own interpreter and command line
            [
                sys.executable,
                "-c",
                "from workers.cli import app; app()",
                "replay",
                *ids,
                "--rate",
                "8",
                "--yes",
            ],
            env={**os.environ, **cli_env},
            stdout=out,
            stderr=err,
        )
    wait_until(lambda: "replay job " in (tmp_path / "err").read_text(), timeout=30)
    job_id = (tmp_path / "err").read_text().split("replay job ")[1].split(":")[0]
    wait_until(lambda: _job(workers, job_id).cursor >= 5, timeout=30)
    cli.send_signal(signal.SIGKILL)
    cli.wait(10)
    worker = next(process for process in workers.processes if process.name == "w1")
    worker.kill()
    stopped_at = _job(workers, job_id).cursor
    assert stopped_at < 40
    # w2 takes the job once the dead worker's lease ends. What the dead worker's relay had claimed but not
    # begun (a kill just after the job replayed an event often lands there) is queued with no run: the
    # sweeper re-enqueues it after WORKERS_SWEEP_AFTER (120 s as shipped, beat's sweep every 30 s), here
    # 3 s, with the sweep task sent while the test waits.
    workers.start("w2", concurrency=8, env={"WORKERS_SWEEP_AFTER": "3"})
    job = _finished(workers, job_id, timeout=90)
    assert job.status is JobStatus.DONE
    assert job.counts["replayed"] == 40
    assert int(job.fields["takes"]) >= 2

    def all_done() -> bool:
        if all(_status(workers, event_id) == "done" for event_id in ids):
            return True
        send_task(workers.settings, SWEEP_TASK)
        return False

    wait_until(all_done, timeout=40, interval=1.0, what="every replayed event done")
    for event_id in ids:  # each replayed once by the job
        history = json.loads(workers.client.hget(_keys(workers).event(event_id), "history") or b"[]")
        assert [entry["outcome"] for entry in history].count("replayed") == 1
    assert _locks(sim, vehicle_id) == locks
    assert "replay " in (tmp_path / "out").read_text()  # it printed plain lines (not a terminal)


def test_a_resolved_vehicle_error_replays_that_vehicles_dead_letters_of_that_error(
    workers: WorkerLauncher, sim: RunningSimulator, cli_env: dict[str, str]
) -> None:
    vehicle_id, ids = _dead_letters(workers, sim, 2, index=4)
    vehicle = sim.control.vehicle(vehicle_id)
    car = {**vehicle, "make": "TESLA", "model": "Model 3", "year": 2022}
    error = payloads.vehicle_error_event(car, [{**BILLING, "state": "ERROR"}], webhook_id="wh")
    accept_event(workers.client, workers.settings.event_key_prefix, error)
    resolved = payloads.vehicle_error_event(car, [{**BILLING, "state": "RESOLVED"}], webhook_id="wh")
    resolved_id = accept_event(workers.client, workers.settings.event_key_prefix, resolved)
    wait_until(lambda: all(_status(workers, event_id) == "done" for event_id in ids), timeout=60)
    record = json.loads(runner.invoke(app, ["events", "show", resolved_id, "--json"]).stdout)
    job_id = record["results"]["auto-replay"]["result"]["replays"]["BILLING:VEHICLE_LIMIT"]["job"]
    assert _finished(workers, job_id).counts["replayed"] == 2
    shown = runner.invoke(app, ["events", "show", ids[0]], env={"COLUMNS": "300"})
    assert "replayed because Smartcar resolved BILLING:VEHICLE_LIMIT" in shown.stdout
