"""Barrier and DoubleBarrier (etcd ``experimental/recipes`` layouts).

:Status: Production-ready.

Theory of operation
-------------------
:class:`Barrier` is one key, ``name``. :meth:`~AsyncBarrier.hold` creates it (guarded by
``Version(name) == 0``), :meth:`~AsyncBarrier.release` deletes it, and
:meth:`~AsyncBarrier.wait` returns once it is absent (read, then watch from the read revision
for its DELETE). The key carries no lease: a barrier outlives the process that holds it.

:class:`DoubleBarrier` synchronises ``count`` participants at the start and at the end of a
computation. Participants are ephemeral keys ``name/waiters/<nanos>`` on the session lease;
``name/ready`` is the start signal:

* **enter**: create my waiter key; if mine is among the first ``count`` waiters (by create
  revision) and ``count`` waiters exist, put ``name/ready``; otherwise wait for a PUT of
  ``name/ready`` after my key's revision. A participant beyond the first ``count`` removes
  its key and gets :class:`~coord.recipes.errors.TooManyClientsError`.
  (etcd only signals when exactly ``count`` keys exist, which can strand a participant if an
  extra one races in; we signal whenever ``count`` or more exist and I am within the count.)
* **leave**: the waiter with the lowest mod revision leaves last: everyone else deletes its
  key and waits for the lowest one's DELETE; the lowest waits for the highest's DELETE, and
  when it is the only one left deletes ``name/ready`` and its key.

Error handling
--------------
* ``wait``, ``enter`` and ``leave`` take a timeout and return False when it passes (a timed
  out ``enter`` withdraws its waiter key).
* A DoubleBarrier participant whose session is lost raises
  :class:`~coord.errors.SessionExpiredError`; the others may then wait forever for it,
  so give them timeouts.
"""

from __future__ import annotations

from typing import Any, overload

import anyio

from coord import AsyncClient, Client, Delete, Put, Version
from coord.types import EventType, KeyValue

from ._sync import bridge_of, is_async_client
from ._wait import put_unique, to_bytes, wait_delete, watch_until
from .errors import SessionExpiredError, TooManyClientsError
from .session import DEFAULT_TTL, AsyncSession, SessionUser, SyncSession, guarded

__all__ = [
    "AsyncBarrier",
    "AsyncDoubleBarrier",
    "Barrier",
    "DoubleBarrier",
    "SyncBarrier",
    "SyncDoubleBarrier",
]


class Barrier:
    """A barrier that blocks waiters while it is held.

    ``Barrier(client, name)`` returns a :class:`SyncBarrier` or an :class:`AsyncBarrier`.
    """

    @overload
    def __new__(cls, client: Client, name: str | bytes) -> SyncBarrier: ...
    @overload
    def __new__(cls, client: AsyncClient, name: str | bytes) -> AsyncBarrier: ...
    def __new__(cls, client: Any, name: str | bytes) -> Any:
        if cls is Barrier:
            cls = AsyncBarrier if is_async_client(client) else SyncBarrier
        return object.__new__(cls)


class AsyncBarrier(Barrier):
    """The barrier on an :class:`~coord.AsyncClient` (see :class:`Barrier`)."""

    def __init__(self, client: AsyncClient, name: str | bytes) -> None:
        self.client = client
        self.key = to_bytes(name)

    async def hold(self) -> bool:
        """Raise the barrier; False if it was already held."""
        res = await self.client.txn(compare=[Version(self.key) == 0], success=[Put(self.key, b"")])
        return bool(res.succeeded)

    async def release(self) -> None:
        """Lower the barrier, letting every waiter through."""
        await self.client.delete(self.key)

    async def wait(self, timeout: float | None = None) -> bool:
        """Block while the barrier is held; True once released, False on timeout."""
        with anyio.move_on_after(timeout):
            res = await self.client.range(self.key)
            if res.kvs:
                await wait_delete(self.client, self.key, res.revision + 1)
            return True
        return False


class SyncBarrier(Barrier):
    """The barrier on a sync :class:`~coord.Client` (see :class:`Barrier`)."""

    def __init__(self, client: Client, name: str | bytes) -> None:
        self._bridge = bridge = bridge_of(client)
        self.impl = AsyncBarrier(bridge.aclient, name)

    def hold(self) -> bool:
        """Raise the barrier; False if it was already held."""
        return bool(self._bridge.call(self.impl.hold))

    def release(self) -> None:
        """Lower the barrier."""
        self._bridge.call(self.impl.release)

    def wait(self, timeout: float | None = None) -> bool:
        """Block while the barrier is held; True once released, False on timeout."""
        return bool(self._bridge.call(self.impl.wait, timeout))


