"""How fast smartcar_core reads a vehicle, against the official SDK and bare httpx, in one run.

1. Sequential `Vehicle.odometer()` calls, over HTTP and over HTTPS (a certificate made here), by
   - ours: `smartcar_core.Vehicle` on the shared pooled client;
   - official: the `smartcar` package from PyPI, which opens a connection (and a TLS session) per call;
   - bare: a pooled `httpx.Client` sending the same GET with the same headers, the limit for this stack.
2. 100 `AsyncVehicle.odometer()` calls at once (asyncio.gather) from a server that takes 100 ms a call.

The server (bench/odometer_server.py) runs in its own process, so that its CPU time does not share the
GIL with the client under test. Only the ratios mean something: absolute figures move with the machine.

    .venv/bin/python bench/client_bench.py [--check] [--calls 300] [--repeats 5] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib
import os
import platform
import pstats
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version as _version
from pathlib import Path

import httpx
from tls import TLSFiles, make_certificates

from smartcar_core import AsyncVehicle, Origins, Vehicle
from smartcar_core.config import USER_AGENT
from smartcar_core.transport import shared_async_client, shared_client
from testsupport import wait_until

SERVER_SCRIPT = Path(__file__).with_name("odometer_server.py")
HOST = "127.0.0.1"
VEHICLE_ID = "bench-vehicle-0001"
ACCESS_TOKEN = "bench-access-token"
DISTANCE = 12345.6
SERVER_START_SECONDS = 30.0

# The targets this benchmark checks (README: "Client").
MIN_OURS_OVER_OFFICIAL = {"http": 2.0, "https": 5.0}
MIN_OURS_OVER_BARE = 0.9
MAX_CONCURRENT_WALL_SECONDS = 0.5

Reader = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall times of the repeated rounds of `calls` sequential reads by one client."""

    calls: int
    rounds: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.rounds)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.best


@dataclass(frozen=True, slots=True)
class Target:
    what: str
    measured: float
    wanted: str
    met: bool


# --- the server ---------------------------------------------------------------------------------


@contextlib.contextmanager
def odometer_server(*, delay: float = 0.0, tls: TLSFiles | None = None) -> Iterator[str]:
    """Start bench/odometer_server.py on a socket bound here; yield its origin; stop it."""
    listener = socket.create_server((HOST, 0), backlog=1024)
    port = listener.getsockname()[1]
    command = [sys.executable, str(SERVER_SCRIPT), "--fd", str(listener.fileno()), "--delay", str(delay)]
    if tls is not None:
        command += ["--certfile", str(tls.cert_file), "--keyfile", str(tls.key_file)]
    process = subprocess.Popen(command, pass_fds=[listener.fileno()])  # noqa: S603 - our own script
    listener.close()  # the server holds its own copy
    origin = f"{'https' if tls else 'http'}://{HOST}:{port}"
    try:
        _wait_until_answering(origin, process, tls)
        yield origin
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_answering(origin: str, process: subprocess.Popen[bytes], tls: TLSFiles | None) -> None:
    verify = ssl.create_default_context(cafile=tls.ca_file) if tls else True
    with httpx.Client(verify=verify, timeout=2.0, trust_env=False) as probe:

        def answering() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the odometer server exited with status {process.returncode}")
            probe.get(odometer_url(origin, "probe"), headers={"authorization": "Bearer probe"})
            return True

        wait_until(
            answering,
            timeout=SERVER_START_SECONDS,
            interval=0.05,
            what=f"the odometer server at {origin}",
            ignoring=(httpx.TransportError,),
        )


def odometer_url(origin: str, vehicle_id: str = VEHICLE_ID) -> str:
    return f"{origin}/v2.0/vehicles/{vehicle_id}/odometer"


# --- the clients --------------------------------------------------------------------------------


