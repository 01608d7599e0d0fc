"""Round-robin weighted by handler count, across local and remote consumers."""

from __future__ import annotations

from collections import Counter
from typing import Any

from addrbus._core.routing import Router


class FakeReg:
    def __init__(self, address: str) -> None:
        self.address = address


def test_weighted_round_robin() -> None:
    router = Router()
    local: Any = FakeReg("a")
    router.add_local(local)
    router.set_node("n1", {"a": 3})
    router.set_node("n2", {"a": 1, "b": 1})
    picks = Counter(router.pick("a") for _ in range(500))
    assert picks == {local: 100, "n1": 300, "n2": 100}
    assert router.count("a") == 5


def test_nodes_come_and_go() -> None:
    router = Router()
    changes: list[int] = []
    router.on_change = lambda: changes.append(1)
    router.set_node("n1", {"a": 1})
    assert router.pick("a") == "n1"
    router.set_node("n1", {"b": 2})
    assert router.pick("a") is None and router.count("b") == 2
    assert router.remove_node("n1") and not router.remove_node("n1")
    assert router.pick("b") is None
    assert changes
