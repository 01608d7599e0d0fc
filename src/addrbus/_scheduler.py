"""Scheduled jobs on APScheduler (placeholder: being written)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._bus import EventBus


class Job:
    """A scheduled job."""


class JobScheduler:
    """The jobs of one bus."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def add(self, trigger: Any, fn: Callable[..., Any] | None, *, name: str | None, singleton: bool) -> Any:
        raise NotImplementedError

    def jobs(self) -> list[Job]:
        return []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
