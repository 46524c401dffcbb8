"""Lock: a distributed mutex with etcd's key layout, fencing tokens and ownership compares.

:Status: Production-ready (interoperates with ``etcdctl lock`` and Go's ``concurrency.Mutex``).

Theory of operation
-------------------
The lock ``name`` owns the prefix ``name + "/"``. A contender puts the key
``name/<lease id in lowercase hex>`` attached to its session lease, in one transaction shaped
exactly like ``concurrency.Mutex.tryAcquire``::

    If(CreateRevision(myKey) == 0)
    Then(Put(myKey, "", lease), Get(prefix, sort=create ascend, limit=1))
    Else(Get(myKey),             Get(prefix, sort=create ascend, limit=1))

``myRev`` is the transaction's revision (or the existing key's create revision: re-entrant
per lease, as in Go). Keys are granted in create-revision order: the contender whose key was
created first holds the lock. A waiter watches only its direct predecessor (the last-created
key with a smaller create revision, see :func:`~coord.recipes._wait.wait_turn`), so a release
wakes one process, not all of them.

After any wait the lock re-reads its own key and reports the lock held only if the key still
exists with ``myRev`` and the session is alive: etcd bug #11456 (found by Jepsen) granted the
lock to a waiter whose lease had expired while it waited.

``fencing_token`` is ``myRev``: it increases with every grant across all holders (revisions are
cluster-wide). ``is_owner()`` is ``CreateRevision(myKey) == myRev``, which fails as soon as the
key is gone (released, or deleted with an expired lease), so writes guarded by it in a txn are
safe even if this process stalls past its lease.

Error handling
--------------
* ``acquire(timeout=...)`` returns False on timeout and ``acquire(blocking=False)`` returns
  False at once if another session holds the lock; in both cases the contender key is removed.
* A session lost while waiting raises :class:`~coord.errors.SessionExpiredError` (message
  ``"mutex: session is expired"``); a lost session while holding makes ``is_owner()`` fail
  and ``held`` False (see :meth:`AsyncSession.on_lost`).
* Any other error or a cancellation while acquiring deletes the contender key before it
  propagates, so a failed ``acquire`` leaves nothing behind.
* Not re-entrant per object: acquiring a held ``Lock`` object raises ``RuntimeError``. Two
  ``Lock`` objects on the same name sharing one :class:`Session` share one key (as in Go).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, overload

from coord import AsyncClient, Client, CreateRevision, Get, Put
from coord.txn import Compare
from coord.types import KeyValue

from ._sync import bridge_of, is_async_client
from ._wait import lease_hex, to_bytes, wait_turn
from .errors import LockNotHeldError, SessionExpiredError
from .session import DEFAULT_TTL, AsyncSession, SessionUser, SyncSession, guarded

__all__ = ["AsyncLock", "Lock", "SyncLock"]

EXPIRED = "mutex: session is expired"


class Lock:
    """A distributed mutex (etcd ``concurrency.Mutex`` layout).

    ``Lock(client, name)`` returns a :class:`SyncLock` for a :class:`coord.Client` and an
    :class:`AsyncLock` for a :class:`coord.AsyncClient`.

    Args:
        client: the client.
        name: the lock name; keys live under ``name + "/"``.
        ttl: TTL of the lock's own session (ignored when ``session`` is given).
        session: share this session instead of creating one per acquisition.
    """

    @overload
    def __new__(
        cls,
        client: Client,
        name: str | bytes,
        *,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> SyncLock: ...
    @overload
    def __new__(
        cls,
        client: AsyncClient,
        name: str | bytes,
        *,
        ttl: int = DEFAULT_TTL,
        session: AsyncSession | None = None,
    ) -> AsyncLock: ...
    def __new__(
        cls, client: Any, name: str | bytes, *, ttl: int = DEFAULT_TTL, session: Any = None
    ) -> Any:
        if cls is Lock:
            cls = AsyncLock if is_async_client(client) else SyncLock
        return object.__new__(cls)


def owner_compare(key: bytes, rev: int) -> Compare:
    """``CreateRevision(key) == rev``: holds while the contender key created at ``rev`` exists."""
    return CreateRevision(key) == rev


async def _contend(
    client: AsyncClient, prefix: bytes, key: bytes, value: bytes, lease: int
) -> tuple[int, KeyValue | None, bool]:
    """Put ``key`` unless present, in Mutex.tryAcquire's txn shape.

    Returns ``(my create revision, first-created key under prefix, created now)``.
    """
    owner = Get(prefix, prefix=True, sort="create", limit=1)
    res = await client.txn(
        compare=[CreateRevision(key) == 0],
        success=[Put(key, value, lease=lease), owner],
        failure=[Get(key), owner],
    )
    ok, results = res
    if ok:
        rev = int(res.revision)
    else:
        mine: list[KeyValue] = results[0]
        rev = mine[0].create_revision
    first: list[KeyValue] = results[1]
    return rev, (first[0] if first else None), bool(ok)


class AsyncLock(Lock, SessionUser):
    """The lock on an :class:`~coord.AsyncClient` (see :class:`Lock`)."""

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
        self._key: bytes | None = None  # my contender key, set while acquiring / held
        self._rev = 0  # create revision of my key once held (0: never held)
        self._held = False  # True between a successful acquire and release

    def _check(self) -> None:
        """Invariants: a held lock has its key and token, and the key is under the prefix."""
        assert not self._held or (self._key is not None and self._rev > 0)
        assert self._key is None or self._key.startswith(self.prefix)

    @property
    def key(self) -> bytes | None:
        """The contender key ``name/<lease hex>`` (None before the first acquire)."""
        return self._key

    @property
    def held(self) -> bool:
        """True while this object holds the lock and its session is alive (local belief;
        use :meth:`is_owner` in a txn for the authoritative check)."""
        return self._held and self._session is not None and not self._session.expired

    @property
    def fencing_token(self) -> int:
        """The create revision of the key that won the lock: strictly increasing per grant."""
        if not self._rev:
            raise LockNotHeldError("mutex: lock was never acquired")
        return self._rev

    def is_owner(self) -> Compare:
        """A txn compare that holds only while this grant of the lock is still in force."""
        if self._key is None or not self._rev:
            raise LockNotHeldError("mutex: lock was never acquired")
        return owner_compare(self._key, self._rev)

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire the lock; True once held.

        Args:
            blocking: False returns False at once if another session holds the lock.
            timeout: seconds to wait at most (None: forever); False on timeout.

        Raises:
            SessionExpiredError: the session was lost before the lock was granted.
        """
        if self._held:
            raise RuntimeError("this Lock object already holds the lock (not re-entrant)")
        session = await self._open_session()
        key = self.prefix + lease_hex(session.lease_id).encode()
        self._key = key
        done = False
        try:
            rev, owner, _ = await _contend(self.client, self.prefix, key, b"", session.lease_id)
            if owner is None or owner.create_revision == rev:
                done = True
            elif blocking and (timeout is None or timeout > 0):
                # wait for my predecessors to go, then re-check my key and session before
                # reporting the lock held (etcd #11456); wait_turn reads both in one txn
                waited = await guarded(
                    session, lambda: wait_turn(self.client, self.prefix, key, rev), timeout, EXPIRED
                )
                if waited:
                    if session.expired:
                        raise SessionExpiredError(EXPIRED)
                    done = True
            if done:
                self._rev, self._held = rev, True
            return done
        finally:
            if not done:
                await self._abandon(key)

    async def release(self) -> None:
        """Release the lock (delete the key, or revoke the lock's own session).

        Raises:
            LockNotHeldError: this object does not hold the lock.
        """
        if not self._held or self._key is None:
            raise LockNotHeldError()
        self._held = False
        await self._release_key(self._key, self._rev)

    async def __aenter__(self) -> AsyncLock:
        await self.acquire()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()


