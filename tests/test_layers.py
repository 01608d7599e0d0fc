"""The package's shape: no import circles, small modules, one importer per library, fixed logger names.

The layers themselves (which part may import which) are an import-linter contract in
pyproject.toml, run by ``make test``; these are the rules it cannot express.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "addrbus"

#: Libraries more than one module may import: pydantic is the data model of the public
#: API (Message, Envelope, body types); pytest, of the public test helpers only.
SHARED = {"pydantic", "pydantic_core"}
TEST_HELPERS = "addrbus.testing"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path) -> list[str]:
    """Every module ``name`` imports, at the top, under TYPE_CHECKING or inside functions.

    ``from package import module`` counts as importing the module (not the package's ``__init__``).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    mods = modules()
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.extend(f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names)
    return found


def internal_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for target in imports(name, path):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target not in (name, "addrbus"):
                deps.add(target)
        graph[name] = deps
    return graph


def test_no_import_circle() -> None:
    graph = internal_graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                circles.append([*path[path.index(dep):], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_the_circle_check_sees_type_checking_and_function_imports() -> None:
    graph = internal_graph()
    # _core.stream imports Node only under TYPE_CHECKING; the bus imports its parts at the top.
    assert "addrbus._core.node" in graph["addrbus._core.stream"]
    assert "addrbus._core.inbound" in graph["addrbus._bus"]


@pytest.mark.parametrize(("name", "path"), modules().items(), ids=list(modules()))
def test_module_size(name: str, path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= (350 if name == "addrbus._bus" else 400)


def test_each_library_is_imported_by_one_module() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    importers: dict[str, set[str]] = {}
    for name, path in modules().items():
        for target in imports(name, path):
            top = target.partition(".")[0]
            if top and top != "addrbus" and top not in stdlib:
                importers.setdefault(top, set()).add(name)
    assert importers.pop("pytest") <= {m for m in modules() if m.startswith(TEST_HELPERS)}
    many = {lib: sorted(mods) for lib, mods in importers.items() if len(mods) > 1 and lib not in SHARED}
    assert many == {}
    assert {"anyio", "cryptography", "redis"} <= importers.keys()
    # APScheduler is imported by name, lazily (import addrbus works without it): one module names it.
    naming = [name for name, path in modules().items() if '"apscheduler' in path.read_text(encoding="utf-8")]
    assert naming == ["addrbus._jobs.triggers"]


def test_logger_names_are_literals_and_documented() -> None:
    names = set()
    for path in modules().values():
        for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "getLogger":
                assert len(call.args) == 1 and isinstance(call.args[0], ast.Constant), (
                    f"{path.name}: logger names are fixed strings, so moving a file never renames one"
                )
                names.add(call.args[0].value)
    documented = set(re.findall(r"^\| `(addrbus[\w.]*)` \|", (ROOT / "docs" / "logging.md").read_text(), re.M))
    assert names == documented
