"""The Celery tasks: process_event, the sweeper, the token refresher, and a ping.

Each task takes what it needs from the process's `assembly` (`workers.assembly`): the runtime, the
publisher, the settings, all built once per process.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task

from service_base.logs import get_logger
from workers.app import app, assembly
from workers.lifecycle import VehicleLifecycle
from workers.process import process_event as run_event
from workers.publish import TASK_NAME
from workers.sweeper import SWEEP_TASK
from workers.sweeper import sweep as sweep_events
from workers.tokens import ClientRejectedError, GrantRefusedError, TokenError, TokenRefreshBusyError

log = get_logger("workers.tasks")
_BEAT_PERIOD = 60.0
_REFUSED_GRANT_PAUSE = 3600.0  # a grant without usable tokens is not tried again every minute


@app.task(name=TASK_NAME, ignore_result=True, bind=True)
def process_event(self: Task[Any, Any], event_id: str) -> str:
    """Run one stored event (see `workers.process`). Returns the outcome's name (for logs)."""
    request = self.request
    return run_event(assembly.runtime(), event_id, task_id=request.id, worker=request.hostname).outcome.value


@app.task(name=SWEEP_TASK, ignore_result=True)
def sweep() -> dict[str, int]:
    runtime = assembly.runtime()
    settings = runtime.settings
    report = sweep_events(runtime.store, after=settings.sweep_after, batch=settings.sweep_batch)
    assembly.publisher().publish(report.requeue)
    if report.requeue:
        log.warning("sweeper_requeued_events", count=len(report.requeue))
    counts = {"requeued": len(report.requeue), "backlog": report.backlog, "dropped": report.dropped}
    return {**counts, "trimmed": report.trimmed}


@app.task(name="workers.refresh_tokens", ignore_result=True)
def refresh_tokens() -> dict[str, int]:
    """Refresh the grants whose access token expires within the refresh margin (plus one beat period).

    A grant Smartcar refused (invalid_grant) holds its vehicles and is not refreshed again until a new
    pair is stored (`workers.tokens`); rejected client credentials (invalid_client) stop this run, since
    every other grant would be rejected too (`smartcar_client_rejected` is logged): the next beat tries
    again, and succeeds once SMARTCAR_CLIENT_ID/SECRET are fixed."""
    runtime = assembly.runtime()
    tokens = runtime.tokens
    refreshed = failed = 0
    for grant in tokens.expiring(tokens.refresh_margin + _BEAT_PERIOD):
        try:
            refreshed += tokens.refresh_if_expiring(grant, now=time.time() + _BEAT_PERIOD)
        except TokenRefreshBusyError:
            continue  # another worker is refreshing it right now
        except ClientRejectedError:
            failed += 1
            break
        except GrantRefusedError as error:  # `vehicles list` says whose owner must reconnect
            failed += 1
            log.warning("token_refresh_failed", grant=grant, retry="after the user reconnects")
            VehicleLifecycle(runtime).grant_refused(grant, reason=str(error), vehicle_ids=error.vehicle_ids)
        except TokenError:
            failed += 1
            log.warning("token_refresh_failed", grant=grant, retry="after the user reconnects")
            tokens.postpone(grant, time.time() + _REFUSED_GRANT_PAUSE)
        except Exception:  # one grant's failure must not stop the others
            failed += 1
            log.warning("token_refresh_failed", grant=grant, retry="next beat", exc_info=True)
    return {"refreshed": refreshed, "failed": failed}


@app.task(name="workers.ping", ignore_result=True)
def ping(token: str) -> None:
    """Proof that a worker consumes the queue: sets `{p}ping:{token}`."""
    assembly.runtime().store.ping(token)