def point_at(origin: str) -> None:
    """Point every client made from now on at `origin`, as the official SDKs' users do: by env."""
    os.environ["SMARTCAR_API_ORIGIN"] = origin


def ours(origin: str) -> Reader:
    vehicle = Vehicle(VEHICLE_ID, ACCESS_TOKEN, origins=Origins.from_env())
    _check_origin("ours", vehicle.origins.api, origin)

    def read() -> float:
        return vehicle.odometer().distance

    return read


def official(origin: str) -> Reader:
    # The SDK reads SMARTCAR_API_ORIGIN once, when smartcar.config is imported: import it only now,
    # and reload it when the origin changes, exactly as a fresh process would read it.
    import smartcar  # noqa: PLC0415 - its configuration is read at import time, after point_at()

    importlib.reload(smartcar.config)
    _check_origin("official", smartcar.config.API_ORIGIN, origin)
    vehicle = smartcar.Vehicle(VEHICLE_ID, ACCESS_TOKEN)

    def read() -> float:
        return float(vehicle.odometer().distance)

    return read


def bare(http: httpx.Client, origin: str) -> Reader:
    """The same GET with the same headers as ours, the JSON decoded, nothing else."""
    url = odometer_url(origin)
    headers = {
        "user-agent": USER_AGENT,
        "accept": "application/json",
        "authorization": f"Bearer {ACCESS_TOKEN}",
        "sc-unit-system": "metric",
        "content-type": "application/json",
    }

    def read() -> float:
        response = http.get(url, headers=headers)
        response.raise_for_status()
        return float(response.json()["distance"])

    return read


# --- measuring ----------------------------------------------------------------------------------


def measure(readers: dict[str, Reader], *, calls: int, repeats: int, warmup: int) -> dict[str, Timing]:
    """Best-of-`repeats` rounds of `calls` reads per client, the clients taking turns round by round so
    that a noisy moment on a shared machine falls on all of them alike."""
    for name, read in readers.items():
        for _ in range(warmup):
            _check(name, read())
    names = list(readers)
    rounds: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(repeats):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            read = readers[name]
            value = 0.0
            start = time.perf_counter()
            for _ in range(calls):
                value = read()
            rounds[name].append(time.perf_counter() - start)
            _check(name, value)
    return {name: Timing(calls, tuple(times)) for name, times in rounds.items()}


def _check_origin(name: str, read: str, wanted: str) -> None:
    if read != wanted:
        raise RuntimeError(f"{name} is pointed at {read}, not at the benchmark's server {wanted}")


def _check(name: str, value: float) -> None:
    if value != DISTANCE:
        raise RuntimeError(f"{name} read {value!r}, the server sent {DISTANCE}")


async def read_fleet(*, vehicles: int, rounds: int) -> list[float]:
    """Wall times of `rounds` gathers of one odometer read per vehicle; the first starts on a cold pool."""
    origins = Origins.from_env()
    fleet = [AsyncVehicle(f"bench-vehicle-{n:04d}", ACCESS_TOKEN, origins=origins) for n in range(vehicles)]
    walls = []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            odometers = await asyncio.gather(*(vehicle.odometer() for vehicle in fleet))
            walls.append(time.perf_counter() - start)
            for odometer in odometers:
                _check("AsyncVehicle", odometer.distance)
    finally:
        await shared_async_client().aclose()
    return walls


def profile_ours(calls: int) -> None:
    """cProfile of our sequential reads against the current origin, the 25 costliest functions."""
    read = ours(os.environ["SMARTCAR_API_ORIGIN"])
    print(f"\ncProfile of {calls} reads by ours over HTTP, by own time")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        read()
    profiler.disable()
    pstats.Stats(profiler).sort_stats(pstats.SortKey.TIME).print_stats(25)


# --- the report ---------------------------------------------------------------------------------


