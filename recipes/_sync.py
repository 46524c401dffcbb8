"""Glue between the synchronous :class:`coord.Client` and the async recipe implementations.

Each recipe is written once, as async code on :class:`coord.AsyncClient`. The synchronous
``Client`` runs an ``AsyncClient`` on a background event-loop thread behind an anyio
blocking portal; a recipe's sync face builds its async twin *on that loop* (anyio objects
such as events must be created there) and forwards each call through the portal. Timeouts
are enforced inside the async code, so a blocked sync call returns when its timeout says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal

from coord import AsyncClient, Client

__all__ = ["Bridge", "bridge_of", "is_async_client"]

T = TypeVar("T")


def is_async_client(client: object) -> bool:
    """True for an :class:`~coord.AsyncClient`, False for a sync :class:`~coord.Client`."""
    if isinstance(client, AsyncClient):
        return True
    if isinstance(client, Client):
        return False
    raise TypeError(f"expected coord.Client or coord.AsyncClient, got {type(client).__name__}")


class Bridge:
    """The async client and portal behind one sync :class:`~coord.Client`."""

    def __init__(
        self, aclient: AsyncClient, portal: BlockingPortal, call: Callable[..., Any] | None = None
    ) -> None:
        self.aclient = aclient
        self.portal = portal
        # the client's own forwarder (cheaper than the portal for coroutines) when it has one
        self._call: Callable[..., Any] = call if call is not None else portal.call

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` (a coroutine function or a plain callable) on the client's loop."""
        return self._call(fn, *args)

    def iterate(self, aiter: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator living on the loop from this thread, one item at a time."""
        try:
            while True:
                try:
                    item = self.portal.call(aiter.__anext__)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(aiter, "aclose", None)
            if aclose is not None:
                self.portal.call(aclose)


def bridge_of(client: Client) -> Bridge:
    """The :class:`Bridge` of a sync client (its async core and blocking portal)."""
    return Bridge(client.async_client, client.portal, client.call)
