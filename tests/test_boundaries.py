"""The production packages load neither the simulator nor any test helper."""

from __future__ import annotations

import subprocess
import sys

LOAD_EVERY_MODULE = """
import importlib, pkgutil, sys
import receiver, workers
for package in (receiver, workers):
    for found in pkgutil.iter_modules(package.__path__):
        if found.name != "__main__":
            importlib.import_module(f"{package.__name__}.{found.name}")
print("\\n".join(sys.modules))
"""


def test_receiver_and_workers_do_not_import_the_simulator_or_test_helpers() -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", LOAD_EVERY_MODULE], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(done.stdout.split())
    assert {"receiver.app", "workers.app", "workers.tasks", "workers.cli"} <= loaded
    ours = {
        name
        for name in loaded
        if name.partition(".")[0] in {"receiver", "workers", "smartcar_core", "smartcar_simulator"}
    }
    assert {name for name in ours if name.startswith("smartcar_simulator")} == set()
    assert {name for name in ours if name.endswith(".testing")} == set()
