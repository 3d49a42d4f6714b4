"""The simulator's time: wall-clock seconds plus an offset that tests and the control endpoint can advance.

Token expiry, charging progress and data ages all read one `SimClock`, so moving it forward (instead of
sleeping) expires tokens and charges batteries deterministically. Pass `base` to drive it entirely.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class SimClock:
    """`now()` is `base() + offset`; `advance(s)` moves it forward. Never goes backwards."""

    def __init__(self, base: Callable[[], float] = time.time) -> None:
        self._base = base
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._base() + self._offset

    @property
    def offset(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()


class ManualClock:
    """A base clock that stands still until told to move (for in-process tests)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value

    def tick(self, seconds: float) -> None:
        self.value += seconds


def iso_time(epoch_seconds: float) -> str:
    """`2018-05-04T07:20:50.844Z`: the form of Smartcar's `sc-data-age` and `sc-fetched-at` headers."""
    return iso_ms(int(epoch_seconds * 1000))


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds in that form (also the legacy webhook payloads' `eventTime`)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
