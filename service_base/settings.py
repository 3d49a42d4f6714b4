"""`ServiceSettings`: the settings the receiver and the workers both read, and how a bad one is reported.

The contract names (`REDIS_URL`, `EVENT_KEY_PREFIX`, `EVENT_DEDUPE_SECONDS`, `LOG_FORMAT`, `LOG_LEVEL`, and
each service's `SMARTCAR_*`) are read as they are; a service's own settings are read under its prefix
(`RECEIVER_`, `WORKERS_`). Each service's settings class extends this one, and `load()` is how a process
reads its settings, once, at start-up: a missing or invalid value raises `SettingsError` with every
problem named by its environment name, and never a value (a value may be a secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.connection import parse_url

from eventstore.keys import DEFAULT_DEDUPE_SECONDS, DEFAULT_PREFIX

MIN_DEDUPE_SECONDS = 7 * 24 * 3600  # Smartcar retries for minutes, but a replayed capture can come later


def address_of(redis_url: str) -> str:
    """Where a Redis URL points (host:port/db, or socket path/db), for logs and messages: the URL itself
    may hold a password."""
    where = parse_url(redis_url)  # type: ignore[no-untyped-call] # - redis-py leaves it untyped
    place = where.get("path") or f"{where.get('host', 'localhost')}:{where.get('port', 6379)}"
    return f"{place}/{where.get('db', 0)}"


class SettingsError(RuntimeError):
    """The configuration cannot work; the message says which setting and how to fix it."""


def env(name: str) -> AliasChoices:
    """A field read from the environment variable `name` exactly (a contract name), not from its prefix."""
    return AliasChoices(name)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    service: ClassVar[str] = "service"
    """Named in the one-line error ("invalid receiver settings: ...")."""
    missing: ClassVar[Mapping[str, str]] = {}
    """Environment name -> what to say when that required setting is not set at all."""

    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=env("REDIS_URL"))
    """The event store (and, for the workers, tokens, locks and rate bucket)."""
    event_key_prefix: str = Field(DEFAULT_PREFIX, validation_alias=env("EVENT_KEY_PREFIX"))
    """Prefix of every event-store key; the receiver and the workers must read the same."""
    event_dedupe_seconds: int = Field(
        DEFAULT_DEDUPE_SECONDS, ge=MIN_DEDUPE_SECONDS, validation_alias=env("EVENT_DEDUPE_SECONDS")
    )
    """How long an accepted eventId is remembered (duplicates inside it are absorbed); at least 7 days."""
    log_format: Literal["auto", "json", "console"] = Field("auto", validation_alias=env("LOG_FORMAT"))
    """`auto`: pretty when the log stream is a terminal, JSON lines otherwise."""
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", validation_alias=env("LOG_LEVEL"))
    smartcar_env: Literal["development", "production"] = Field(
        "development", validation_alias=env("SMARTCAR_ENV")
    )
    """`production` refuses to start on a Redis that would lose acknowledged events (no append-only
    file, or an evicting `maxmemory-policy`: `eventstore.durability`); `development` warns about it."""

    @field_validator("log_format", "log_level", "smartcar_env", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parse_url(value)  # type: ignore[no-untyped-call] # - its ValueError says what is wrong, not the URL
        return value

    @property
    def redis_address(self) -> str:
        """Where `REDIS_URL` points, for logs and messages (see `address_of`)."""
        return address_of(self.redis_url)

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Read the environment (plus `overrides`, by field name), or raise `SettingsError` naming the
        problems."""
        try:
            return cls(**overrides)
        except ValidationError as error:
            raise SettingsError(cls.describe(error)) from None

    @classmethod
    def describe(cls, error: ValidationError) -> str:
        """One line naming every problem by its environment name (a required setting left unset: what
        to set)."""
        unset, problems = [], []
        for item in error.errors(include_input=False, include_url=False):
            message = item["msg"].removeprefix("Value error, ")
            if not item["loc"]:  # a rule between settings: its message names them
                problems.append(message)
                continue
            name = cls.env_name(str(item["loc"][0]))
            if item["type"] == "missing" and name in cls.missing:
                unset.append(cls.missing[name])
            else:
                problems.append(f"{name}: {message}")
        if problems:
            unset.append(f"invalid {cls.service} settings: " + "; ".join(problems))
        return "; ".join(unset)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment name of what pydantic reports: a field by its alias when it has one (pydantic
        reports what it read from the environment by alias, what was passed by field name by name)."""
        info = cls.model_fields.get(field)
        if info is not None and isinstance(info.validation_alias, AliasChoices):
            return str(info.validation_alias.choices[0])
        if field.isupper():  # an alias already
            return field
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()
