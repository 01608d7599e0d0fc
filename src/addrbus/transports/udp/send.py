"""The sending side of udp://: pacing to a rate, and waiting (bounded) on a full socket.

Every datagram books a slot on a virtual clock, costing what it will take of a
receiver's buffer (the payload plus the kernel's per-datagram overhead), so a
burst never outruns the receivers; bursts up to :data:`BURST_BYTES` go at once.
A socket that reports EAGAIN is waited on for writability, one that reports
ENOBUFS (no event exists for it) with a short backoff, both within the call's
timeout. Each ``sendmsg`` hands the header and the frame to the kernel
separately, so the frame is never copied.
"""

from __future__ import annotations

import asyncio
import errno
from typing import TYPE_CHECKING, Any

from ..._exceptions import MessageTooLarge, TransportError
from .wire import MAX_PAYLOAD

if TYPE_CHECKING:
    import socket

DEFAULT_RATE = 64.0  # MiB per second
BURST_BYTES = 256 * 1024  # sent unpaced; below the smallest usual receive buffer (416 KiB)
OVERHEAD = 1024  # what the kernel charges a receive buffer per datagram, beyond the payload
BURST = 32  # datagrams sent between two yields, so receivers on our own loop drain
DEFAULT_TIMEOUT = 5.0


def _send_error(addr: tuple[str, int], exc: OSError) -> TransportError:
    return TransportError(f"UDP send to {addr[0]}:{addr[1]} failed: {exc}")


class Sender:
    """Send datagrams from the node socket, paced to ``rate`` MiB/s (0: no cap)."""

    def __init__(self, rate: float, counts: dict[str, int]) -> None:
        self.rate = rate
        self._bytes_per_s = rate * 1024 * 1024
        self._counts = counts
        self.sock: socket.socket | None = None  # the node socket, while started
        self.writable: asyncio.Future[None] | None = None  # set when the full socket drains
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_slot = 0.0  # loop time at which the pacer lets the next datagram go
        self._since_yield = 0

    def open(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        """Start sending from ``sock``."""
        self.sock, self._loop, self._next_slot = sock, loop, 0.0

    def close(self) -> None:
        """Stop sending: senders waiting for a full socket wake and raise."""
        self.sock = None
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)  # senders wake, see no socket, raise
        self.writable = None

    async def send(self, header: bytes, frame: Any, addr: tuple[str, int], limit: float | None) -> None:
        """Send one datagram, ``header`` then ``frame``, to ``addr`` within ``limit`` seconds.

        :raises MessageTooLarge: if the frame exceeds :data:`MAX_PAYLOAD`.
        :raises TransportError: if stopped, refused, or the socket stayed full.
        """
        size = frame.nbytes if isinstance(frame, memoryview) else len(frame)
        if size > MAX_PAYLOAD:
            raise MessageTooLarge(size, MAX_PAYLOAD, scheme="udp")
        sock = self.sock
        if sock is None or self._loop is None:
            raise TransportError("the UDP transport is not started")
        if self._bytes_per_s:
            now = self._loop.time()
            slot = max(self._next_slot, now - BURST_BYTES / self._bytes_per_s)
            if slot > now:
                bound = DEFAULT_TIMEOUT if limit is None else limit
                if slot - now > bound:
                    raise TransportError(f"UDP send timed out after {bound}s queued behind the {self.rate} MiB/s cap")
                self._next_slot = slot + self._cost(size)
                self._counts["paced_waits"] += 1
                self._since_yield = 0
                # Wake at the slot itself, not "now + delay": two senders booked
                # 20 µs apart must not swap places by the time each read the clock.
                wake = self._loop.create_future()
                timer = self._loop.call_at(slot, wake.set_result, None)
                try:
                    await wake
                finally:
                    timer.cancel()
                limit = bound - (slot - now)
                sock = self.sock
                if sock is None:
                    raise TransportError("the UDP transport stopped during a send")
            else:
                self._next_slot = slot + self._cost(size)
        try:
            sock.sendmsg((header, frame), (), 0, addr)
        except (BlockingIOError, InterruptedError):
            await self._send_later(header, frame, addr, limit, errno.EAGAIN)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise _send_error(addr, exc) from exc
            await self._send_later(header, frame, addr, limit, errno.ENOBUFS)
        self._counts["frames_sent"] += 1
        self._since_yield += 1
        if self._since_yield >= BURST:
            # Receivers on our own event loop drain only when we yield.
            self._since_yield = 0
            await asyncio.sleep(0)

    def _cost(self, size: int) -> float:
        """Return the seconds of pacing one datagram of ``size`` bytes books."""
        return (size + OVERHEAD) / self._bytes_per_s

    async def _send_later(
        self, header: bytes, frame: Any, addr: tuple[str, int], limit: float | None, err: int
    ) -> None:
        loop = asyncio.get_running_loop()
        bound = DEFAULT_TIMEOUT if limit is None else limit
        deadline = loop.time() + bound
        delay = 0.0005
        while True:
            self._counts["send_waits"] += 1
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    if err == errno.ENOBUFS:
                        # No writability event exists for ENOBUFS: back off briefly.
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 0.05)
                    else:
                        await asyncio.shield(self._wait_writable(loop))
            except TimeoutError:
                raise TransportError(f"UDP send timed out after {bound}s: the socket stayed full") from None
            sock = self.sock
            if sock is None:
                raise TransportError("the UDP transport stopped during a send")
            try:
                sock.sendmsg((header, frame), (), 0, addr)
                return
            except (BlockingIOError, InterruptedError):
                err = errno.EAGAIN
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise _send_error(addr, exc) from exc
                err = errno.ENOBUFS

    def _wait_writable(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        # One shared future: a file descriptor has a single writer callback.
        if self.writable is None or self.writable.done():
            assert self.sock is not None
            fd = self.sock.fileno()
            future: asyncio.Future[None] = loop.create_future()

            def ready() -> None:
                loop.remove_writer(fd)
                if not future.done():
                    future.set_result(None)

            loop.add_writer(fd, ready)
            self.writable = future
        return self.writable
