"""Election: leader election with etcd's key layout (``etcdctl elect`` interoperates).

:Status: Production-ready (same keys and txns as Go's ``concurrency.Election``).

Theory of operation
-------------------
An election ``name`` owns the prefix ``name + "/"``. A candidate puts
``name/<lease id hex>`` = its proposal, attached to its session lease, with
``If(CreateRevision(key) == 0) Then(Put(key, value, lease)) Else(Get(key))``; the candidate
whose key was created first is the leader. Like a lock, a candidate waits only for its
direct predecessor to be deleted (no herd) and re-reads its own key before reporting itself
elected (so an expired candidate is never told it won).

The leader can change its value with :meth:`proclaim` (a put guarded by
``CreateRevision(key) == rev``) and step down with :meth:`resign`. :meth:`observe` yields
the current leader's key-value and then every proclaimed value and every later leader, in
order (etcd's Observe).

Leadership is *lost* when the leader's key disappears without a resign: its session lease
expired or was revoked, or someone deleted the key. The loss is observable three ways:
:attr:`lost` becomes True, callbacks registered with :meth:`on_lost` run once, and
:meth:`wait_lost` returns. Session loss is reported automatically. Deletion of the key by a
third party is noticed by a watch: the sync :class:`SyncElection` runs it in the background
after winning; with :class:`AsyncElection` run ``await election.wait_lost()`` in a task of
your own (structured concurrency: the election has no task group of its own).

Error handling
--------------
* :meth:`campaign` returns False on timeout (withdrawing the candidacy), raises
  :class:`~coord.errors.SessionExpiredError` if the session is lost while campaigning, and
  withdraws the candidacy on any other error or cancellation.
* :meth:`proclaim` and :meth:`resign` raise :class:`~coord.recipes.errors.ElectionNotLeaderError`
  when this candidate is not the leader (any more).
* :meth:`leader` returns None when nobody campaigns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, overload

import anyio

from coord import AsyncClient, Client, CreateRevision, Delete, Get, Put
from coord.txn import Compare
from coord.types import EventType, KeyValue

from ._sync import bridge_of, is_async_client
from ._wait import first_created, lease_hex, to_bytes, wait_delete, wait_turn, watch_until
from .errors import ElectionNotLeaderError, SessionExpiredError
from .session import DEFAULT_TTL, AsyncSession, SessionUser, SyncSession, guarded

__all__ = ["AsyncElection", "Election", "SyncElection"]

EXPIRED = "election: session is expired"


class Election:
    """Leader election (etcd ``concurrency.Election`` layout).

    ``Election(client, name)`` returns a :class:`SyncElection` for a :class:`coord.Client`
    and an :class:`AsyncElection` for a :class:`coord.AsyncClient`.

    Args:
        client: the client.
        name: the election name; candidates live under ``name + "/"``.
        ttl: TTL of the election's own session (ignored when ``session`` is given).
        session: campaign on this session instead of one of the election's own.
    """

    @overload
    def __new__(
        cls,
        client: Client,
        name: str | bytes,
        *,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> SyncElection: ...
    @overload
    def __new__(
        cls,
        client: AsyncClient,
        name: str | bytes,
        *,
        ttl: int = DEFAULT_TTL,
        session: AsyncSession | None = None,
    ) -> AsyncElection: ...
    def __new__(
        cls, client: Any, name: str | bytes, *, ttl: int = DEFAULT_TTL, session: Any = None
    ) -> Any:
        if cls is Election:
            cls = AsyncElection if is_async_client(client) else SyncElection
        return object.__new__(cls)


class AsyncElection(Election, SessionUser):
    """The election on an :class:`~coord.AsyncClient` (see :class:`Election`)."""

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
        self._key: bytes | None = None  # my candidate key while campaigning / leading
        self._rev = 0  # its create revision once elected (0: never)
        self._leader = False  # elected and neither resigned nor lost
        self._lost = False  # leadership ended without resign()
        self._callbacks: list[Callable[[], object]] = []
        self._lost_event: anyio.Event | None = None

    # -- state ---------------------------------------------------------------------------

    def _check(self) -> None:
        """Invariants: a leader has its key and term revision; loss implies having led."""
        assert not self._leader or (self._key is not None and self._rev > 0)
        assert not self._lost or self._rev > 0

    @property
    def key(self) -> bytes | None:
        """My candidate key ``name/<lease hex>``."""
        return self._key

    @property
    def rev(self) -> int:
        """Create revision of my key once elected (a fencing token for this term)."""
        return self._rev

    @property
    def is_leader(self) -> bool:
        """True while elected and not resigned or lost (local belief; see :meth:`is_owner`)."""
        return self._leader and not self.lost

    @property
    def lost(self) -> bool:
        """True once leadership ended without :meth:`resign` (session or key gone)."""
        if self._leader and self._session is not None and self._session.expired:
            self._mark_lost()
        return self._lost

    def is_owner(self) -> Compare:
        """A txn compare that holds only while this term of leadership lasts."""
        if self._key is None or not self._rev:
            raise ElectionNotLeaderError()
        return CreateRevision(self._key) == self._rev

    def on_lost(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once if leadership is lost (not on resign)."""
        if self._lost:
            callback()
        else:
            self._callbacks.append(callback)

    def _mark_lost(self) -> None:
        if not self._leader or self._lost:
            return
        self._lost = True
        if self._lost_event is not None:
            self._lost_event.set()
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb()

    async def wait_lost(self) -> None:
        """Return when leadership is lost (session lost or leader key deleted by others).

        Returns at once if not leader. Resigning does not wake it: cancel it instead.
        """
        if not self._leader or self.lost or self._session is None or self._key is None:
            return
        session, key = self._session, self._key
        if self._lost_event is None:
            self._lost_event = anyio.Event()
        event = self._lost_event
        async with anyio.create_task_group() as tg:

            async def key_gone() -> None:
                kv = await self.client.get(key)
                if kv is None or kv.create_revision != self._rev:
                    self._mark_lost()
                else:
                    await wait_delete(self.client, key, kv.mod_revision + 1)
                    if self._leader:
                        self._mark_lost()

            async def session_gone() -> None:
                await session.wait_lost()
                self._mark_lost()

            async def done() -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(key_gone)
            tg.start_soon(session_gone)
            tg.start_soon(done)

    # -- operations ----------------------------------------------------------------------

    async def campaign(self, value: str | bytes, timeout: float | None = None) -> bool:
        """Become leader with ``value``; True once elected, False on timeout.

        Raises:
            SessionExpiredError: the session was lost while campaigning.
        """
        if self._leader and not self.lost:
            raise RuntimeError("already leader: proclaim() a new value or resign() first")
        session = await self._open_session()
        val = to_bytes(value)
        key = self.prefix + lease_hex(session.lease_id).encode()
        self._key, self._rev, self._leader, self._lost = key, 0, False, False
        self._lost_event = None
        won = False
        try:
            res = await self.client.txn(
                compare=[CreateRevision(key) == 0],
                success=[Put(key, val, lease=session.lease_id)],
                failure=[Get(key)],
            )
            ok, results = res
            if ok:
                rev = int(res.revision)
            else:
                kv: KeyValue = results[0][0]
                rev = kv.create_revision
                if kv.value != val:
                    await self.client.txn(
                        compare=[CreateRevision(key) == rev],
                        success=[Put(key, val, lease=session.lease_id)],
                    )
            # wait for earlier candidates to go; wait_turn also re-checks my key each round
            waited = await guarded(
                session,
                lambda: wait_turn(self.client, self.prefix, key, rev, EXPIRED),
                timeout,
                EXPIRED,
            )
            if not waited:
                return False
            if session.expired:
                raise SessionExpiredError(EXPIRED)
            self._rev, self._leader, won = rev, True, True
            session.on_lost(self._mark_lost)
            return True
        finally:
            if not won:
                await self._abandon(key)

    async def proclaim(self, value: str | bytes) -> None:
        """Set a new leader value without an election.

        Raises:
            ElectionNotLeaderError: not the leader (any more).
        """
        if not self._leader or self._key is None or self._session is None:
            raise ElectionNotLeaderError()
        ok, _ = await self.client.txn(
            compare=[self.is_owner()],
            success=[Put(self._key, to_bytes(value), lease=self._session.lease_id)],
        )
        if not ok:
            self._mark_lost()
            raise ElectionNotLeaderError()

    async def resign(self) -> None:
        """Step down (delete my key); the next candidate is elected.

        Raises:
            ElectionNotLeaderError: not the leader (any more).
        """
        if not self._leader or self._key is None:
            raise ElectionNotLeaderError()
        was_lost = self.lost
        self._leader = False
        try:
            ok, _ = await self.client.txn(
                compare=[CreateRevision(self._key) == self._rev], success=[Delete(self._key)]
            )
        finally:
            await self._close_session()
        if was_lost or not ok:
            raise ElectionNotLeaderError()

    async def leader(self) -> KeyValue | None:
        """The current leader's key-value (first-created candidate), or None."""
        kv, _ = await first_created(self.client, self.prefix)
        return kv

    async def observe(self) -> AsyncIterator[KeyValue]:
        """Yield the leader's key-value now and at every change (new value or new leader).

        Its watches start from now (see :func:`~coord.recipes._wait.watch_until`): a change
        between a read and the watch's creation is found by reading the leader's key again.
        """
        last: tuple[bytes, int] | None = None

        async def leader_now() -> tuple[tuple[KeyValue, int] | None, int]:
            kv, rev = await first_created(self.client, self.prefix)
            return (None if kv is None else (kv, rev)), rev

        while True:
            kv, rev = await watch_until(
                self.client, self.prefix, leader_now, lambda e: e.type == EventType.PUT, prefix=True
            )
            watch = await self.client.watch(kv.key)
            try:
                if watch.revision > rev:  # the store moved since the read: read the key again
                    res = await self.client.range(kv.key)
                    rev = res.revision
                    if not res.kvs or res.kvs[0].create_revision != kv.create_revision:
                        continue  # that leader is gone: find the next one
                    kv = res.kvs[0]
                if last != (kv.key, kv.mod_revision):
                    last = (kv.key, kv.mod_revision)
                    yield kv
                async for ev in watch:
                    if ev.kv.mod_revision <= rev:
                        continue
                    if ev.type == EventType.DELETE:
                        break
                    last = (ev.kv.key, ev.kv.mod_revision)
                    yield ev.kv
            finally:
                await watch.aclose()

    async def __aenter__(self) -> AsyncElection:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._leader:
            with anyio.CancelScope(shield=True):
                try:
                    await self.resign()
                except ElectionNotLeaderError:
                    pass


