"""The locked install: requirements/lock.txt (the image) and requirements/dev.txt (scripts/test, CI) pin
every package with its hashes, satisfy pyproject.toml, agree with each other, and are what this test run
has installed; the packages whose internals we use have upper bounds."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy.support import REPO, pyproject

LOCKS = {"lock": REPO / "requirements" / "lock.txt", "dev": REPO / "requirements" / "dev.txt"}
# workers.broker (kombu's Redis channel), workers.publish (Celery's message), smartcar_core.transport
# (httpx's _transport_for_url): an upgrade may break them, so each is bounded until checked.
BOUNDED = {"celery", "kombu", "httpx"}


def pins(path: Path) -> dict[str, tuple[str, int]]:
    """Package -> (pinned version, number of hashes)."""
    found: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", line)
        if match:
            current = str(canonicalize_name(match[1]))
            found[current] = (match[2], 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            pinned, hashes = found[current]
            found[current] = (pinned, hashes + 1)
        elif line.strip() and not line.lstrip().startswith(("#", "--hash")):
            assert line.startswith(" "), f"{path.name}: not a pin: {line!r}"
    return found


def requirements(extra: str | None = None) -> list[Requirement]:
    project = pyproject()["project"]
    listed = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_package_is_pinned_with_its_hashes(name: str) -> None:
    locked = pins(LOCKS[name])
    assert locked
    unhashed = sorted(package for package, (_pinned, hashes) in locked.items() if hashes == 0)
    assert not unhashed, f"{name}: pinned without a hash: {unhashed}"
    text = LOCKS[name].read_text()
    assert "--index-url" not in text
    assert "--find-links" not in text
    assert "file://" not in text, "a path of this machine in the lock"


@pytest.mark.parametrize(("name", "extra"), [("lock", None), ("dev", None), ("dev", "dev")])
def test_the_locks_satisfy_pyproject(name: str, extra: str | None) -> None:
    locked = pins(LOCKS[name])
    for requirement in requirements(extra):
        package = str(canonicalize_name(requirement.name))
        assert package in locked, f"{requirement} is not in requirements/{name}.txt: run ./scripts/lock"
        pinned = locked[package][0]
        assert requirement.specifier.contains(pinned, prereleases=True), (
            f"requirements/{name}.txt pins {package}=={pinned}, outside {requirement}: run ./scripts/lock"
        )


def test_the_dev_lock_has_the_images_versions() -> None:
    image, development = pins(LOCKS["lock"]), pins(LOCKS["dev"])
    differ = {
        package: (pinned, development.get(package, ("missing", 0))[0])
        for package, (pinned, _) in image.items()
    }
    differ = {package: versions for package, versions in differ.items() if versions[0] != versions[1]}
    assert not differ, f"lock.txt and dev.txt disagree: {differ}"


def test_this_run_has_the_locked_versions_installed() -> None:
    """What scripts/test installed is what the lock says (a stale virtualenv would test something else)."""
    wrong = {}
    for package, (pinned, _hashes) in pins(LOCKS["dev"]).items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = "missing"
        if installed != pinned:
            wrong[package] = (pinned, installed)
    assert not wrong, f"locked != installed: {wrong}; scripts/test reinstalls when the lock changes"


def test_the_packages_whose_internals_we_use_have_upper_bounds() -> None:
    bounded = {
        str(canonicalize_name(requirement.name)): requirement.specifier
        for requirement in requirements()
        if str(canonicalize_name(requirement.name)) in BOUNDED
    }
    assert set(bounded) == BOUNDED
    for package, specifier in bounded.items():
        assert any(spec.operator == "<" for spec in specifier), f"{package}{specifier}: no upper bound"
