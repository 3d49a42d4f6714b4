"""Where Smartcar lives, which API version to speak, and how long to wait.

Origins come from the same environment variables as the official SDKs, read when a client is created
(never at import time), and can be replaced in code.
"""

from __future__ import annotations

import os
import platform
import re
import threading
from dataclasses import dataclass, field

import httpx

from smartcar_core._version import __version__

DEFAULT_API_VERSION = "2.0"
V3 = "3"
_VERSION_PATTERN = re.compile(r"\d+(\.\d+)?")

USER_AGENT = (
    f"smartcar-core/{__version__} ({platform.system()}; {platform.machine()}) "
    f"Python v{platform.python_version()}"
)

# Connect is slow to answer only when a person is involved; API calls may hold the connection for
# minutes while a car wakes up, so the read timeout follows Smartcar's own 310 s limit.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=310.0, write=30.0, pool=10.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)

_TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret


def _env(*names: str, default: str) -> str:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value.rstrip("/")
    return default


def _auth_origin(value: str) -> str:
    """Accept both forms the SDKs use: a bare origin (Node) or the full token URL (Python)."""
    value = value.rstrip("/")
    return value.removesuffix(_TOKEN_PATH)


@dataclass(frozen=True, slots=True)
class Origins:
    """The five Smartcar hosts. `Origins.from_env()` reads the official SDKs' variables."""

    api: str = "https://api.smartcar.com"
    auth: str = "https://auth.smartcar.com"
    connect: str = "https://connect.smartcar.com"
    management: str = "https://management.smartcar.com"
    vehicle_v3: str = "https://vehicle.api.smartcar.com"

    def __post_init__(self) -> None:
        object.__setattr__(self, "auth", _auth_origin(self.auth))
        for name in ("api", "connect", "management", "vehicle_v3"):
            object.__setattr__(self, name, getattr(self, name).rstrip("/"))

    @property
    def token_url(self) -> str:
        return self.auth + _TOKEN_PATH

    @classmethod
    def from_env(cls) -> Origins:
        defaults = cls()
        return cls(
            api=_env("SMARTCAR_API_ORIGIN", default=defaults.api),
            auth=_env("SMARTCAR_AUTH_ORIGIN", default=defaults.auth),
            connect=_env("SMARTCAR_CONNECT_ORIGIN", default=defaults.connect),
            management=_env("SMARTCAR_MANAGEMENT_API_ORIGIN", default=defaults.management),
            vehicle_v3=_env(
                "SMARTCAR_VEHICLE_API_V3_ORIGIN", "SMARTCAR_API_V3_ORIGIN", default=defaults.vehicle_v3
            ),
        )


@dataclass(slots=True)
class _ApiVersion:
    value: str = DEFAULT_API_VERSION
    lock: threading.Lock = field(default_factory=threading.Lock)


_api_version = _ApiVersion()


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION_PATTERN.fullmatch(version):
        raise ValueError(f"API version must look like '2.0' or '3', got {version!r}")
    return version


def set_api_version(version: str) -> None:
    """Set the process-wide API version used by module functions and by Vehicles created afterwards."""
    validate_version(version)
    with _api_version.lock:
        _api_version.value = version


def get_api_version() -> str:
    return _api_version.value
