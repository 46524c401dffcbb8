"""Session: a lease kept alive for as long as a process wants its recipe keys to live.

:Status: Production-ready for the recipes in this package.

Theory of operation
-------------------
Every ephemeral recipe key (a lock's ``prefix/<lease hex>``, an election candidate, a
semaphore ticket, a claimed work item) is attached to a session's lease. The client keeps the
lease alive in the background (keep-alive every TTL/3); if the process dies or is partitioned
for longer than the TTL the server revokes the lease and deletes every key attached to it,
which is what releases the locks of a dead holder.

A session is *lost* when its lease stops being kept alive: it expired, was revoked by someone
else, or keep-alives failed for longer than the TTL. Loss is final (a session is never
re-created behind the caller's back, since everything that depended on it is gone): recipes
waiting on the session raise :class:`~coord.errors.SessionExpiredError`, ownership compares
start failing, and callbacks registered with :meth:`AsyncSession.on_lost` run once.

Error handling
--------------
* :meth:`close` revokes the lease (deleting every key attached to it); errors while revoking
  are swallowed because the lease expires on its own anyway.
* Check :attr:`expired` (or register :meth:`on_lost`) before acting on the strength of a lock
  held through this session; for writes inside etcd use the recipe's ownership compare.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, overload

import anyio

from coord import AsyncClient, Client, CreateRevision, Delete

from ._sync import bridge_of, is_async_client
from .errors import SessionExpiredError

__all__ = ["AsyncSession", "Session", "SyncSession"]

DEFAULT_TTL = 60


class Session:
    """A lease kept alive in the background; shareable by several recipes.

    ``Session(client)`` returns a :class:`SyncSession` for a :class:`coord.Client` and an
    :class:`AsyncSession` for a :class:`coord.AsyncClient`.

    Args:
        client: the client whose connection carries the lease.
        ttl: lease TTL in seconds (etcd's default for sessions is 60).
    """

    @overload
    def __new__(cls, client: Client, *, ttl: int = DEFAULT_TTL) -> SyncSession: ...
    @overload
    def __new__(cls, client: AsyncClient, *, ttl: int = DEFAULT_TTL) -> AsyncSession: ...
    def __new__(cls, client: Any, *, ttl: int = DEFAULT_TTL) -> Any:
        if cls is Session:
            cls = AsyncSession if is_async_client(client) else SyncSession
        return object.__new__(cls)


class AsyncSession(Session):
    """A session on an :class:`~coord.AsyncClient`; the lease is granted by :meth:`start`.

    Use ``async with Session(aclient) as s`` or ``await s.start()``; recipes given an
    unstarted session start it themselves.
    """

    def __init__(self, client: AsyncClient, *, ttl: int = DEFAULT_TTL) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.client = client
        self.ttl = ttl
        self._lease: Any = None  # the client's Lease once started
        self._lost = False  # True once the lease is known to be gone
        self._closed = False  # True after close(): lost on purpose
        self._callbacks: list[Callable[[], object]] = []
        self._lost_event: anyio.Event | None = None

    async def start(self) -> AsyncSession:
        """Grant the lease (idempotent) and return ``self``."""
        if self._closed:
            raise SessionExpiredError("coord: session is closed")
        if self._lease is None:
            self._lease = await self.client.lease(ttl=self.ttl)
            _on_lease_lost(self._lease, self._mark_lost)
        return self

    @property
    def started(self) -> bool:
        """True once the lease has been granted."""
        return self._lease is not None

    @property
    def lease_id(self) -> int:
        """The lease ID (raises if the session was never started)."""
        if self._lease is None:
            raise RuntimeError("session not started")
        return int(self._lease.id)

    @property
    def expired(self) -> bool:
        """True once the lease was lost or the session closed."""
        return self._lost or self._closed or _lease_is_lost(self._lease)

    def on_lost(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` (on the event loop) once when the session is lost or closed."""
        if self.expired:
            callback()
        else:
            self._callbacks.append(callback)

    async def wait_lost(self) -> None:
        """Return when the session is lost or closed."""
        if self.expired:
            return
        if self._lost_event is None:
            self._lost_event = anyio.Event()
        await self._lost_event.wait()

    def _mark_lost(self) -> None:
        if self._lost and not self._callbacks and self._lost_event is None:
            return
        self._lost = True
        callbacks, self._callbacks = self._callbacks, []
        if self._lost_event is not None:
            self._lost_event.set()
        for cb in callbacks:
            cb()

    async def close(self) -> None:
        """Revoke the lease (deleting its keys); the session is then expired for good."""
        if self._closed:
            return
        self._closed = True
        lease, self._lease = self._lease, None
        try:
            if lease is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(max(self.ttl, 1)):
                    await lease.revoke()
        except Exception:  # the lease expires by itself anyway
            pass
        finally:
            self._lease = lease
            self._mark_lost()

    async def __aenter__(self) -> AsyncSession:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class SyncSession(Session):
    """A session on a sync :class:`~coord.Client`; the lease is granted on construction."""

    def __init__(self, client: Client, *, ttl: int = DEFAULT_TTL) -> None:
        self._bridge = bridge_of(client)
        self.impl: AsyncSession = self._bridge.call(
            lambda: AsyncSession(self._bridge.aclient, ttl=ttl)
        )
        self._bridge.call(self.impl.start)

    @property
    def ttl(self) -> int:
        """Lease TTL in seconds."""
        return self.impl.ttl

    @property
    def lease_id(self) -> int:
        """The lease ID."""
        return self.impl.lease_id

    @property
    def expired(self) -> bool:
        """True once the lease was lost or the session closed."""
        return self.impl.expired

    def on_lost(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when the session is lost (it runs on the client's loop
        thread: keep it short and thread-safe)."""
        self._bridge.call(self.impl.on_lost, callback)

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Block until the session is lost (True) or ``timeout`` passes (False)."""

        async def wait() -> bool:
            with anyio.move_on_after(timeout):
                await self.impl.wait_lost()
                return True
            return False

        return bool(self._bridge.call(wait))

    def close(self) -> None:
        """Revoke the lease; the session is expired for good."""
        self._bridge.call(self.impl.close)

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _on_lease_lost(lease: Any, callback: Callable[[], None]) -> None:
    """Register ``callback`` with the client's lease loss notification."""
    lease.on_lost(lambda _lease: callback())


def _lease_is_lost(lease: Any) -> bool:
    """True once the client stopped keeping ``lease`` alive (lost, revoked, client closed)."""
    return lease is not None and not lease.alive


async def guarded(
    session: AsyncSession,
    wait: Callable[[], Any],
    timeout: float | None,
    message: str = "coord: session expired",
) -> bool:
    """Run ``await wait()`` until it returns (True) or ``timeout`` passes (False).

    The wait is abandoned, and :class:`SessionExpiredError` raised, as soon as ``session`` is
    lost: whatever the caller was waiting for can no longer be granted to it.
    """
    if session.expired:
        raise SessionExpiredError(message)
    lost = False
    error: Exception | None = None  # raised by wait(): re-raised as is, not as a group
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:

            async def watch_loss() -> None:
                nonlocal lost
                await session.wait_lost()
                lost = True
                tg.cancel_scope.cancel()

            tg.start_soon(watch_loss)
            try:
                await wait()
            except Exception as e:
                error = e
            tg.cancel_scope.cancel()
        if lost:
            raise SessionExpiredError(message)
        if error is not None:
            raise error
        return True
    if lost:
        raise SessionExpiredError(message)
    return False


class SessionUser:
    """Mixin for recipes whose keys live on a session: a shared one, or their own.

    A recipe given no session creates its own on first use and closes it (revoking the lease)
    when it no longer holds anything, so ``with Lock(client, "/jobs"):`` leaves no lease
    behind. A shared session is never closed by the recipe.
    """

    def __init__(self, client: AsyncClient, ttl: int, session: AsyncSession | None) -> None:
        if session is not None and session.client is not client:
            client = session.client
        self.client = client
        self._ttl = ttl
        self._session = session
        self._owns_session = session is None  # True: created and closed by this recipe

    async def _open_session(self) -> AsyncSession:
        """The session to put keys on (started; a fresh one if an owned one was lost)."""
        if self._session is None or (self._owns_session and self._session.expired):
            self._session = AsyncSession(self.client, ttl=self._ttl)
        return await self._session.start()

    async def _close_session(self) -> None:
        """Close the session if this recipe owns it."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _release_key(self, key: bytes, rev: int) -> None:
        """Give up the held ``key`` created at ``rev``: revoke the own session (which deletes
        it), or delete it only while it is still that incarnation."""
        if self._owns_session:
            await self._close_session()
        else:
            await self.client.txn(compare=[CreateRevision(key) == rev], success=[Delete(key)])

    async def _abandon(self, key: bytes) -> None:
        """Remove a contender ``key`` that will not be held (also on error or cancellation):
        shielded from cancellation and bounded by the TTL, after which the key would be gone
        with its lease anyway."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._ttl):
            try:
                if self._owns_session:
                    await self._close_session()  # revoking the lease deletes the key
                else:
                    await self.client.delete(key)
            except Exception:  # the key dies with its lease anyway
                pass

    @property
    def session(self) -> AsyncSession | None:
        """The session in use (None before first use of an owned one)."""
        return self._session
