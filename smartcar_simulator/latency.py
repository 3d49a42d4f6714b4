"""How long the simulated Smartcar takes to answer: fixed, uniform, or long-tailed (log-normal), and when
within that time a call takes effect.

A long tail is described the way operators talk about it, by its median and its 99th percentile; the
log-normal with those two quantiles is sampled. Waiting is always `await asyncio.sleep`.

`ApplyAt` places the moment a call takes effect (a command is applied to the car, a read is taken)
within its latency: at the `start`, in the `middle` or at the `end` (the default). The answer leaves at
the end either way, so with `start` or `middle` a test has a window in which the car has obeyed and the
caller has not heard yet.
"""

from __future__ import annotations

import math
import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Distribution = Literal["fixed", "uniform", "longtail"]
ApplyAt = Literal["start", "middle", "end"]
APPLY_AT: tuple[ApplyAt, ...] = ("start", "middle", "end")
_SHARE_BEFORE: dict[ApplyAt, float] = {"start": 0.0, "middle": 0.5, "end": 1.0}
_Z99 = 2.3263478740408408  # the standard normal's 99th percentile
MAX_LATENCY = 600.0


class LatencyModel(BaseModel):
    """`fixed` waits `seconds`; `uniform` between `low` and `high`; `longtail` has `median` and `p99`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    distribution: Distribution = "fixed"
    seconds: float = Field(0.0, ge=0, le=MAX_LATENCY)
    low: float = Field(0.0, ge=0, le=MAX_LATENCY)
    high: float = Field(0.0, ge=0, le=MAX_LATENCY)
    median: float = Field(0.0, ge=0, le=MAX_LATENCY)
    p99: float = Field(0.0, ge=0, le=MAX_LATENCY)

    @model_validator(mode="after")
    def _consistent(self) -> LatencyModel:
        if self.distribution == "uniform" and self.high < self.low:
            raise ValueError("uniform latency needs low <= high")
        if self.distribution == "longtail" and (self.median <= 0 or self.p99 < self.median):
            raise ValueError("longtail latency needs 0 < median <= p99")
        return self

    @property
    def is_zero(self) -> bool:
        return self.distribution == "fixed" and self.seconds == 0

    def sample(self, rng: random.Random) -> float:
        """One latency in seconds (capped at MAX_LATENCY)."""
        if self.distribution == "fixed":
            return self.seconds
        if self.distribution == "uniform":
            return rng.uniform(self.low, self.high)
        sigma = math.log(self.p99 / self.median) / _Z99
        return min(MAX_LATENCY, rng.lognormvariate(math.log(self.median), sigma))


def parse_latency(spec: float | str) -> LatencyModel:
    """A latency from the command line: `0.2`, `fixed:0.2`, `uniform:0.1,0.5` or `longtail:0.2,2.0`."""
    if isinstance(spec, int | float):
        return LatencyModel(seconds=float(spec))
    text = spec.strip()
    kind, _, values = text.partition(":")
    if not values:
        return LatencyModel(seconds=float(kind or 0))
    numbers = [float(part) for part in values.split(",")]
    if kind == "fixed" and len(numbers) == 1:
        return LatencyModel(seconds=numbers[0])
    if kind == "uniform" and len(numbers) == 2:  # noqa: PLR2004 - low and high
        return LatencyModel(distribution="uniform", low=numbers[0], high=numbers[1])
    if kind == "longtail" and len(numbers) == 2:  # noqa: PLR2004 - median and p99
        return LatencyModel(distribution="longtail", median=numbers[0], p99=numbers[1])
    raise ValueError(
        f"latency {spec!r}: expected SECONDS, fixed:SECONDS, uniform:LOW,HIGH or longtail:MEDIAN,P99"
    )


def split(seconds: float, apply_at: ApplyAt) -> tuple[float, float]:
    """A latency of `seconds` cut where the call takes effect: (the wait before it, the wait after it)."""
    before = seconds * _SHARE_BEFORE[apply_at]
    return before, seconds - before
