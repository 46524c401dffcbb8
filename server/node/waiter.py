"""Waiter: one result handed from the task that produces it to the tasks that wait for it.

Theory of operation: the node's tables of proposals, ReadIndex requests, applied-index waiters
and leadership rounds hold Waiters. A Waiter is an anyio Event plus the result (or the error)
set once; any number of tasks may :meth:`Waiter.wait` on it, and a waiter that is cancelled or
times out leaves it untouched for the others (no shielding needed). Setting a Waiter that is
already done does nothing, so a late answer after a timeout or a stop is harmless.

The event is asyncio's own, not anyio's: every proposal and linearizable read makes one, and
``anyio.Event()`` costs ten times as much (2.0 against 0.2 µs, measured: it looks up the
running async library first). The node runs on asyncio only (grpclib needs it).
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

__all__ = ["Waiter"]

T = TypeVar("T")


class Waiter(Generic[T]):
    """A result set once, awaited by any number of tasks (see the module docstring)."""

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        """True once a result or an error is set."""
        return self._event.is_set()

    def set_result(self, value: T) -> None:
        """Hand ``value`` to the waiting tasks (no-op when already done)."""
        if not self._event.is_set():
            self._value = value
            self._event.set()

    def set_exception(self, error: BaseException) -> None:
        """Make the waiting tasks raise ``error`` (no-op when already done)."""
        if not self._event.is_set():
            self._error = error
            self._event.set()

    async def wait(self) -> T:
        """The result once set (raises the error set instead)."""
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
