"""RWLock: shared readers, exclusive writers, in arrival order (etcd recipe ``RWMutex``).

:Status: Beta (same key layout as etcd's ``experimental/recipes`` RWMutex).

Theory of operation
-------------------
An RWLock ``name`` uses ephemeral keys ``name/read/<nanos>`` and ``name/write/<nanos>`` on
the session lease, ordered by revision (each key is created once, so its mod revision is
its creation revision ``myRev``):

* a **reader** holds the lock once no *writer* key has a revision below ``myRev``;
* a **writer** holds it once no key at all (reader or writer) has a revision below ``myRev``.

A reader that arrives after a waiting writer has a larger revision and so waits for that
writer: writers are not starved by a stream of readers. Each waiter waits for the last
blocking key below it (``max_mod_revision = myRev - 1``, sorted by mod revision descending,
limit 1) to be deleted, then looks again: one watched key at a time, as in etcd.

etcd's recipe reads the writer prefix as ``name/write`` and the whole lock as ``name``
(without the trailing slash), which also matches unrelated keys such as ``name2/...``; this
implementation uses ``name/write/`` and ``name/``, the same keys with tighter prefixes.

Error handling
--------------
* ``acquire_read`` / ``acquire_write`` take ``timeout`` and return False when it passes,
  removing the contender key; a session lost while waiting raises
  :class:`~coord.errors.SessionExpiredError`.
* ``read_lock()`` / ``write_lock()`` are context managers; ``is_owner()`` a txn compare.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, overload

from coord import AsyncClient, Client, CreateRevision
from coord.txn import Compare

from ._sync import bridge_of, is_async_client
from ._wait import put_unique, to_bytes, wait_delete
from .errors import LockNotHeldError, LockTimeoutError, SessionExpiredError
from .session import DEFAULT_TTL, AsyncSession, SessionUser, SyncSession, guarded

__all__ = ["AsyncRWLock", "RWLock", "SyncRWLock"]

EXPIRED = "rwmutex: session is expired"


class RWLock:
    """A readers-writer lock. ``RWLock(client, name)`` returns a sync or async face."""

    @overload
    def __new__(
        cls,
        client: Client,
        name: str | bytes,
        *,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> SyncRWLock: ...
    @overload
    def __new__(
        cls,
        client: AsyncClient,
        name: str | bytes,
        *,
        ttl: int = DEFAULT_TTL,
        session: AsyncSession | None = None,
    ) -> AsyncRWLock: ...
    def __new__(
        cls, client: Any, name: str | bytes, *, ttl: int = DEFAULT_TTL, session: Any = None
    ) -> Any:
        if cls is RWLock:
            cls = AsyncRWLock if is_async_client(client) else SyncRWLock
        return object.__new__(cls)


class AsyncRWLock(RWLock, SessionUser):
    """The RW lock on an :class:`~coord.AsyncClient` (see :class:`RWLock`)."""

    def __init__(
        self,
        client: AsyncClient,
        name: str | bytes,
        *,
        ttl: int = DEFAULT_TTL,
        session: AsyncSession | None = None,
    ) -> None:
        SessionUser.__init__(self, client, ttl, session)
        self.name = to_bytes(name)
        self.prefix = self.name + b"/"
        self._key: bytes | None = None  # my read/write key while held
        self._rev = 0  # its revision
        self.mode: str | None = None  # "read", "write" or None

    def is_owner(self) -> Compare:
        """A txn compare that holds only while this grant is in force."""
        if self._key is None:
            raise LockNotHeldError("rwmutex: lock not held")
        return CreateRevision(self._key) == self._rev

    async def _wait_below(self, prefix: bytes, rev: int) -> None:
        while True:
            res = await self.client.range(
                prefix, prefix=True, limit=1, sort="-mod", max_mod_revision=rev - 1
            )
            if not res.kvs:
                return
            await wait_delete(self.client, res.kvs[0].key, res.revision + 1)

    async def _acquire(self, mode: str, timeout: float | None) -> bool:
        if self.mode is not None:
            raise RuntimeError("this RWLock object already holds the lock")
        session = await self._open_session()
        key, rev = await put_unique(
            self.client, self.prefix + mode.encode() + b"/", b"", session.lease_id
        )
        blockers = self.prefix + b"write/" if mode == "read" else self.prefix
        done = False
        try:
            if await guarded(session, lambda: self._wait_below(blockers, rev), timeout, EXPIRED):
                kv = await self.client.get(key)
                if kv is None or session.expired:
                    raise SessionExpiredError(EXPIRED)
                done = True
                self._key, self._rev, self.mode = key, rev, mode
            return done
        finally:
            if not done:
                await self._abandon(key)

    async def acquire_read(self, timeout: float | None = None) -> bool:
        """Take the lock shared; True once held, False on timeout."""
        return await self._acquire("read", timeout)

    async def acquire_write(self, timeout: float | None = None) -> bool:
        """Take the lock exclusively; True once held, False on timeout."""
        return await self._acquire("write", timeout)

    async def release(self) -> None:
        """Release a read or write hold."""
        if self._key is None:
            raise LockNotHeldError("rwmutex: lock not held")
        key, self._key, self.mode = self._key, None, None
        await self.client.delete(key)
        await self._close_session()

    @asynccontextmanager
    async def read_lock(self, timeout: float | None = None) -> AsyncIterator[AsyncRWLock]:
        """``async with rw.read_lock():`` (raises LockTimeoutError on timeout)."""
        if not await self.acquire_read(timeout):
            raise LockTimeoutError()
        try:
            yield self
        finally:
            await self.release()

    @asynccontextmanager
    async def write_lock(self, timeout: float | None = None) -> AsyncIterator[AsyncRWLock]:
        """``async with rw.write_lock():`` (raises LockTimeoutError on timeout)."""
        if not await self.acquire_write(timeout):
            raise LockTimeoutError()
        try:
            yield self
        finally:
            await self.release()


class SyncRWLock(RWLock):
    """The RW lock on a sync :class:`~coord.Client` (see :class:`RWLock`)."""

    def __init__(
        self,
        client: Client,
        name: str | bytes,
        *,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> None:
        self._bridge = bridge = bridge_of(client)
        self.impl: AsyncRWLock = bridge.call(
            lambda: AsyncRWLock(
                bridge.aclient, name, ttl=ttl, session=session.impl if session else None
            )
        )

    mode = property(lambda self: self.impl.mode, doc='"read", "write" or None.')

    def is_owner(self) -> Compare:
        """A txn compare that holds only while this grant is in force."""
        return self.impl.is_owner()

    def acquire_read(self, timeout: float | None = None) -> bool:
        """Take the lock shared; True once held, False on timeout."""
        return bool(self._bridge.call(self.impl.acquire_read, timeout))

    def acquire_write(self, timeout: float | None = None) -> bool:
        """Take the lock exclusively; True once held, False on timeout."""
        return bool(self._bridge.call(self.impl.acquire_write, timeout))

    def release(self) -> None:
        """Release a read or write hold."""
        self._bridge.call(self.impl.release)

    @contextmanager
    def read_lock(self, timeout: float | None = None) -> Iterator[SyncRWLock]:
        """``with rw.read_lock():`` (raises LockTimeoutError on timeout)."""
        if not self.acquire_read(timeout):
            raise LockTimeoutError()
        try:
            yield self
        finally:
            self.release()

    @contextmanager
    def write_lock(self, timeout: float | None = None) -> Iterator[SyncRWLock]:
        """``with rw.write_lock():`` (raises LockTimeoutError on timeout)."""
        if not self.acquire_write(timeout):
            raise LockTimeoutError()
        try:
            yield self
        finally:
            self.release()
