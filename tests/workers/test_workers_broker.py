"""The overrides of kombu (the broker transport) and of Celery (the consumer) hold on the installed
versions, and the start-up checks would say if not."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from workers import consumer
from workers.app import publishing_app
from workers.broker import Channel, hook_problems, problems
from workers.settings import WorkerSettings


def test_the_installed_kombu_is_what_the_override_expects(settings: WorkerSettings) -> None:
    celery = publishing_app(settings)
    try:
        with celery.connection_for_write() as connection:
            channel = connection.default_channel
            assert isinstance(channel, Channel)
            assert problems(channel) == []
            with channel.conn_or_acquire() as client:
                assert client is channel._create_client()
    finally:
        celery.close()


class _Renamed:
    def _make_client(self, asynchronous: bool = False) -> None: ...


class _Changed:
    pool = None

    def _create_client(self, asynchronous: bool = False, *, db: int = 0) -> None: ...


def test_a_changed_kombu_is_named() -> None:
    assert hook_problems(_Renamed) == ["kombu's redis Channel has no _create_client any more"]
    signature = "(self, asynchronous: 'bool' = False, *, db: 'int' = 0) -> 'None'"
    assert hook_problems(_Changed) == [
        f"kombu's redis Channel._create_client{signature} changed",
        "kombu's redis Channel has no pool property any more",
        "kombu's redis Channel._connparams(self, asynchronous) changed",
    ]


def test_a_closed_connection_asked_for_a_pool_is_a_connection_error(settings: WorkerSettings) -> None:
    celery = publishing_app(settings)
    try:
        with celery.connection_for_write() as connection:
            channel: Any = connection.default_channel
            assert channel._connparams()["host"] == "127.0.0.1"
            channel.connection.client = None  # what kombu leaves after it closed the connection
            with pytest.raises(redis.ConnectionError, match="the broker connection is closed"):
                channel._connparams()
    finally:
        celery.close()


class _OldConsumer:
    def __init__(self, on_task_request: object) -> None: ...

    def ensure_connected(self, conn: Any) -> Any:
        return conn.connect()


def test_the_installed_celery_consumer_is_what_the_override_expects() -> None:
    assert consumer.problems() == []
    assert consumer.problems(_OldConsumer) == [
        "celery's Consumer no longer takes worker_options",
        "celery's Consumer.ensure_connected no longer calls conn.ensure_connection",
    ]
    assert len(consumer.problems(object)) == 2


def _critical(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(consumer.OutageLines.LOGGER, logging.CRITICAL, __file__, 1, message, args, None)


def test_a_failed_ack_while_the_broker_is_away_is_a_warning() -> None:
    quiet = consumer.OutageLines()
    for message in ("Couldn't ack %r, reason:%r", "Couldn't reject %r, reason: %r"):
        record = _critical(message, 1, "x")
        assert quiet.filter(record)
        assert (record.levelno, record.levelname) == (logging.WARNING, "WARNING")
        assert "a redelivery is skipped" in record.getMessage()
    other = _critical("Unrecoverable")
    assert quiet.filter(other)
    assert other.levelno == logging.CRITICAL
    consumer.OutageLines.install()
    consumer.OutageLines.install()
    installed = logging.getLogger(consumer.OutageLines.LOGGER).filters
    assert sum(isinstance(existing, consumer.OutageLines) for existing in installed) == 1
