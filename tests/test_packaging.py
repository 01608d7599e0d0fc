"""What pyproject.toml promises: the Pythons tested, the extras in [all], the bench group kept apart,
complete package metadata, and an sdist that holds the examples its tests run."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_classifiers_list_the_pythons_make_test_runs_the_suite_on() -> None:
    tested = re.search(r"^PYTHONS \?= (.+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    assert tested is not None
    classified = [c.rsplit(" :: ", 1)[1] for c in PROJECT["project"]["classifiers"]
                  if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert classified == tested.group(1).split()
    assert PROJECT["project"]["requires-python"] == f">={classified[0]}"


def test_all_holds_every_extra_and_the_bench_group_is_no_extra() -> None:
    extras = PROJECT["project"]["optional-dependencies"]
    (everything,) = extras["all"]
    named = set(re.fullmatch(r"addrbus\[(.+)\]", everything).group(1).split(","))  # type: ignore[union-attr]
    assert named == set(extras) - {"all", "dev"}
    assert "speed" in named and "bench" not in extras
    bench = " ".join(PROJECT["dependency-groups"]["bench"])
    assert "tinybus" in bench and "lahja" in bench


def test_the_installed_metadata_says_what_pyproject_says() -> None:
    # Read from the installed (editable) project: building a wheel here would need hatchling,
    # which only pip's isolated build environment has. Installing builds the same METADATA.
    project = PROJECT["project"]
    meta = importlib.metadata.metadata("addrbus")
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    stale = "the installed metadata is older than pyproject.toml: run make (or pip install -e .) again"
    assert urls == project["urls"], stale
    assert set(urls) == {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    assert all(url.startswith("https://") for url in urls.values())
    assert meta["Summary"] == project["description"], stale
    assert meta["License-Expression"] == project["license"] == "MIT"
    assert meta["Requires-Python"] == project["requires-python"]
    assert meta.get_all("Classifier") == project["classifiers"], stale
    assert set(meta.get_all("Provides-Extra") or []) == set(project["optional-dependencies"]), stale
    assert meta["Author"] == ", ".join(a["name"] for a in project["authors"]), stale
    assert set(meta["Keywords"].split(",")) == set(project["keywords"]), stale
    assert meta["Description-Content-Type"] == "text/markdown"
    assert importlib.metadata.version("addrbus") == meta["Version"]


def test_the_readme_tells_users_how_to_install_every_extra() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert 'pip install "addrbus[all]"' in install
    named = set(re.findall(r"^\| `(\w+)` \|", install, re.M))
    assert named == set(PROJECT["project"]["optional-dependencies"]) - {"dev"}


def test_the_sdist_ships_the_examples_and_everything_the_suite_runs() -> None:
    include = PROJECT["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    roots = {entry.strip("/") for entry in include}
    assert {"src", "tests", "examples", "docs", "Makefile", "README.md", "CHANGELOG.md"} <= roots
    shipped = [*ROOT.glob("examples/**/*.py"), *ROOT.glob("docs/snippets/*.py")]
    assert any(p.parent.name == "two_services" for p in shipped)
    missing = [p for p in shipped if p.relative_to(ROOT).parts[0] not in roots]
    assert not missing, f"not in the sdist: {missing}"
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert not any(line.strip("/") in roots for line in ignored), "hatch leaves out what .gitignore names"
