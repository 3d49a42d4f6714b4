"""One log shape: every event our code logs is named in snake_case (`event_dead_lettered`), so that a
search, an alert or a dashboard matches it exactly, whichever service wrote it."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("smartcar_core", "smartcar_simulator", "eventstore", "service_base", "receiver", "workers")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
LOGGERS = {"log", "logger", "_log", "_logger"}
EVENT_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def log_events(path: Path) -> Iterator[tuple[int, object]]:
    """(line, event) of every `log.<level>(event, ...)` call in a module."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in LEVELS or not node.args:
            continue
        owner = node.func.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
        if name in LOGGERS:
            first = node.args[0]
            yield node.lineno, first.value if isinstance(first, ast.Constant) else ast.unparse(first)


def test_the_scan_finds_log_calls() -> None:
    found = {event for _line, event in log_events(ROOT / "workers" / "process.py")}
    assert {"event_dead_lettered", "event_retrying"} <= found


def test_every_logged_event_is_a_snake_case_name() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {event!r}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, event in log_events(path)
        if not (isinstance(event, str) and EVENT_NAME.fullmatch(event))
    ]
    assert wrong == []
