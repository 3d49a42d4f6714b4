"""Reading Redis answers: the store's clients answer bytes (an event's `raw` must stay bytes)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes | bytearray) else str(value)


def texts(values: Iterable[Any]) -> list[str]:
    return [text(value) for value in values]


def as_bytes(value: Any) -> bytes:
    return bytes(value) if isinstance(value, bytes | bytearray) else str(value).encode()


def bytes_map(raw: Mapping[Any, Any]) -> dict[bytes, bytes]:
    if all(type(key) is bytes and type(value) is bytes for key, value in raw.items()):
        return dict(raw)  # what a bytes client answers, as it is (the common case: no copy of each)
    return {as_bytes(key): as_bytes(value) for key, value in raw.items()}


def text_map(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {text(key): text(value) for key, value in raw.items()}


def dumps(value: Any) -> str:
    """Compact, key-sorted JSON (anything else as its str)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
