"""This bus as a node: its identity on the wire and where it is in its lifecycle."""

from __future__ import annotations

import asyncio

from .._ids import id_source, new_node_id


class Node:
    """The identity every part of one bus shares; ``renew()`` makes it a new node (a restarted bus).

    Attributes:
        namespace: buses in different namespaces never exchange a message.
        id: the node id peers know this bus by.
        next_id: make a message id unique across the bus.
        running: the bus takes new messages.
        answering: replies still go out (true while ``stop()`` lets handlers finish).
        loop: the event loop the bus was started on; every call must come from it.
        thread: the id of the thread running ``loop`` (checked first: it is cheaper).
    """

    __slots__ = ("answering", "id", "loop", "namespace", "next_id", "running", "thread")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.running = self.answering = False
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop it runs on, while running
        self.thread = 0  # the thread that loop runs in
        self.id = ""
        self.renew()

    def renew(self) -> None:
        """Take a fresh node id (and id source)."""
        self.id = new_node_id()
        self.next_id = id_source(self.id)
