"""The event store is the contract between the receiver, the workers and the operator tools: it depends on
the standard library, redis and smartcar_core only (and the cipher where tokens are sealed), so that any
of them can load it without the others."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ALLOWED = {"eventstore", "redis", "smartcar_core"}
# Tokens are stored encrypted, and the receiver's Connect callback and the workers must seal them alike:
# the one module that seals them may use the cipher's library, and only it.
ALLOWED_IN = {"tokens_at_rest.py": {"cryptography"}}
PACKAGE = Path(__file__).resolve().parents[2] / "eventstore"


def imported_packages(path: Path) -> set[str]:
    """The top-level names `path` imports, wherever the import is (TYPE_CHECKING or a function too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.partition(".")[0])
    return found


def test_the_store_imports_only_the_standard_library_redis_and_the_client() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 10  # the scan sees the package
    wrong = {
        f"{path.name} imports {name}"
        for path in modules
        for name in imported_packages(path)
        if name not in ALLOWED | ALLOWED_IN.get(path.name, set()) and name not in sys.stdlib_module_names
    }
    assert wrong == set()


def test_every_module_stays_small() -> None:
    assert {path.name for path in PACKAGE.glob("*.py") if len(path.read_text().splitlines()) > 400} == set()