class SyncLock(Lock):
    """The lock on a sync :class:`~coord.Client` (see :class:`Lock`)."""

    def __init__(
        self,
        client: Client,
        name: str | bytes,
        *,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> None:
        self._bridge = bridge = bridge_of(client)
        self.impl: AsyncLock = bridge.call(
            lambda: AsyncLock(
                bridge.aclient, name, ttl=ttl, session=session.impl if session else None
            )
        )

    name = property(lambda self: self.impl.name, doc="The lock name (bytes).")
    key = property(lambda self: self.impl.key, doc="The contender key (see AsyncLock.key).")
    held = property(lambda self: self.impl.held, doc="See :attr:`AsyncLock.held`.")

    @property
    def fencing_token(self) -> int:
        """The create revision of the key that won the lock: strictly increasing per grant."""
        return self.impl.fencing_token

    def is_owner(self) -> Compare:
        """A txn compare that holds only while this grant of the lock is still in force."""
        return self.impl.is_owner()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire the lock (see :meth:`AsyncLock.acquire`)."""
        return bool(self._bridge.call(self.impl.acquire, blocking, timeout))

    def release(self) -> None:
        """Release the lock (see :meth:`AsyncLock.release`)."""
        self._bridge.call(self.impl.release)

    def __enter__(self) -> SyncLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
