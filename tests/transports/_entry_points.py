"""Install transports through real entry points, without pip: a dist-info directory on sys.path."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

#: The docs' example third-party transport (scheme ``pipe``).
PIPE_SNIPPET = Path(__file__).resolve().parents[2] / "docs" / "snippets" / "custom_transport.py"


@contextlib.contextmanager
def installed(root: Path, entries: Mapping[str, str], modules: Mapping[str, str]) -> Iterator[None]:
    """Make ``root`` a site directory holding one distribution with these transports, while inside.

    ``entries`` maps scheme -> entry-point value; ``modules`` maps module name -> source.
    """
    info = root / "fake_addrbus_transport-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-addrbus-transport\nVersion: 0.1\n")
    lines = "".join(f"{scheme} = {value}\n" for scheme, value in entries.items())
    (info / "entry_points.txt").write_text(f"[addrbus.transports]\n{lines}")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))  # also clears importlib's caches, metadata included
        try:
            yield
        finally:
            for name in modules:
                sys.modules.pop(name, None)