class DoubleBarrier:
    """``count`` participants enter together and leave together.

    ``DoubleBarrier(client, name, count)`` returns a :class:`SyncDoubleBarrier` or an
    :class:`AsyncDoubleBarrier`.
    """

    @overload
    def __new__(
        cls,
        client: Client,
        name: str | bytes,
        count: int,
        *,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> SyncDoubleBarrier: ...
    @overload
    def __new__(
        cls,
        client: AsyncClient,
        name: str | bytes,
        count: int,
        *,
        ttl: int = DEFAULT_TTL,
        session: AsyncSession | None = None,
    ) -> AsyncDoubleBarrier: ...
    def __new__(
        cls,
        client: Any,
        name: str | bytes,
        count: int,
        *,
        ttl: int = DEFAULT_TTL,
        session: Any = None,
    ) -> Any:
        if cls is DoubleBarrier:
            cls = AsyncDoubleBarrier if is_async_client(client) else SyncDoubleBarrier
        return object.__new__(cls)


class AsyncDoubleBarrier(DoubleBarrier, SessionUser):
    """The double barrier on an :class:`~coord.AsyncClient` (see :class:`DoubleBarrier`)."""

    def __init__(
        self,
        client: AsyncClient,
        name: str | bytes,
        count: int,
        *,
        ttl: int = DEFAULT_TTL,
        session: AsyncSession | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        SessionUser.__init__(self, client, ttl, session)
        self.name = to_bytes(name)
        self.count = count
        self.waiters = self.name + b"/waiters/"
        self.ready = self.name + b"/ready"
        self._key: bytes | None = None  # my waiter key between enter and leave

    async def _waiters(self) -> tuple[list[KeyValue], int]:
        res = await self.client.range(self.waiters, prefix=True, sort="create")
        return res.kvs, res.revision

    async def enter(self, timeout: float | None = None) -> bool:
        """Wait until ``count`` participants have entered; False on timeout.

        Raises:
            TooManyClientsError: ``count`` participants are already in.
            SessionExpiredError: the session was lost while waiting.
        """
        if self._key is not None:
            raise RuntimeError("already entered")
        kvs, _ = await self._waiters()
        if len(kvs) >= self.count:
            raise TooManyClientsError()
        session = await self._open_session()
        key, rev = await put_unique(self.client, self.waiters, b"", session.lease_id)
        entered = False
        try:
            kvs, _ = await self._waiters()
            position = [kv.key for kv in kvs].index(key) if any(kv.key == key for kv in kvs) else -1
            if position < 0:
                raise SessionExpiredError()
            if position >= self.count:
                raise TooManyClientsError()
            if len(kvs) >= self.count:
                await self.client.put(self.ready, b"")
                entered = True
            else:

                async def ready_since_mine() -> tuple[bool | None, int]:
                    res = await self.client.range(self.ready)
                    return (
                        True if res.kvs and res.kvs[0].mod_revision > rev else None,
                        res.revision,
                    )

                entered = await guarded(
                    session,
                    lambda: watch_until(
                        self.client, self.ready, ready_since_mine, lambda e: e.type == EventType.PUT
                    ),
                    timeout,
                )
            if entered:
                self._key = key
            return entered
        finally:
            if not entered:
                with anyio.CancelScope(shield=True):
                    await self.client.delete(key)
                    await self._close_session()

    async def leave(self, timeout: float | None = None) -> bool:
        """Wait until every participant has left; False on timeout (still left: the key is
        gone unless this participant is the last, lowest one)."""
        if self._key is None:
            raise RuntimeError("not entered")
        with anyio.move_on_after(timeout):
            await self._leave(self._key)
            self._key = None
            await self._close_session()
            return True
        return False

    async def _leave(self, me: bytes) -> None:
        while True:
            kvs, rev = await self._waiters()
            if not kvs:
                return
            lowest = min(kvs, key=lambda kv: kv.mod_revision)
            highest = max(kvs, key=lambda kv: kv.mod_revision)
            if lowest.key == me:
                if len(kvs) == 1:
                    await self.client.txn(success=[Delete(self.ready), Delete(me)])
                    return
                await wait_delete(self.client, highest.key, rev + 1)
            else:
                await self.client.delete(me)
                await wait_delete(self.client, lowest.key, rev + 1)


class SyncDoubleBarrier(DoubleBarrier):
    """The double barrier on a sync :class:`~coord.Client` (see :class:`DoubleBarrier`)."""

    def __init__(
        self,
        client: Client,
        name: str | bytes,
        count: int,
        *,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> None:
        self._bridge = bridge = bridge_of(client)
        self.impl: AsyncDoubleBarrier = bridge.call(
            lambda: AsyncDoubleBarrier(
                bridge.aclient, name, count, ttl=ttl, session=session.impl if session else None
            )
        )

    def enter(self, timeout: float | None = None) -> bool:
        """See :meth:`AsyncDoubleBarrier.enter`."""
        return bool(self._bridge.call(self.impl.enter, timeout))

    def leave(self, timeout: float | None = None) -> bool:
        """See :meth:`AsyncDoubleBarrier.leave`."""
        return bool(self._bridge.call(self.impl.leave, timeout))