def print_timings(label: str, timings: dict[str, Timing]) -> None:
    print(f"\n{label}: {next(iter(timings.values())).calls} sequential odometer reads per round")
    print(f"  {'client':<10} {'calls/s':>10} {'best ms':>10} {'median ms':>10}")
    for name, timing in timings.items():
        print(
            f"  {name:<10} {timing.calls_per_second:>10,.0f} {timing.best * 1000:>10.1f} "
            f"{timing.median * 1000:>10.1f}"
        )


def sequential_targets(scheme: str, timings: dict[str, Timing]) -> list[Target]:
    over_official = timings["official"].best / timings["ours"].best
    over_bare = timings["bare"].best / timings["ours"].best
    return [
        Target(
            f"{scheme}  ours/official",
            over_official,
            f">= {MIN_OURS_OVER_OFFICIAL[scheme]:.1f}x",
            over_official >= MIN_OURS_OVER_OFFICIAL[scheme],
        ),
        Target(
            f"{scheme}  ours/bare",
            over_bare,
            f">= {MIN_OURS_OVER_BARE:.2f}x",
            over_bare >= MIN_OURS_OVER_BARE,
        ),
    ]


def print_targets(targets: Sequence[Target]) -> None:
    print("\nTargets")
    for target in targets:
        unit = "s" if target.wanted.startswith("<") else "x"
        verdict = "met" if target.met else "MISSED"
        print(f"  {target.what:<28} {target.measured:>8.2f}{unit}  (target {target.wanted})  {verdict}")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--calls", type=int, default=300, help="sequential reads per round (300)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per client; the best counts (5)")
    parser.add_argument("--warmup", type=int, default=30, help="reads per client before timing (30)")
    parser.add_argument("--vehicles", type=int, default=100, help="vehicles read at once (100)")
    parser.add_argument("--delay", type=float, default=0.1, help="server delay for the fleet read (0.1 s)")
    parser.add_argument("--profile", action="store_true", help="also profile our client over HTTP")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"client benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, httpx {httpx.__version__}, smartcar {_version('smartcar')}"
    )
    with tempfile.TemporaryDirectory(prefix="client-bench-") as directory:
        tls = make_certificates(Path(directory), host=HOST)
        # Every client trusts the benchmark's CA: httpx (ours and bare) through SSL_CERT_FILE when its
        # pooled client is created, requests (the official SDK) through REQUESTS_CA_BUNDLE per call.
        os.environ["SSL_CERT_FILE"] = str(tls.ca_file)
        os.environ["REQUESTS_CA_BUNDLE"] = str(tls.ca_file)
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = f"{HOST},localhost"
        targets: list[Target] = []
        with httpx.Client() as http:
            for scheme in ("http", "https"):
                with odometer_server(tls=tls if scheme == "https" else None) as origin:
                    point_at(origin)
                    readers = {"ours": ours(origin), "official": official(origin), "bare": bare(http, origin)}
                    timings = measure(readers, calls=args.calls, repeats=args.repeats, warmup=args.warmup)
                    print_timings(scheme.upper(), timings)
                    targets += sequential_targets(scheme, timings)
                    if args.profile and scheme == "http":
                        profile_ours(args.calls)
        shared_client().close()

        with odometer_server(delay=args.delay) as origin:
            point_at(origin)
            walls = asyncio.run(read_fleet(vehicles=args.vehicles, rounds=3))
        print(
            f"\n{args.vehicles} AsyncVehicles read at once, server delay {args.delay * 1000:.0f} ms: "
            f"first (cold pool) {walls[0] * 1000:.0f} ms, best of {len(walls)} {min(walls) * 1000:.0f} ms"
        )
        targets.append(
            Target(
                f"{args.vehicles} concurrent, cold pool",
                walls[0],
                f"< {MAX_CONCURRENT_WALL_SECONDS:.1f} s",
                walls[0] < MAX_CONCURRENT_WALL_SECONDS,
            )
        )
    print_targets(targets)
    missed = [target.what for target in targets if not target.met]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
