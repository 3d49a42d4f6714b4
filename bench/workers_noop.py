"""A task that does nothing, loaded into the benchmark's worker (`WORKERS_HANDLER_MODULES`): the ceiling
of what one worker process can consume, with our Celery configuration, when the work costs nothing."""

from __future__ import annotations

from workers.app import app


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    """Nothing: the consumer's own cost is all that is measured."""
