"""The Celery app: `celery -A workers.app worker` and `celery -A workers.app beat`.

Celery on Redis loses or duplicates work with its defaults; `celery_config` says, setting by setting,
what we use instead and why (README.md, "Celery settings and why", has the long form). The
configuration is built from `WorkerSettings` when first needed, and checked when a worker or beat
starts: a configuration that could deliver a message twice while it is being worked on is refused.

As in Celery's usual layout, this module imports no task: Celery loads `workers.tasks` and
`workers.lifecycle_tasks` (named in `include`), and the tasks import `app` and `assembly` from here.
`assembly` (`workers.assembly`) is where the process's settings, runtime, publisher and relay are built,
once.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import kombu.exceptions
import redis
from celery import Celery, bootsteps, signals
from celery import __version__ as celery_version

from eventstore.client import TIMEOUT_SECONDS
from service_base.logs import configure_logging, get_logger, renders_json, stdlib_formatter
from service_base.redis_check import check_event_store
from workers import broker, consumer, metrics
from workers.assembly import Assembly, HandlerModuleError
from workers.local_runs import LocalRuns
from workers.publish import Publisher, check_against_celery
from workers.settings import SettingsError, WorkerSettings, visibility_problem
from workers.sweeper import SWEEP_TASK

log = get_logger("workers.app")


def celery_config(settings: WorkerSettings) -> dict[str, Any]:
    return {
        "broker_url": settings.broker_url,
        # Kombu's Redis transport, minus a new Redis client object per command (see workers.broker).
        "broker_transport": "workers.broker:Transport",
        "broker_connection_retry_on_startup": True,
        # A running worker reconnects to the broker for as long as it is away, every second, quietly (see
        # workers.consumer): an outage is waited out, not a reason for the worker to exit.
        "worker_consumer": "workers.consumer:Consumer",
        "broker_connection_max_retries": None,
        "broker_transport_options": {
            # A message not acknowledged within this time is given to another worker: it must outlast the
            # longest countdown a message waits in a worker plus the longest run.
            "visibility_timeout": settings.visibility_timeout,
            # Kombu's keys (queues, unacked hash) under a prefix of their own: several deployments or
            # test sessions can share one Redis.
            "global_keyprefix": settings.broker_key_prefix,
            # Scan for messages of dead workers every `restore_interval` s (kombu: every 10th of 10 s ticks).
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
            "socket_timeout": 10.0,
            "socket_connect_timeout": 10.0,
            "retry_on_timeout": True,
            "health_check_interval": 30,
        },
        "task_default_queue": settings.queue,
        # Acknowledge after the run, not before: a worker that dies mid-task leaves the message to redeliver.
        "task_acks_late": True,
        # ...and when the pool's child process dies (SIGKILL, OOM), put the message back at once.
        "task_reject_on_worker_lost": True,
        # A task that raised or hit its hard limit is acknowledged: our task records failures itself,
        # and the sweeper re-enqueues an event whose run vanished. Redelivering would loop on a poison.
        "task_acks_on_failure_or_timeout": True,
        # With late acks, prefetched messages are held unacknowledged: keep that to one per slot.
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "worker_pool": settings.pool,
        "worker_concurrency": settings.concurrency,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        # On a cold shutdown (SIGQUIT, SIGINT), let running tasks finish for this long, then requeue what
        # is held (incl. countdowns). SIGTERM is Celery's warm shutdown: running tasks finish, unbounded.
        "worker_soft_shutdown_timeout": settings.soft_shutdown_timeout,
        "worker_enable_soft_shutdown_on_idle": True,
        # After a lost broker connection the unacked messages come back anyway: stop their duplicates.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "beat_schedule": {
            "sweep": {
                "task": SWEEP_TASK,
                "schedule": settings.sweep_interval,
                "options": {"queue": settings.queue, "expires": settings.sweep_interval},
            },
            "refresh-tokens": {
                "task": "workers.refresh_tokens",
                "schedule": 60.0,
                "options": {"queue": settings.queue, "expires": 60.0},
            },
            "lifecycle-jobs": {
                "task": "workers.lifecycle_jobs",
                "schedule": settings.lifecycle_interval,
                "options": {"queue": settings.queue, "expires": settings.lifecycle_interval},
            },
            "replay-jobs": {
                "task": "workers.replay_jobs",
                "schedule": settings.replay_interval,
                "options": {"queue": settings.queue, "expires": settings.replay_interval},
            },
            **_reconcile_schedule(settings),
        },
    }


def _reconcile_schedule(settings: WorkerSettings) -> dict[str, Any]:
    """The reconciliation on beat, unless WORKERS_RECONCILE_INTERVAL is 0."""
    if not settings.reconcile_interval:
        return {}
    return {
        "reconcile": {
            "task": "workers.reconcile_fleet",
            "schedule": settings.reconcile_interval,
            "options": {"queue": settings.queue, "expires": settings.reconcile_interval},
        }
    }


def check_configuration(conf: Any, settings: WorkerSettings) -> list[str]:
    """Problems with the Celery configuration actually in effect (empty when it is safe)."""
    problems = []
    if not conf.task_acks_late:
        problems.append("task_acks_late must be True: with early acks a task dies with its worker")
    if not conf.task_reject_on_worker_lost:
        problems.append("task_reject_on_worker_lost must be True: a killed child would lose its message")
    options = conf.broker_transport_options or {}
    visibility = float(options.get("visibility_timeout") or 3600.0)
    time_limit = float(conf.task_time_limit or 0)
    if not time_limit:
        problems.append(
            "task_time_limit must be set: a run without a limit could outlast the visibility timeout"
        )
    problem = visibility_problem(visibility, settings.max_countdown, time_limit)
    if problem:
        problems.append(problem)
    return problems


def _broker_unavailable(settings: WorkerSettings) -> Callable[[Exception, float], None]:
    def attempt_failed(error: Exception, retry_in: float) -> None:
        log.warning(
            "broker_unavailable",
            broker=settings.broker_address,
            error=type(error).__name__,
            detail=str(error),
            retry_in=round(retry_in, 1),
        )

    return attempt_failed


def publishing_app(settings: WorkerSettings) -> Celery:
    """A Celery app that only publishes, to the broker, prefix and queue of `settings` (tools, checks)."""
    celery = Celery("smartcar-publisher", set_as_current=False)
    celery.conf.update(celery_config(settings))
    return celery


def broker_problems(settings: WorkerSettings, *, wait: int | None = None) -> list[str]:
    """What a live broker shows about our two shortcuts into Celery and kombu (empty when both hold).

    `workers.broker` overrides a private method of kombu's Redis transport, and `workers.publish` writes
    Celery's task messages itself: an upgrade of either library can break them without an error (tasks
    published but never run). Checked by workers and beat at start-up, `smartcar-events relay` and
    `check`. Waits for the broker up to `wait` seconds (`WORKERS_STARTUP_BROKER_WAIT` when None),
    logging each failed attempt with the broker's address; then kombu's error is raised.
    """
    celery = publishing_app(settings)
    publisher = Publisher.for_settings(celery, settings)
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(
                errback=_broker_unavailable(settings),
                timeout=settings.startup_broker_wait if wait is None else wait,
                interval_start=1,
                interval_step=1,
                interval_max=5,
            )
            found = broker.problems(connection.default_channel) + consumer.problems()
        if settings.relay_fast_publish:
            mismatch = check_against_celery(celery, publisher.batch)
            if mismatch:
                found.append(
                    f"workers.publish no longer writes the message Celery {celery_version} writes "
                    f"({'; '.join(mismatch)}): set WORKERS_RELAY_FAST_PUBLISH=false (apply_async) "
                    "until workers.publish is updated"
                )
    finally:
        publisher.close()
        celery.close()
    return found


app = Celery("workers", include=["workers.tasks", "workers.lifecycle_tasks", "workers.replay_tasks"])
assembly = Assembly(app)


def _configuration() -> dict[str, Any]:
    """Celery's configuration from the process's settings. Celery reads it while it parses its command
    line, before any start-up hook: with settings that cannot work it gets none, and the start-up check
    (`worker_init`, `beat_init`) refuses with one line naming the setting, before anything connects."""
    try:
        return celery_config(assembly.settings)
    except SettingsError:
        return {}


app.add_defaults(_configuration)


def _refuse(problem: str) -> NoReturn:
    # The real stderr: by beat_init, beat has redirected sys.stderr into its logger.
    (sys.__stderr__ or sys.stderr).write(f"smartcar workers refuse to start: {problem}\n")
    raise SystemExit(78)  # EX_CONFIG


@signals.worker_init.connect
def _check_worker(**_: Any) -> None:
    _check_startup()
    problem = _metrics_port_problem(assembly.settings)  # beat serves no metrics: the worker's alone
    if problem:
        _refuse(problem)


@signals.beat_init.connect
def _check_beat(**_: Any) -> None:
    _check_startup()


@signals.after_setup_logger.connect
def _celery_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    """Celery decides once (when its consumer starts) whether to log each task: decide before that. And
    with JSON logs, Celery's own lines are written in the shape of ours."""
    try:
        settings = assembly.settings
    except SettingsError:
        return  # the start-up check reports it
    if not settings.log_task_lines:
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
    consumer.OutageLines.install()
    _json_celery_lines(logger, settings)


