"""The Celery task of the replay jobs: beat sends it every WORKERS_REPLAY_INTERVAL, the CLI once at `--yes`.

One task runs one job (the first due that it can own) for up to WORKERS_REPLAY_RUN_SECONDS, then sends
itself again when the job is not finished, so a long replay goes on at once on whichever worker takes
the message, and no worker thread is held for the whole of it. Several jobs run side by side on several
tasks. The services come from the process's `assembly`.
"""

from __future__ import annotations

from eventstore.replays import ReplayStore
from workers.app import app, assembly
from workers.replay import REPLAY_TASK, ReplayRunner


@app.task(name=REPLAY_TASK, ignore_result=True)
def replay_jobs() -> dict[str, int]:
    """Run a due replay job for a while; its counts by outcome (for logs), empty when none was due."""
    runtime = assembly.runtime()
    runner = ReplayRunner(ReplayStore(runtime.redis, runtime.keys), runtime.settings, metrics=runtime.metrics)
    report = runner.run_due()
    if report is None:
        return {}
    if not report.finished:
        replay_jobs.apply_async(queue=runtime.settings.queue)
    return dict(report.counts)
