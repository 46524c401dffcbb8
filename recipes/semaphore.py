"""Semaphore: at most ``n`` holders at once, granted in arrival order.

:Status: Beta (no etcd counterpart; layout chosen to mirror :mod:`~coord.recipes.lock`).

Theory of operation
-------------------
A semaphore ``name`` owns the prefix ``name + "/"``. A contender puts
``name/<lease id hex>`` on its session lease (same txn as the lock), getting its create
revision ``myRev``. It holds a permit while fewer than ``n`` keys under the prefix have a
smaller create revision. Keys are only ever added with larger revisions, so once a contender
is among the first ``n`` it stays there until it releases: at most ``n`` contenders hold a
permit at any moment (for as long as their sessions live), and permits are granted in
create-revision order (fair).

Waiting: a contender reads its predecessors (``max_create_revision = myRev - 1``,
``keys_only``), then watches the prefix for DELETE events from that read's revision and
counts down locally as predecessors disappear; only when fewer than ``n`` remain does it
re-read and take the permit. Releases therefore cost the other waiters no requests (no
thundering herd of reads), only the shared watch events.

Error handling
--------------
* ``acquire(timeout=...)`` returns False on timeout and ``acquire(blocking=False)`` False if
  no permit is free; the contender key is removed in both cases and on any error.
* A session lost while waiting raises :class:`~coord.errors.SessionExpiredError`.
* ``is_owner()`` gives a txn compare that fails once this permit's key is gone.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, overload

from coord import AsyncClient, Client
from coord.txn import Compare
from coord.types import EventType

from ._sync import bridge_of, is_async_client
from ._wait import lease_hex, to_bytes
from .errors import LockNotHeldError, SessionExpiredError
from .lock import _contend, owner_compare
from .session import DEFAULT_TTL, AsyncSession, SessionUser, SyncSession, guarded

__all__ = ["AsyncSemaphore", "Semaphore", "SyncSemaphore"]

EXPIRED = "semaphore: session is expired"


class Semaphore:
    """A counting semaphore with ``n`` permits.

    ``Semaphore(client, name, n)`` returns a :class:`SyncSemaphore` or an
    :class:`AsyncSemaphore`. Every participant must use the same ``n``.
    """

    @overload
    def __new__(
        cls,
        client: Client,
        name: str | bytes,
        n: int,
        *,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> SyncSemaphore: ...
    @overload
    def __new__(
        cls,
        client: AsyncClient,
        name: str | bytes,
        n: int,
        *,
        ttl: int = DEFAULT_TTL,
        session: AsyncSession | None = None,
    ) -> AsyncSemaphore: ...
    def __new__(
        cls, client: Any, name: str | bytes, n: int, *, ttl: int = DEFAULT_TTL, session: Any = None
    ) -> Any:
        if cls is Semaphore:
            cls = AsyncSemaphore if is_async_client(client) else SyncSemaphore
        return object.__new__(cls)


class AsyncSemaphore(Semaphore, SessionUser):
    """The semaphore on an :class:`~coord.AsyncClient` (see :class:`Semaphore`)."""

    def __init__(
        self,
        client: AsyncClient,
        name: str | bytes,
        n: int,
        *,
        ttl: int = DEFAULT_TTL,
        session: AsyncSession | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("n must be >= 1")
        SessionUser.__init__(self, client, ttl, session)
        self.name = to_bytes(name)
        self.prefix = self.name + b"/"
        self.n = n
        self._key: bytes | None = None  # my contender key
        self._rev = 0  # its create revision once a permit is held
        self._held = False

    def _check(self) -> None:
        """Invariant: a held permit has its key and create revision."""
        assert not self._held or (self._key is not None and self._rev > 0)

    @property
    def held(self) -> bool:
        """True while this object holds a permit and its session is alive."""
        return self._held and self._session is not None and not self._session.expired

    def is_owner(self) -> Compare:
        """A txn compare that holds only while this permit is in force."""
        if self._key is None or not self._rev:
            raise LockNotHeldError("semaphore: permit was never acquired")
        return owner_compare(self._key, self._rev)

    async def _predecessors(self, rev: int) -> tuple[set[bytes], int]:
        res = await self.client.range(
            self.prefix, prefix=True, keys_only=True, max_create_revision=rev - 1
        )
        return {kv.key for kv in res.kvs}, res.revision

    async def _wait_turn(self, rev: int) -> None:
        """Return once fewer than ``n`` keys precede the one created at ``rev``.

        The watch starts from now and the predecessors are read after it exists, so each
        DELETE newer than that read counts one down (see :mod:`coord.recipes._wait`).
        """
        watch = await self.client.watch(self.prefix, prefix=True, no_put=True)
        try:
            preds, read_rev = await self._predecessors(rev)
            if len(preds) < self.n:
                return
            async for event in watch:
                if event.type == EventType.DELETE and event.kv.mod_revision > read_rev:
                    preds.discard(event.kv.key)
                    if len(preds) < self.n:
                        return
        finally:
            await watch.aclose()

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a permit; True once held, False on timeout / when non-blocking and none free.

        Raises:
            SessionExpiredError: the session was lost before a permit was granted.
        """
        if self._held:
            raise RuntimeError("this Semaphore object already holds a permit")
        session = await self._open_session()
        key = self.prefix + lease_hex(session.lease_id).encode()
        self._key = key
        done = False
        try:
            rev, _, _ = await _contend(self.client, self.prefix, key, b"", session.lease_id)
            preds, _ = await self._predecessors(rev)
            if len(preds) < self.n:
                done = True
            elif (
                blocking
                and (timeout is None or timeout > 0)
                and await guarded(session, lambda: self._wait_turn(rev), timeout, EXPIRED)
            ):
                kv = await self.client.get(key)
                if kv is None or kv.create_revision != rev or session.expired:
                    raise SessionExpiredError(EXPIRED)
                done = True
            if done:
                self._rev, self._held = rev, True
            return done
        finally:
            if not done:
                await self._abandon(key)

    async def release(self) -> None:
        """Give the permit back.

        Raises:
            LockNotHeldError: this object holds no permit.
        """
        if not self._held or self._key is None:
            raise LockNotHeldError("semaphore: permit not held")
        self._held = False
        await self._release_key(self._key, self._rev)

    async def holders(self) -> list[bytes]:
        """Keys of the current permit holders (the first ``n`` contenders)."""
        res = await self.client.range(
            self.prefix, prefix=True, keys_only=True, sort="create", limit=self.n
        )
        return [kv.key for kv in res.kvs]

    async def __aenter__(self) -> AsyncSemaphore:
        await self.acquire()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()


class SyncSemaphore(Semaphore):
    """The semaphore on a sync :class:`~coord.Client` (see :class:`Semaphore`)."""

    def __init__(
        self,
        client: Client,
        name: str | bytes,
        n: int,
        *,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> None:
        self._bridge = bridge = bridge_of(client)
        self.impl: AsyncSemaphore = bridge.call(
            lambda: AsyncSemaphore(
                bridge.aclient, name, n, ttl=ttl, session=session.impl if session else None
            )
        )

    held = property(lambda self: self.impl.held, doc="See :attr:`AsyncSemaphore.held`.")

    def is_owner(self) -> Compare:
        """A txn compare that holds only while this permit is in force."""
        return self.impl.is_owner()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a permit (see :meth:`AsyncSemaphore.acquire`)."""
        return bool(self._bridge.call(self.impl.acquire, blocking, timeout))

    def release(self) -> None:
        """Give the permit back."""
        self._bridge.call(self.impl.release)

    def holders(self) -> list[bytes]:
        """Keys of the current permit holders."""
        return self._bridge.call(self.impl.holders)  # type: ignore[no-any-return]

    def __enter__(self) -> SyncSemaphore:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