@signals.after_setup_task_logger.connect
def _celery_task_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    try:
        settings = assembly.settings
    except SettingsError:
        return
    _json_celery_lines(logger, settings)


def _json_celery_lines(logger: logging.Logger | None, settings: WorkerSettings) -> None:
    stream = sys.__stderr__
    if logger is None or stream is None or not renders_json(settings.log_format, stream):
        return
    formatter = stdlib_formatter(settings.log_format, stream)
    for handler in logger.handlers:
        handler.setFormatter(formatter)


def _configure_logs(settings: WorkerSettings) -> None:
    """Our structlog lines go straight to the real stderr, one line each: not through Celery's stdout
    redirection, which would log every line a second time as a WARNING."""
    configure_logging(settings.log_format, settings.log_level, stream=sys.__stderr__)


def _check_startup() -> None:
    try:
        settings = assembly.settings
    except SettingsError as error:
        _refuse(str(error))
    _configure_logs(settings)  # the broker check below logs each failed attempt
    problems = check_configuration(app.conf, settings)
    if problems:
        _refuse("\n  ".join(["unsafe Celery configuration:", *problems]))
    try:
        problems = broker_problems(settings)
    except (OSError, kombu.exceptions.KombuError, redis.RedisError) as error:
        _refuse(
            f"the broker at {settings.broker_address} did not answer within "
            f"{settings.startup_broker_wait:g} s (WORKERS_STARTUP_BROKER_WAIT): {error}"
        )
    if problems:
        _refuse("\n  ".join(["Celery or kombu changed under us:", *problems]))
    _check_durability(settings)
    try:
        assembly.handlers()  # a handler module that cannot be imported stops the start, not the first event
    except HandlerModuleError as error:
        _refuse(str(error))


