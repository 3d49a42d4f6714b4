"""The broker transport's override of kombu holds on the installed kombu, and the check would say if not."""

from __future__ import annotations

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
    ]
