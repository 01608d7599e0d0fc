"""Capped, jittered exponential backoff for reconnect loops (pure: no I/O, no sleeping)."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Compute reconnect delays: exponential growth, a cap, and "equal jitter".

    Each delay is drawn from ``[d/2, d]`` where ``d = min(cap, base * factor**n)``:
    half of it keeps a floor under the retry rate, the random half spreads a
    crowd of clients that lost the same server so they do not return in lockstep.
    """

    def __init__(
        self,
        base: float = 0.05,
        cap: float = 0.5,
        factor: float = 2.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if base <= 0 or cap < base or factor < 1:
            raise ValueError("backoff needs 0 < base <= cap and factor >= 1")
        self.base = base
        self.cap = cap
        self.factor = factor
        self._rand = rand
        self.attempts = 0

    def next_delay(self) -> float:
        """Return the delay before the next attempt, and count the attempt."""
        try:
            ceiling = min(self.cap, self.base * self.factor**self.attempts)
        except OverflowError:
            # factor**n leaves the float range after enough failures; by then
            # it has long passed the cap.
            ceiling = self.cap
        self.attempts += 1
        half = ceiling / 2
        return half + half * self._rand()

    def reset(self) -> None:
        """Start again from the smallest delay (call after a success)."""
        self.attempts = 0