def _check_durability(settings: WorkerSettings) -> None:
    """Refuse a Redis that refuses us or (production) would lose events; warn about the latter otherwise."""
    try:
        problems = check_event_store(settings, timeout=TIMEOUT_SECONDS)
    except SettingsError as error:
        _refuse(str(error))
    except (OSError, redis.RedisError) as error:
        _refuse(f"the event store's Redis at {settings.redis_address} did not answer: {error}")
    if problems:
        log.warning("redis_not_durable", redis=settings.redis_address, problems=problems)


@signals.worker_process_init.connect
def _forked(**_: Any) -> None:
    assembly.forked()


def _metrics_port_problem(settings: WorkerSettings) -> str | None:
    """Why `/metrics` could not listen where the settings say (None: it can)."""
    if not settings.metrics_port:
        return None
    try:
        with socket.create_server((settings.metrics_address, settings.metrics_port)):
            return None
    except OSError as error:
        return (
            f"WORKERS_METRICS_PORT: cannot listen on {settings.metrics_address}:{settings.metrics_port} "
            f"({error.strerror or error}); give each worker process on a host its own port, or 0 for none"
        )


class MetricsStep(bootsteps.StartStopStep):
    """Serves `/metrics` on `WORKERS_METRICS_PORT` in the worker's main process (see `workers.metrics`)."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.stop_serving: Callable[[], None] | None = None

    def start(self, worker: Any) -> None:  # noqa: ARG002 - the bootstep interface
        settings = assembly.settings
        if settings.metrics_port:
            registry = assembly.metrics_registry()
            self.stop_serving = metrics.serve(settings.metrics_port, settings.metrics_address, registry)

    def stop(self, worker: Any) -> None:  # noqa: ARG002 - the bootstep interface
        if self.stop_serving is not None:
            self.stop_serving()
            self.stop_serving = None


class RelayStep(bootsteps.StartStopStep):
    """Runs the relay in the worker process (see `workers.relay`)."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.thread: Any = None
        self.local: LocalRuns | None = None

    def start(self, worker: Any) -> None:
        if not assembly.settings.relay_enabled:
            return
        self.local = assembly.local_runs(worker.hostname)
        self.thread = assembly.relay(self.local)
        self.thread.start()

    def stop(self, worker: Any, *, wait: bool = True) -> None:  # noqa: ARG002 - the bootstep interface
        """The relay first (it claims no more), then the local runs: those not started go to Celery, and
        a warm shutdown waits for the running ones as Celery waits for its tasks."""
        if self.thread is not None:
            self.thread.stop()
            self.thread = None
        if self.local is not None:
            self.local.stop(wait=wait)
            self.local = None

    def terminate(self, worker: Any) -> None:
        """A cold shutdown: what has not started goes to Celery; the running runs' leases end with the
        process, and a relay takes them over."""
        self.stop(worker, wait=False)


app.steps["worker"].add(RelayStep)
app.steps["worker"].add(MetricsStep)
