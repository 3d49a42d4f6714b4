"""Settings: stated defaults, a clear refusal of a bad key or an unsafe Celery configuration."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from workers.app import app, celery_config, check_configuration
from workers.settings import SettingsError, WorkerSettings, load_settings

FERNET_KEY = Fernet.generate_key().decode()


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "EVENT_KEY_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", FERNET_KEY)
    settings = load_settings()
    assert settings.broker_url == settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.event_key_prefix == "sc:"
    assert (settings.pool, settings.concurrency, settings.prefetch_multiplier) == ("threads", 64, 1)
    assert settings.visibility_timeout > settings.max_countdown + settings.task_time_limit
    assert settings.task_time_limit > settings.command_timeout  # a command call fits in a run
    assert settings.charging_rule_enabled is False


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", FERNET_KEY)
    monkeypatch.setenv("REDIS_URL", "redis://store:6379/1")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://broker:6379/2")
    monkeypatch.setenv("WORKERS_CONCURRENCY", "128")
    monkeypatch.setenv("WORKERS_FOLLOW_UP_SIGNALS", '{"*": ["tractionbattery-stateofcharge"]}')
    settings = load_settings()
    assert settings.redis_url == "redis://store:6379/1"
    assert settings.broker_url == "redis://broker:6379/2"
    assert settings.concurrency == 128
    assert settings.follow_up_signals == {"*": ["tractionbattery-stateofcharge"]}


def test_missing_key_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKEN_ENCRYPTION_KEY", raising=False)
    with pytest.raises(SettingsError, match="TOKEN_ENCRYPTION_KEY is not set") as raised:
        load_settings()
    assert "smartcar-events tokens new-key" in str(raised.value)


@pytest.mark.parametrize("key", ["", "not-a-key", FERNET_KEY[:-4]], ids=["empty", "not-base64", "truncated"])
def test_bad_key_fails_without_echoing_it(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", key)
    with pytest.raises(SettingsError, match="TOKEN_ENCRYPTION_KEY") as raised:
        load_settings()
    if key:
        assert key not in str(raised.value)


def test_rotation_accepts_several_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", f"{FERNET_KEY}, {FERNET_KEY}")
    old = load_settings().fernet().encrypt(b"x")
    assert load_settings().fernet().decrypt(old) == b"x"


def _settings(**overrides: Any) -> WorkerSettings:
    return WorkerSettings(token_encryption_key=FERNET_KEY, **overrides)


def test_visibility_timeout_must_outlast_countdown_and_time_limit() -> None:
    with pytest.raises(ValidationError, match="must exceed the longest countdown plus the hard time limit"):
        _settings(visibility_timeout=400, max_countdown=60, task_time_limit=360, task_soft_time_limit=330)
    with pytest.raises(ValidationError, match="SOFT_TIME_LIMIT must be below"):
        _settings(task_soft_time_limit=400, task_time_limit=360)


def test_a_lease_renewal_must_fit_twice_in_a_lease() -> None:
    defaults = _settings()
    assert defaults.lease_renew_interval * 2 <= defaults.lease_seconds
    assert defaults.lease_seconds + defaults.lease_check_interval < 60  # taken over within a minute
    with pytest.raises(ValidationError, match="WORKERS_LEASE_RENEW_INTERVAL"):
        _settings(lease_seconds=8, lease_renew_interval=5)


def test_only_a_relay_on_the_threads_pool_runs_events_locally_and_redis_has_a_connection_per_thread() -> None:
    local = _settings()
    assert local.runs_events_locally
    assert local.redis_connections_needed == 192 + 64 + 16
    for overrides in ({"relay_dispatch": "celery"}, {"pool": "prefork"}, {"relay_enabled": False}):
        other = _settings(**overrides)
        assert not other.runs_events_locally, overrides
        assert other.redis_connections_needed == 100, overrides  # redis-py's default is the floor


def test_celery_config_is_safe_and_the_check_catches_overrides() -> None:
    settings = _settings()
    config = celery_config(settings)
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["visibility_timeout"] == settings.visibility_timeout
    conf = app.conf.__class__(dict(config))
    assert check_configuration(conf, settings) == []
    conf = app.conf.__class__(
        {**config, "task_acks_late": False, "broker_transport_options": {"visibility_timeout": 100}}
    )
    problems = check_configuration(conf, settings)
    assert any("task_acks_late" in problem for problem in problems)
    assert any("visibility_timeout 100 s must exceed" in problem for problem in problems)
