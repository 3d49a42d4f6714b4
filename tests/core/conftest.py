"""Fixtures of the smartcar_core tests: a clean environment, a respx router behind sync or async clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from core.support import SMARTCAR_ENV, Harness
from smartcar_core import get_api_version, set_api_version


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_smartcar_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No SMARTCAR_* variable from the machine leaks in, and the process-wide API version is restored."""
    for name in SMARTCAR_ENV:
        monkeypatch.delenv(name, raising=False)
    version = get_api_version()
    yield
    set_api_version(version)


@pytest.fixture
def router() -> respx.Router:
    """A router that refuses any request no route matches (nothing reaches the network)."""
    return respx.Router(assert_all_called=False, assert_all_mocked=True)


@pytest.fixture(params=["sync", "async"])
def harness(request: pytest.FixtureRequest, router: respx.Router) -> Iterator[Harness]:
    built = Harness(request.param, router)
    yield built
    built.http.close()
