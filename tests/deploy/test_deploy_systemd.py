"""deploy/systemd: each unit read and held to the contract (settings file, restart on failure but not on a
configuration error's exit code, a stop timeout the process needs, no root, beat's state directory, the
receiver's flags as in the Procfile), then `systemd-analyze verify` on it, with the programs pointed at
this virtualenv (systemd-analyze checks that they exist)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.support import BIN, DEPLOY, after, command_problems, normalise, procfile
from receiver.app import STARTUP_FAILURE
from workers.settings import WorkerSettings

UNITS = DEPLOY / "systemd"
INSTALLED = "/opt/smartcar-webhooks/bin/"
CONFIGURATION_ERROR = {"smartcar-receiver.service": STARTUP_FAILURE}  # uvicorn's "failed to start"
CONFIGURATION_ERROR |= dict.fromkeys(
    ["smartcar-worker@.service", "smartcar-beat.service", "smartcar-admin-api.service"], 78
)  # EX_CONFIG (the admin API's also when ADMIN_TOKEN is unset: off, and not restarted)
TASK_TIME_LIMIT = float(WorkerSettings.model_fields["task_time_limit"].default)


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment, method-assign] # - systemd's keys are case-sensitive
    parser.read(UNITS / name)
    return parser


PREFLIGHT = [f"{INSTALLED}python", "-m", "receiver", "preflight", "&&", "exec"]


def command(service: configparser.SectionProxy) -> list[str]:
    """The unit's program and arguments: the receiver's runs under `/bin/sh -c` after its preflight
    (so that a refusal is the main process's exit 3), the others run as they are."""
    words = normalise(service["ExecStart"].replace("%", "$"))  # specifiers: not words of the command
    if words[:2] != ["/bin/sh", "-c"]:
        return words
    inner = normalise(words[2])
    assert inner[: len(PREFLIGHT)] == PREFLIGHT, inner
    return inner[len(PREFLIGHT) :]


def test_there_is_a_unit_for_each_process() -> None:
    assert {path.name for path in UNITS.glob("*.service")} == set(CONFIGURATION_ERROR)


@pytest.mark.parametrize("name", sorted(CONFIGURATION_ERROR))
def test_each_unit_restarts_on_failure_but_not_on_a_configuration_error(name: str) -> None:
    service = unit(name)["Service"]
    assert service["EnvironmentFile"] == "/etc/smartcar-webhooks/env"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == str(CONFIGURATION_ERROR[name])
    assert service["KillMode"] == "mixed"
    assert service["DynamicUser"] == "yes"
    assert service["User"] not in {"root", "0"}
    assert service["NoNewPrivileges"] == "yes"
    words = command(service)
    assert words[0].startswith(INSTALLED)
    assert command_problems(words) == []
    assert unit(name)["Install"]["WantedBy"] == "multi-user.target"


def test_the_receiver_unit_runs_the_procfile_command_with_a_fresh_metrics_directory() -> None:
    service = unit("smartcar-receiver.service")["Service"]
    web = after(normalise(procfile()["web"]), "uvicorn")
    assert normalise(service["ExecStart"])[:2] == ["/bin/sh", "-c"]  # the preflight, then uvicorn
    assert after(command(service), "uvicorn") == web
    graceful = float(web[web.index("--timeout-graceful-shutdown") + 1])
    assert float(service["TimeoutStopSec"]) > graceful
    # A descriptor per connection: well above the requests in flight that --limit-concurrency allows.
    assert int(service["LimitNOFILE"]) >= 4 * int(web[web.index("--limit-concurrency") + 1])
    # RuntimeDirectory is created empty at each start and removed at stop.
    assert service["RuntimeDirectory"] == "smartcar-receiver"
    assert "PROMETHEUS_MULTIPROC_DIR=%t/smartcar-receiver" in service["Environment"]


def test_the_worker_unit_lets_a_running_task_finish_and_names_each_instance() -> None:
    service = unit("smartcar-worker@.service")["Service"]
    assert float(service["TimeoutStopSec"]) > TASK_TIME_LIMIT
    words = service["ExecStart"].split()
    assert words[words.index("--hostname") + 1] == "worker%i@%H"


def test_the_beat_unit_keeps_its_schedule_in_its_state_directory() -> None:
    service = unit("smartcar-beat.service")["Service"]
    words = service["ExecStart"].split()
    assert words[words.index("--schedule") + 1] == f"%S/{service['StateDirectory']}/celerybeat-schedule"
    assert "--enable-remote-control" in words


def test_systemd_analyze_verifies_each_unit(tmp_path: Path) -> None:
    """Where systemd-analyze is (Debian's systemd package, on this project's machines); elsewhere the checks
    above are what runs, and this test says it was skipped."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not found (apt-get install systemd): the units were checked statically")
    for path in UNITS.glob("*.service"):
        (tmp_path / path.name).write_text(path.read_text().replace(INSTALLED, f"{BIN}/"))
    instances = [name.replace("@.", "@1.") for name in sorted(CONFIGURATION_ERROR)]
    verified = subprocess.run(  # noqa: S603 - systemd's own tool on our unit files
        [analyze, "verify", "--man=no", *(str(tmp_path / name) for name in instances)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr
