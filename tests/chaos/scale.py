"""How big each chaos scenario runs: `CHAOS_SCALE=ci` (the default, a few minutes in all) or `long`.

`current_scale()` is read once by the `scale` fixture (and by the conftest hook that sets each
scenario's time limit). `CHAOS_SEED=<n>` replays a run: the seed is printed with every figure.
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass, replace

ENV = "CHAOS_SCALE"
SEED_ENV = "CHAOS_SEED"


@dataclass(frozen=True, slots=True)
class Scale:
    name: str
    seed: int
    timeout: float
    """pytest's limit for one scenario, seconds."""
    crash_events: int
    crash_kills: int
    restart_rate: float
    """Deliveries per second while Redis is shut down and killed."""
    restart_pause: float
    """Seconds of ingest before each outage, and of each outage."""
    fault_events: int
    duplicate_vehicles: int
    duplicate_events: int
    """Events per vehicle (each delivered 1 to 5 times)."""
    bad_envelopes: int
    """Generated signed (and unsigned) envelopes; the framing and VERIFY cases come on top."""
    bad_framing_rounds: int
    """How many times the raw-socket framing cases are sent (each round varies its sizes)."""
    genuine_every: int
    """One genuine event among this many generated requests."""
    secret_events: int
    soak_seconds: float
    soak_rate: float


SCALES = {
    "ci": Scale(
        name="ci",
        seed=20_251_101,
        timeout=150,
        crash_events=45,
        crash_kills=3,
        restart_rate=60,
        restart_pause=1.5,
        fault_events=40,
        duplicate_vehicles=10,
        duplicate_events=6,
        bad_envelopes=1_200,
        bad_framing_rounds=2,
        genuine_every=10,
        secret_events=20,
        soak_seconds=10,
        soak_rate=60,
    ),
    "long": Scale(
        name="long",
        seed=0,  # replaced by a random seed below
        timeout=1_800,
        crash_events=300,
        crash_kills=8,
        restart_rate=150,
        restart_pause=3.0,
        fault_events=200,
        duplicate_vehicles=40,
        duplicate_events=10,
        bad_envelopes=9_000,
        bad_framing_rounds=12,
        genuine_every=10,
        secret_events=60,
        soak_seconds=60,
        soak_rate=150,
    ),
}


@functools.cache
def current_scale() -> Scale:
    """The scale named by `CHAOS_SCALE` (default `ci`); ValueError naming the choices otherwise. Read once
    per session: a long run's random seed is the same for every scenario."""
    name = os.environ.get(ENV, "ci").strip().lower() or "ci"
    if name not in SCALES:
        raise ValueError(f"{ENV}={name!r}: choose one of {', '.join(SCALES)}")
    scale = SCALES[name]
    seed = os.environ.get(SEED_ENV)
    if seed is not None:
        return replace(scale, seed=int(seed))
    if name == "long":
        return replace(scale, seed=random.SystemRandom().randrange(1 << 32))
    return scale


def report(scenario: str, figure: str) -> None:
    """Print a scenario's figure, one line (`pytest -s` shows it): `chaos <scenario>: <figure>`."""
    print(f"\nchaos {scenario}: {figure}")  # noqa: T201 - the figure is the scenario's output
