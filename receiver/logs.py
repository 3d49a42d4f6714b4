"""structlog set-up: JSON lines for machines, a pretty console for terminals, nothing secret in either.

The chain is kept short on purpose (level filter, level, timestamp, redaction, renderer): the receiver writes
one line per delivery, so every processor is paid thousands of times a second. `get_logger()` returns a
logger bound once (no lazy proxy to resolve per call); structlog's global cache is left off, so other
packages' module-level loggers keep following later configuration. Secrets never get passed to a logger in
this package; `redact_secrets` is the net under that rule.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

LOGGER_NAME = "receiver"
REDACTED = "[redacted]"
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


def configure_logging(log_format: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog for this process (the receiver calls it once, at app creation)."""
    out = stream or sys.stdout
    pretty = log_format == "console" or (log_format == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty()) if pretty else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger() -> Any:
    """A logger bound to the configuration in force now (call it after `configure_logging`)."""
    return structlog.get_logger(LOGGER_NAME).bind()
