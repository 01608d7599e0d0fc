"""What pyproject.toml promises: the Pythons tested, the extras in [all], the bench group kept apart."""

from __future__ import annotations

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
