"""One log set-up for the receiver and the workers: JSON lines for machines, a pretty console for
terminals, nothing secret in either, all on one stream (stderr, where uvicorn and Celery write too).

Every line has the same shape: `event` (a snake_case name such as `event_dead_lettered`), `level`,
`timestamp` (ISO-8601, UTC), `logger_name` (who wrote it: `receiver`, `workers.process`,
`celery.worker`, ...), then the line's own fields. Celery's own lines
(stdlib logging) get the same shape through `stdlib_formatter()`, which a worker installs on Celery's
handlers when `LOG_FORMAT=json`.

The chain is kept short on purpose (level filter, level, timestamp, redaction, renderer): the receiver writes
one line per delivery, so every processor is paid thousands of times a second. `get_logger()` returns a
logger bound once (no lazy proxy to resolve per call); structlog's global cache is left off, so other
packages' module-level loggers keep following later configuration. Secrets never get passed to a logger in
the project; `redact_secrets` is the net under that rule.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog

REDACTED = "[redacted]"
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS  # as json.dumps, which writes 1: ... as "1": ...
# Keys that may never carry their value into a log line, whoever passes them.
SECRET_KEYS = frozenset(
    {
        "amt",
        "smartcar_amt",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "client_secret",
        "authorization",
        "signature",
        "sc_signature",
        "challenge_answer",
        "raw",
        "body",
        "payload",
    }
)


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if not SECRET_KEYS.isdisjoint(event_dict):
        for key in SECRET_KEYS.intersection(event_dict):
            event_dict[key] = REDACTED
    return event_dict


def renders_json(log_format: str, stream: TextIO) -> bool:
    """`json`, or `auto` off a terminal: JSON lines; else the pretty console."""
    return log_format == "json" or (log_format == "auto" and not stream.isatty())


def json_line(event_dict: Any, **options: Any) -> str:
    """One JSON line by orjson; by json.dumps (with the same `default`) for what orjson refuses, such as
    an integer past 64 bits, so that logging never raises.

    Why orjson: the receiver writes a line per delivery, and without that line it took 21 % more requests a
    second (bench/receiver_bench.py); json.dumps was the largest part of the line (8.3 us a line, 4.9 with
    orjson, measured alone)."""
    try:
        return orjson.dumps(event_dict, default=options.get("default"), option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(event_dict, **options)


def _rendering(log_format: str, stream: TextIO) -> list[Any]:
    """The chain's last processors: JSON (a traceback as text under `exception`), or the console's own."""
    if renders_json(log_format, stream):
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=json_line)]
    return [structlog.dev.ConsoleRenderer(colors=stream.isatty())]


def configure_logging(log_format: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog for this process (the receiver at app creation, a worker at start-up)."""
    out = stream or sys.stderr
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            *_rendering(log_format, out),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def stdlib_formatter(log_format: str, stream: TextIO) -> logging.Formatter:
    """A `logging.Formatter` that writes stdlib records (Celery's, kombu's) in the shape of our lines."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            _record_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            *_rendering(log_format, stream),
        ],
    )


def _record_logger_name(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger_name"] = record.name
    return event_dict


def get_logger(name: str) -> Any:
    """A logger for `name` (module level is fine): it follows the configuration in force when it logs."""
    return structlog.get_logger(logger_name=name)


def bound_logger(name: str) -> Any:
    """A logger for `name` bound to the configuration in force now, with no lazy proxy to resolve per
    call: for hot paths, created after `configure_logging`."""
    return structlog.get_logger(logger_name=name).bind()