class SyncElection(Election):
    """The election on a sync :class:`~coord.Client` (see :class:`Election`).

    After winning, a background task on the client's loop watches for loss of leadership,
    so :attr:`lost` and :meth:`on_lost` also catch a leader key deleted by a third party.
    """

    def __init__(
        self,
        client: Client,
        name: str | bytes,
        *,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> None:
        self._bridge = bridge = bridge_of(client)
        self.impl: AsyncElection = bridge.call(
            lambda: AsyncElection(
                bridge.aclient, name, ttl=ttl, session=session.impl if session else None
            )
        )
        self._monitor: Any = None

    name = property(lambda self: self.impl.name, doc="The election name (bytes).")
    key = property(lambda self: self.impl.key, doc="My candidate key.")
    rev = property(lambda self: self.impl.rev, doc="Create revision of my key once elected.")
    is_leader = property(lambda self: self.impl.is_leader, doc="See AsyncElection.is_leader.")
    lost = property(lambda self: self.impl.lost, doc="See :attr:`AsyncElection.lost`.")

    def is_owner(self) -> Compare:
        """A txn compare that holds only while this term of leadership lasts."""
        return self.impl.is_owner()

    def on_lost(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once if leadership is lost (runs on the client's loop thread)."""
        self._bridge.call(self.impl.on_lost, callback)

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Block until leadership is lost (True) or ``timeout`` passes (False)."""

        async def wait() -> bool:
            with anyio.move_on_after(timeout):
                await self.impl.wait_lost()
                return self.impl.lost
            return False

        return bool(self._bridge.call(wait))

    def campaign(self, value: str | bytes, timeout: float | None = None) -> bool:
        """Become leader (see :meth:`AsyncElection.campaign`)."""
        won = bool(self._bridge.call(self.impl.campaign, value, timeout))
        if won:
            self._stop_monitor()
            self._monitor = self._bridge.portal.start_task_soon(self.impl.wait_lost)
        return won

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None

    def proclaim(self, value: str | bytes) -> None:
        """Set a new leader value (see :meth:`AsyncElection.proclaim`)."""
        self._bridge.call(self.impl.proclaim, value)

    def resign(self) -> None:
        """Step down (see :meth:`AsyncElection.resign`)."""
        self._stop_monitor()
        self._bridge.call(self.impl.resign)

    def leader(self) -> KeyValue | None:
        """The current leader's key-value, or None."""
        return self._bridge.call(self.impl.leader)  # type: ignore[no-any-return]

    def observe(self) -> Iterator[KeyValue]:
        """Iterate over the leader now and at every change (see :meth:`AsyncElection.observe`)."""
        aiter = self._bridge.call(self.impl.observe)
        return self._bridge.iterate(aiter)

    def __enter__(self) -> SyncElection:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.impl._leader:
            try:
                self.resign()
            except ElectionNotLeaderError:
                pass
