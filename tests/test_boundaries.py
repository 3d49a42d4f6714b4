"""The project's shape, checked from its source: one-way imports, no cycle, and one owner of the store's keys.

    smartcar_simulator ──▶ smartcar_core ◀── receiver ──▶ eventstore ◀── workers
                                                  └──▶ service_base ◀──┘

Every import is counted, at module level or inside a function or an `if TYPE_CHECKING:` block: a cycle
held together by a lazy import is still a cycle.
"""

from __future__ import annotations

import ast
import graphlib
import inspect
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore.keys import KeySpace

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("smartcar_core", "smartcar_simulator", "eventstore", "service_base", "receiver", "workers")
TEST_HELPERS = ("testsupport",)
# What each production package may import of the project (itself always).
ALLOWED = {
    "smartcar_core": set(),
    "smartcar_simulator": {"smartcar_core"},
    "eventstore": {"smartcar_core"},
    "service_base": {"eventstore"},
    "receiver": {"smartcar_core", "eventstore", "service_base"},
    "workers": {"smartcar_core", "eventstore", "service_base"},
}


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


KNOWN = {name: path for package in (*PRODUCTION, *TEST_HELPERS) for name, path in modules(package)}


def resolve(target: str) -> str:
    """The project module an import names: itself, else the package it is in ("" when not ours)."""
    while target and target not in KNOWN:
        target = target.rpartition(".")[0]
    return target


def imports_of(path: Path, name: str) -> set[str]:
    """The project modules `path` imports (`from a.b import c` is a.b.c when that is a module, else a.b)."""
    found: set[str] = set()
    package = (name if path.name == "__init__.py" else name.rpartition(".")[0]).split(".")
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*parent, node.module or ""]).strip(".")
            found.update(resolve(f"{base}.{alias.name}") for alias in node.names)
    return found - {"", name}


GRAPH = {name: imports_of(path, name) for name, path in KNOWN.items()}


def cycle_in(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` (its first module repeated at the end), or [] when there is none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return []


def test_the_graph_sees_the_imports_it_must_see() -> None:
    """A guard on the checker itself: a parser that found no edge would pass every test below."""
    assert "workers.app" in GRAPH["workers.tasks"]
    assert "eventstore.keys" in GRAPH["service_base.settings"]
    assert {"smartcar_core", "smartcar_simulator"} <= {name.partition(".")[0] for name in GRAPH}
    assert sorted(cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[1:]) == ["a", "b", "c"]


def test_no_import_cycle_among_project_modules() -> None:
    assert cycle_in(GRAPH) == []


@pytest.mark.parametrize("package", PRODUCTION)
def test_each_package_imports_only_what_its_arrows_allow(package: str) -> None:
    wrong = {
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name.partition(".")[0] == package
        for target in targets
        if (top := target.partition(".")[0]) != package and top not in ALLOWED[package]
    }
    assert wrong == set()


def test_the_celery_app_module_imports_no_task_module() -> None:
    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in GRAPH[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    assert "workers.tasks" not in reaches("workers.app")


LOAD_EVERY_MODULE = """
import importlib, pkgutil, sys
import eventstore, receiver, service_base, workers
for package in (eventstore, receiver, service_base, workers):
    for found in pkgutil.iter_modules(package.__path__):
        if found.name != "__main__":
            importlib.import_module(f"{package.__name__}.{found.name}")
print("\\n".join(sys.modules))
"""


def test_the_services_load_neither_the_simulator_nor_a_test_helper() -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", LOAD_EVERY_MODULE], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(done.stdout.split())
    assert {"receiver.app", "workers.app", "workers.tasks", "workers.cli", "eventstore.keys"} <= loaded
    assert {
        name for name in loaded if name.partition(".")[0] in {"smartcar_simulator", *TEST_HELPERS}
    } == set()


def key_fragments() -> set[str]:
    """The fixed parts of every key `KeySpace` names ("inbox", "event:", ":signals", "grant-of:", ...)."""
    keys = KeySpace("\0")
    fragments: set[str] = set()
    for _name, member in inspect.getmembers(KeySpace):
        if isinstance(member, property):
            key = member.fget(keys) if member.fget else ""
        elif inspect.isfunction(member) and not _name.startswith("_"):
            arguments = [f"\1{i}\1" for i in range(len(inspect.signature(member).parameters) - 1)]
            key = member(keys, *arguments)
        else:
            continue
        assert isinstance(key, str)
        assert key.startswith("\0"), f"KeySpace.{_name} does not start with the prefix"
        fragments.update(part for part in re.split(r"\x00|\x01\d+\x01", key) if re.search("[a-z]", part))
    return fragments


def string_pieces(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line, text, follows a placeholder) for every string literal and f-string piece of a module that
    is code, not a docstring (documentation may name a key: `{p}inbox`)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    skip.update(
        id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
    )
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            after_value = False
            for value in node.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield node.lineno, value.value, after_value
                after_value = isinstance(value, ast.FormattedValue)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value, False


def test_no_store_key_is_named_outside_the_event_store() -> None:
    fragments = key_fragments()
    assert {"inbox", "event:", "grant-of:", "verify:armed"} <= fragments  # the checker sees real keys
    bare = {fragment for fragment in fragments if ":" not in fragment and "-" not in fragment}
    named = []
    for name, path in KNOWN.items():
        if name.partition(".")[0] == "eventstore":
            continue
        for line, text, after_value in string_pieces(path):
            # "event:abc", "{p}grant-of:" or a Lua script's 'event:' anywhere; a bare name ("inbox") only
            # right after a placeholder, as in f"{prefix}inbox", since the word alone is ordinary English.
            keyed = [
                f
                for f in fragments - bare
                if text.startswith(f) or f"}}{f}" in text or f"'{f}" in text or f'"{f}' in text
            ]
            if keyed or (after_value and text in bare):
                named.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert named == []
