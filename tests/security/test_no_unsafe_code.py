"""Nothing in the package can turn received bytes into code: no pickle, marshal, eval or exec."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "addrbus"

#: Modules that deserialise to arbitrary objects.
UNPICKLERS = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
#: ... and those that run code (``code`` is the interactive interpreter).
FORBIDDEN_MODULES = UNPICKLERS | {"code", "codeop"}
#: Builtins that run or compile code.
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def findings(source: str, filename: str = "<src>") -> list[str]:
    """Return every use of a forbidden module or builtin in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        line = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_CALLS | UNPICKLERS:
            found.append(f"{line}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_CALLS and not _is_method_of_regex(node):
            found.append(f"{line}: .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in UNPICKLERS:
            found.append(f"{line}: {node.value!r} (importlib?)")
    return found


def _is_method_of_regex(node: ast.Attribute) -> bool:
    # re.compile(...) and pattern objects are fine: they compile regexes, not code.
    return node.attr == "compile" and isinstance(node.value, ast.Name) and node.value.id in {"re", "regex"}


def sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_the_scan_covers_the_package() -> None:
    names = {p.name for p in sources()}
    assert {"_bus.py", "bodies.py", "frames.py", "sealing.py", "wire.py", "inbound.py", "transport.py"} <= names


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_unsafe_deserialisation_or_code_execution(path: Path) -> None:
    assert findings(path.read_text(encoding="utf-8"), str(path.relative_to(SRC))) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "import marshal as m",
        "import code",
        "from pickle import loads",
        "from _pickle import Unpickler",
        "eval('1')",
        "exec(code)",
        "builtins.exec(code)",
        "compile(src, 'f', 'exec')",
        "__import__('pickle')",
        "importlib.import_module('marshal')",
        "f = eval",
    ],
)
def test_the_scanner_catches_each_form(snippet: str) -> None:
    assert findings(snippet)


def test_the_scanner_allows_regexes() -> None:
    assert findings("import re\nPATTERN = re.compile('[a-z]+')\n") == []
