"""One task sent to the workers from a process that is not a worker: the operator CLI and the admin API.

Celery (and kombu) are imported only when a task is sent, so that commands sending none start without
them (`workers.cli_lazy`).
"""

from __future__ import annotations

from typing import Any

from workers.settings import WorkerSettings


class BrokerUnavailableError(Exception):
    """The broker did not take the task: nothing was sent."""

    def __init__(self, address: str, error: BaseException) -> None:
        super().__init__(f"the broker at {address} did not answer ({error})")
        self.address = address
        self.error = error


def send_task(settings: WorkerSettings, task: str, **kwargs: Any) -> None:
    """Send `task` with `kwargs` to the workers' queue; `BrokerUnavailableError` when the broker is away."""
    import kombu.exceptions  # noqa: PLC0415 - with Celery, only when a task is sent
    import redis  # noqa: PLC0415

    from workers.app import publishing_app  # noqa: PLC0415

    celery = publishing_app(settings)
    try:
        celery.send_task(task, kwargs=kwargs, queue=settings.queue, retry=False)
    except (OSError, kombu.exceptions.KombuError, redis.RedisError) as error:
        raise BrokerUnavailableError(settings.broker_address, error) from error
    finally:
        celery.close()
