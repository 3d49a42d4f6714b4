"""Fixtures of the chaos suite: the scale, and a stack of real processes per scenario, always torn down.

The stack starts processes the way the workers' benchmark does (`bench/workers_stack.py`,
`bench/workers_poster.py`): bench/ is put on the import path here, as `python bench/x.py` puts it for the
benchmark's own modules (mypy finds them through `mypy_path`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))

from chaos.scale import Scale, current_scale  # noqa: E402 - after bench/ is importable
from chaos.stack import ChaosStack  # noqa: E402

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each scenario gets the time limit of the scale it runs at, in place of the suite's 60 s."""
    limit = current_scale().timeout
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.timeout(limit))


@pytest.fixture(scope="session")
def scale() -> Scale:
    """The one scale setting of the suite (`CHAOS_SCALE`, see `chaos.scale`)."""
    return current_scale()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., ChaosStack]]:
    """`make_stack(vehicles=..., latency=..., receiver_env=..., **worker_settings)`: a stack, not started;
    every process of it is stopped, every key deleted and its Redis killed after the test, pass or fail."""
    made: list[ChaosStack] = []

    def make(**options: Any) -> ChaosStack:
        stack = ChaosStack(tmp_path / f"stack{len(made)}", **options)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.close()
