"""Every example and docs snippet runs, and every code block in the docs is one of them.

A fenced ``python`` block in README.md or docs/ that is preceded by a
``<!-- snippet: PATH -->`` line must be byte-identical to that file, so the
code a reader copies is the code this suite runs. A ``python`` block of more
than three lines must have such a marker.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = sorted([*ROOT.glob("examples/*.py"), *ROOT.glob("docs/snippets/*.py")])
PAGES = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md")])
TIMEOUT = 60.0  # seconds; each program should take well under two
MAX_UNMARKED_LINES = 3

_MARKER = re.compile(r"<!--\s*snippet:\s*(\S+)\s*-->")
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


class Block:
    """One fenced code block of a Markdown page."""

    def __init__(self, lang: str, line: int, text: str, snippet: str | None) -> None:
        self.lang = lang
        self.line = line  # 1-based line of the opening fence
        self.text = text
        self.snippet = snippet


def parse_blocks(markdown: str) -> tuple[list[Block], list[int]]:
    """Return the page's fenced blocks, and the lines of markers not followed by a block."""
    lines = markdown.splitlines(keepends=True)
    blocks: list[Block] = []
    dangling: list[int] = []
    pending: tuple[str, int] | None = None  # (snippet path, marker line)
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence is None:
            marker = _MARKER.search(line)
            if marker is not None:
                if pending is not None:
                    dangling.append(pending[1])
                pending = (marker.group(1), i + 1)
            elif line.strip() and pending is not None:
                dangling.append(pending[1])
                pending = None
            i += 1
            continue
        opening, lang = fence.group(1), fence.group(2).lower()
        body: list[str] = []
        i += 1
        # A closing fence uses the same character, at least as many times, and nothing else.
        while i < len(lines) and not (
            lines[i].strip() and set(lines[i].strip()) == {opening[0]} and len(lines[i].strip()) >= len(opening)
        ):
            body.append(lines[i])
            i += 1
        blocks.append(Block(lang, i - len(body), "".join(body), pending[0] if pending else None))
        pending = None
        i += 1  # past the closing fence
    if pending is not None:
        dangling.append(pending[1])
    return blocks, dangling


#: Programs that need an MQTT broker: each gets a private mosquitto's URL in ADDRBUS_MQTT_URL.
NEEDS_MQTT = {"examples/busline_mqtt.py"}


@pytest.mark.parametrize("program", PROGRAMS, ids=_rel)
def test_program_runs(program: Path, request: pytest.FixtureRequest) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ADDRBUS_URL", None)  # examples choose their own bus
    if _rel(program) in NEEDS_MQTT:
        env["ADDRBUS_MQTT_URL"] = request.getfixturevalue("mosquitto").url
    result = subprocess.run(
        [sys.executable, str(program)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{_rel(program)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{_rel(program)} printed nothing"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_page_code_is_a_tested_snippet(page: Path) -> None:
    blocks, dangling = parse_blocks(page.read_text(encoding="utf-8"))
    problems = [f"line {n}: snippet marker not followed by a code block" for n in dangling]
    for block in blocks:
        where = f"{_rel(page)}:{block.line}"
        if block.snippet is None:
            if block.lang == "python" and block.text.count("\n") > MAX_UNMARKED_LINES:
                problems.append(f"{where}: python block of more than {MAX_UNMARKED_LINES} lines has no snippet marker")
            continue
        source = ROOT / block.snippet
        if not source.is_file():
            problems.append(f"{where}: snippet {block.snippet} does not exist")
        elif source.read_bytes() != block.text.encode("utf-8"):
            problems.append(f"{where}: block differs from {block.snippet} (paste the file again)")
    assert not problems, "\n".join(problems)


def test_every_snippet_is_shown_somewhere() -> None:
    shown = {
        block.snippet
        for page in PAGES
        for block in parse_blocks(page.read_text(encoding="utf-8"))[0]
        if block.snippet is not None
    }
    unused = [_rel(p) for p in ROOT.glob("docs/snippets/*.py") if _rel(p) not in shown]
    assert not unused, f"snippets no page shows: {unused}"


def test_parse_blocks_reads_markers_and_fences() -> None:
    page = (
        "text\n<!-- snippet: docs/snippets/a.py -->\n```python\nx = 1\n```\n\n"
        "````markdown\n```python\nnot a block\n```\n````\n"
        "<!-- snippet: docs/snippets/b.py -->\nprose\n"
    )
    blocks, dangling = parse_blocks(page)
    assert [(b.lang, b.text, b.snippet) for b in blocks] == [
        ("python", "x = 1\n", "docs/snippets/a.py"),
        ("markdown", "```python\nnot a block\n```\n", None),
    ]
    assert dangling == [12]
