"""The layering of the broker package.

A pure core: importing ``protocol``, the session, the hub, the node, the
outboxes, the subscriptions, the announcements, the counters or the token
grants loads no I/O or crypto library (checked in a fresh interpreter, where
nothing was imported yet). And no import cycles among the broker's modules:
each depends only on modules below it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import REPO

HEAVY_LIBRARIES = (
    "jwt",
    "cryptography",
    "prometheus_client",
    "redis",
    "websockets",
    "h11",
    "uvloop",
)

CORE_MODULES = (
    "protocol",
    "broker.session",
    "broker.hub",
    "broker.node",
    "broker.outbox",
    "broker.subscriptions",
    "broker.announcements",
    "broker.counters",
    "broker.grants",
    "broker.publish_outcome",
)

BROKER = REPO / "broker"


def modules_loaded_by(*imports: str) -> set[str]:
    code = (
        "import json, sys\n"
        + "".join(f"import {name}\n" for name in imports)
        + "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def libraries_among(loaded: set[str]) -> set[str]:
    return {lib for lib in HEAVY_LIBRARIES for m in loaded if m == lib or m.startswith(lib + ".")}


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_no_io_or_crypto_library(module: str) -> None:
    loaded = modules_loaded_by(module)
    assert module in loaded
    assert libraries_among(loaded) == set()


def test_memory_backend_imports_no_redis() -> None:
    loaded = modules_loaded_by("broker.backends")
    assert not {m for m in loaded if m == "redis" or m.startswith("redis.")}


# --- import cycles -----------------------------------------------------------


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: not inside functions or classes,
    nor under ``if TYPE_CHECKING:``."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not is_type_checking(node.test):
                pending.extend(node.body)
            pending.extend(node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody])
            for handler in node.handlers:
                pending.extend(handler.body)


def imported_modules(module: str, is_package: bool, tree: ast.Module, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in module_level_imports(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            package = module if is_package else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        found.add(base)
        # `from broker.x import y` imports the submodule broker.x.y if there is one.
        found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known and name != module}


def broker_import_graph() -> dict[str, set[str]]:
    paths = sorted(BROKER.rglob("*.py"))
    known = {module_name(path) for path in paths}
    return {
        module_name(path): imported_modules(
            module_name(path),
            path.name == "__init__.py",
            ast.parse(path.read_text(encoding="utf-8")),
            known,
        )
        for path in paths
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that ends where it began), or ``None``."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph[module]):
            cycle = visit(imported)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle is not None:
            return cycle
    return None


def test_find_cycle_reports_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_find_cycle_accepts_a_diamond() -> None:
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_type_checking_imports_are_not_edges() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from broker import node\n"
    )
    assert imported_modules("broker.metrics", False, tree, {"broker.node"}) == set()


def test_relative_and_submodule_imports_are_edges() -> None:
    tree = ast.parse("from . import base\nfrom broker.backends import memory\n")
    known = {"broker.backends", "broker.backends.base", "broker.backends.memory"}
    edges = imported_modules("broker.backends.redis", False, tree, known)
    assert edges == {"broker.backends", "broker.backends.base", "broker.backends.memory"}


def test_broker_package_has_no_import_cycle() -> None:
    graph = broker_import_graph()
    assert "broker.node" in graph
    assert find_cycle(graph) is None
