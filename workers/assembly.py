"""The one place a worker process is put together: settings read once, then its runtime, publisher, relay.

`workers.app` makes one `Assembly` for the Celery app it runs, and the tasks take what they need from
it; `smartcar-events relay` makes one for a publishing-only app. Nothing is built at import: the
settings are read when first needed (a worker's start-up check reads them first and refuses to start on
a bad one), and the runtime when the first task runs, after a prefork child is forked (`forked` drops
what a parent built, whose sockets a child must not share).

Tests build their own `Runtime` (`Runtime.build(settings, handlers=...)`), or an `Assembly` with the
settings they want: nothing here is global.
"""

from __future__ import annotations

import importlib
import threading

from celery import Celery
from prometheus_client import CollectorRegistry

from workers import auto_replay as _auto_replay  # noqa: F401 - registers the RESOLVED handler on import
from workers import handlers as _builtin_handlers  # noqa: F401 - registers the built-in handlers on import
from workers.local_runs import LocalRuns
from workers.metrics import StoreCollector, exposition_registry
from workers.process import process_event
from workers.publish import Publisher
from workers.registry import HandlerRegistry, registry
from workers.relay import DEPTH_EVERY, Relay, RelayThread
from workers.runtime import Runtime
from workers.settings import WorkerSettings, load_settings

__all__ = ["Assembly", "HandlerModuleError", "load_handlers"]


class HandlerModuleError(Exception):
    """A module named in `WORKERS_HANDLER_MODULES` failed to import (its error is the cause)."""

    def __init__(self, module: str, error: BaseException) -> None:
        super().__init__(
            f"WORKERS_HANDLER_MODULES: {module} failed to import: {type(error).__name__}: {error}"
        )
        self.module = module


def load_handlers(settings: WorkerSettings) -> HandlerRegistry:
    """The registry of the built-in handlers plus those of the modules in `WORKERS_HANDLER_MODULES`
    (imported here: a module that cannot be imported stops the worker's start-up, not its first event)."""
    for name in settings.handler_modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # the user's module may raise anything: said in one line at start-up
            raise HandlerModuleError(name, error) from error
    return registry


class Assembly:
    def __init__(self, celery: Celery, *, settings: WorkerSettings | None = None) -> None:
        self.celery = celery
        self._settings = settings
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None
        self._publisher: Publisher | None = None

    @property
    def settings(self) -> WorkerSettings:
        """The process's settings, read from the environment on first use (`SettingsError` when they
        cannot work)."""
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def handlers(self) -> HandlerRegistry:
        return load_handlers(self.settings)

    def publisher(self) -> Publisher:
        with self._lock:
            if self._publisher is None:
                self._publisher = Publisher.for_settings(self.celery, self.settings)
            return self._publisher

    def runtime(self) -> Runtime:
        """The process's runtime, built on first use, with Celery countdowns as its `enqueue`."""
        runtime = self._runtime
        if runtime is not None:
            return runtime
        publisher = self.publisher()
        with self._lock:
            if self._runtime is None:
                self._runtime = Runtime.build(
                    self.settings, handlers=self.handlers(), enqueue=publisher.enqueue
                )
            return self._runtime

    def local_runs(self, worker: str | None) -> LocalRuns | None:
        """Threads of this process that run the relay's events (`workers.local_runs`), when the settings
        ask for them (`WorkerSettings.runs_events_locally`); None otherwise."""
        settings = self.settings
        if not settings.runs_events_locally:
            return None
        runtime = self.runtime()
        return LocalRuns(
            lambda event_id: process_event(runtime, event_id, worker=worker),
            threads=settings.event_concurrency,
            hand_over=self.publisher().publish,
        )

    def relay(self, local: LocalRuns | None = None) -> RelayThread:
        """A relay thread (not started) from the inbox to `local`'s threads, else to the publisher."""
        settings = self.settings
        publisher = self.publisher()
        if local is not None:
            publish, depth = local.submit, local.depth
            high_water, depth_every = settings.event_concurrency * 3 // 2, 0.0  # a count in memory
        else:
            publish, depth = publisher.publish, publisher.depth
            high_water, depth_every = settings.relay_high_water, DEPTH_EVERY
        relay = Relay(
            self.runtime().store,
            publish,
            depth,
            batch=settings.relay_batch,
            high_water=high_water,
            depth_every=depth_every,
            idle_wait=settings.relay_idle_wait,
            linger=settings.relay_linger,
            lease_check_every=settings.lease_check_interval,
            lease_hold=settings.sweep_after,
        )
        return RelayThread(relay)

    def metrics_registry(self) -> CollectorRegistry:
        """What the worker's `/metrics` serves: the process's work, and the store's gauges."""
        runtime = self.runtime()
        store = StoreCollector(runtime.redis, runtime.keys)
        return exposition_registry(lambda: self.runtime().metrics, store)

    def forked(self) -> None:
        """In a prefork child: close and forget the parent's clients (the child builds its own)."""
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._runtime is not None:
                self._runtime.close()
            if self._publisher is not None:
                self._publisher.close()
            self._runtime = self._publisher = None
