"""WorkQueue: at-least-once work distribution with acks, redelivery and dead letters.

:Status: Beta (no etcd counterpart).

Theory of operation
-------------------
Keys under ``name/``:

* ``items/<id>``  the item, persistent (no lease); value ``b"<deliveries>\\n" + payload``.
  ``<id>`` is the enqueue time in nanoseconds plus a random suffix, so key order is FIFO.
* ``claims/<id>`` present while a live worker holds the item; attached to the worker's
  session lease, value = the worker's lease ID in hex.
* ``dead/<id>``   items that were delivered ``max_deliveries`` times without an ack.

Every transition is one txn whose compares pin the state it read, so no item is ever lost
or held twice:

=========  ==========================================  ==========================================
step       compares                                    operations
=========  ==========================================  ==========================================
put        ``Version(item) == 0``                      put item (deliveries 0)
claim      ``CreateRevision(claim) == 0``,             put claim (on my lease), put item with
           ``ModRevision(item) == seen``               deliveries + 1
ack        ``CreateRevision(claim) == myClaimRev``     delete claim, delete item
nack       ``CreateRevision(claim) == myClaimRev``     delete claim (item visible again)
dead       ``CreateRevision(claim) == 0`` (or mine),   delete item (and claim), put dead letter
           ``ModRevision(item) == seen``
=========  ==========================================  ==========================================

A worker that dies stops refreshing its lease; when it expires the server deletes its claim
keys, and their items become visible again with the delivery already counted. An item whose
delivery count has reached ``max_deliveries`` is moved to ``dead/`` instead of being claimed
again (or on ``nack``).

``get`` reads the first page of items and all claims in one read-only txn and claims the
first unclaimed item (FIFO); after losing a claim race it picks randomly among the first few
unclaimed items instead, so concurrent workers stop colliding. When
nothing is claimable it watches ``name/`` for a new item or a released claim (from now, then
reading again: see :func:`~coord.recipes._wait.watch_until`).

Error handling
--------------
* ``get(timeout=...)`` returns None when nothing could be claimed in time.
* ``ack``/``nack`` raise :class:`~coord.recipes.errors.ClaimLostError` when the claim is gone
  (the worker's session was lost): the item will be (or was) redelivered, so processing must
  be idempotent, as with any at-least-once queue.
* ``close()`` revokes the worker's session: every item it still holds becomes visible again.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any, overload

import anyio

from coord import AsyncClient, Client, CreateRevision, Delete, Get, ModRevision, Put, Version
from coord.txn import Compare
from coord.types import EventType, KeyValue

from ._sync import bridge_of, is_async_client
from ._wait import lease_hex, prefix_end, to_bytes, watch_until
from .errors import ClaimLostError
from .session import DEFAULT_TTL, AsyncSession, SessionUser, SyncSession, guarded

__all__ = [
    "AsyncWorkItem",
    "AsyncWorkQueue",
    "DeadLetter",
    "SyncWorkItem",
    "SyncWorkQueue",
    "WorkQueue",
]

PAGE = 64  # items read per round trip when looking for an unclaimed one
SPREAD = 8  # pick randomly among this many first unclaimed items


def encode_item(deliveries: int, payload: bytes) -> bytes:
    """An item's stored value: delivery count, newline, payload."""
    return b"%d\n" % deliveries + payload


def decode_item(value: bytes) -> tuple[int, bytes]:
    """Inverse of :func:`encode_item`."""
    head, _, payload = value.partition(b"\n")
    return int(head), payload


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An item moved to the dead-letter prefix: its id, payload and delivery count."""

    id: bytes
    value: bytes
    deliveries: int


class WorkQueue:
    """An at-least-once work queue. ``WorkQueue(client, name)`` returns a sync or async face.

    Args:
        client: the client.
        name: the queue name (keys under ``name + "/"``).
        max_deliveries: deliveries after which an un-acked item goes to ``dead/``.
        ttl: TTL of the worker session holding the claims (ignored with ``session``).
        session: hold claims on this session.
    """

    @overload
    def __new__(
        cls,
        client: Client,
        name: str | bytes,
        *,
        max_deliveries: int = 5,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> SyncWorkQueue: ...
    @overload
    def __new__(
        cls,
        client: AsyncClient,
        name: str | bytes,
        *,
        max_deliveries: int = 5,
        ttl: int = DEFAULT_TTL,
        session: AsyncSession | None = None,
    ) -> AsyncWorkQueue: ...
    def __new__(
        cls,
        client: Any,
        name: str | bytes,
        *,
        max_deliveries: int = 5,
        ttl: int = DEFAULT_TTL,
        session: Any = None,
    ) -> Any:
        if cls is WorkQueue:
            cls = AsyncWorkQueue if is_async_client(client) else SyncWorkQueue
        return object.__new__(cls)


class AsyncWorkItem:
    """A claimed item: ``value`` (payload), ``deliveries`` (1 on first delivery), ack/nack."""

    def __init__(
        self, queue: AsyncWorkQueue, item_id: bytes, value: bytes, deliveries: int, claim_rev: int
    ) -> None:
        self.queue = queue
        self.id = item_id
        self.value = value
        self.deliveries = deliveries
        self.claim_rev = claim_rev  # create revision of my claim key
        self.done = False  # acked or nacked

    def is_owner(self) -> Compare:
        """A txn compare that holds while this claim is in force."""
        return CreateRevision(self.queue.claims + self.id) == self.claim_rev

    async def ack(self) -> None:
        """Remove the item for good.

        Raises:
            ClaimLostError: the claim is gone (the item will be redelivered).
        """
        q = self.queue
        res = await q.client.txn(
            compare=[self.is_owner()],
            success=[Delete(q.claims + self.id), Delete(q.items + self.id)],
        )
        self.done = True
        if not res.succeeded:
            raise ClaimLostError()

    async def nack(self) -> None:
        """Give the item back (visible again, or dead-lettered at ``max_deliveries``).

        Raises:
            ClaimLostError: the claim is gone (the item is visible again anyway).
        """
        q = self.queue
        ops: list[Any] = [Delete(q.claims + self.id)]
        if self.deliveries >= q.max_deliveries:
            ops += [
                Delete(q.items + self.id),
                Put(q.dead + self.id, encode_item(self.deliveries, self.value)),
            ]
        res = await q.client.txn(compare=[self.is_owner()], success=ops)
        self.done = True
        if not res.succeeded:
            raise ClaimLostError()


class AsyncWorkQueue(WorkQueue, SessionUser):
    """The work queue on an :class:`~coord.AsyncClient` (see :class:`WorkQueue`)."""

    def __init__(
        self,
        client: AsyncClient,
        name: str | bytes,
        *,
        max_deliveries: int = 5,
        ttl: int = DEFAULT_TTL,
        session: AsyncSession | None = None,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be >= 1")
        SessionUser.__init__(self, client, ttl, session)
        self.name = to_bytes(name)
        self.prefix = self.name + b"/"
        self.items = self.prefix + b"items/"
        self.claims = self.prefix + b"claims/"
        self.dead = self.prefix + b"dead/"
        self.max_deliveries = max_deliveries

    async def put(self, value: str | bytes) -> bytes:
        """Enqueue an item; returns its id."""
        payload = to_bytes(value)
        while True:
            item_id = b"%020d-%s" % (time.time_ns(), uuid.uuid4().hex[:8].encode())
            res = await self.client.txn(
                compare=[Version(self.items + item_id) == 0],
                success=[Put(self.items + item_id, encode_item(0, payload))],
            )
            if res.succeeded:
                return item_id

    async def _try_claim(self, session: AsyncSession) -> AsyncWorkItem | int:
        """Claim one item; else return the revision to watch from (nothing claimable)."""
        start = self.items
        collided = False  # lost a claim race: spread out over the first few free items
        while True:
            res = await self.client.txn(
                success=[
                    Get(start, prefix_end(self.items), limit=PAGE),
                    Get(self.claims, prefix=True, keys_only=True),
                ]
            )
            page: list[KeyValue] = res.results[0]  # type: ignore[assignment]
            claim_kvs: list[KeyValue] = res.results[1]  # type: ignore[assignment]
            claimed = {kv.key[len(self.claims) :] for kv in claim_kvs}
            free = [kv for kv in page if kv.key[len(self.items) :] not in claimed]
            if free:
                kv = random.choice(free[:SPREAD]) if collided else free[0]
                item = await self._claim(session, kv)
                if item is not None:
                    return item
                start, collided = self.items, True  # lost a race: look again from the start
                continue
            if len(page) < PAGE:
                return int(res.revision)
            start = page[-1].key + b"\x00"

    async def _claim(self, session: AsyncSession, kv: KeyValue) -> AsyncWorkItem | None:
        item_id = kv.key[len(self.items) :]
        claim = self.claims + item_id
        deliveries, payload = decode_item(kv.value)
        pinned = [CreateRevision(claim) == 0, ModRevision(kv.key) == kv.mod_revision]
        if deliveries >= self.max_deliveries:
            await self.client.txn(
                compare=pinned, success=[Delete(kv.key), Put(self.dead + item_id, kv.value)]
            )
            return None
        res = await self.client.txn(
            compare=pinned,
            success=[
                Put(claim, lease_hex(session.lease_id), lease=session.lease_id),
                Put(kv.key, encode_item(deliveries + 1, payload)),
            ],
        )
        if not res.succeeded:
            return None
        return AsyncWorkItem(self, item_id, payload, deliveries + 1, int(res.revision))

    def _wakes(self, event: Any) -> bool:
        key = event.kv.key
        if event.type == EventType.PUT:
            return bool(key.startswith(self.items) and event.kv.version == 1)
        return bool(key.startswith(self.claims))

    async def get(self, timeout: float | None = None) -> AsyncWorkItem | None:
        """Claim the next item (blocking while none is claimable); None on timeout.

        Raises:
            SessionExpiredError: the worker's session was lost while waiting.
        """
        found: list[AsyncWorkItem] = []

        async def check() -> tuple[AsyncWorkItem | None, int]:
            got = await self._try_claim(await self._open_session())
            return (got, 0) if isinstance(got, AsyncWorkItem) else (None, got)

        async def claim_one() -> None:
            found.append(
                await watch_until(self.client, self.prefix, check, self._wakes, prefix=True)
            )

        session = await self._open_session()
        await guarded(session, claim_one, timeout, "workqueue: session is expired")
        return found[0] if found else None

    async def size(self) -> int:
        """Items not yet acked (claimed or not), dead letters excluded."""
        return (await self.client.range(self.items, prefix=True, count_only=True)).count

    async def dead_letters(self) -> list[DeadLetter]:
        """Items that exhausted ``max_deliveries``."""
        out = []
        for kv in await self.client.get_prefix(self.dead):
            deliveries, payload = decode_item(kv.value)
            out.append(DeadLetter(kv.key[len(self.dead) :], payload, deliveries))
        return out

    async def close(self) -> None:
        """Revoke the worker's own session (un-acked claims become visible again)."""
        await self._close_session()

    async def __aenter__(self) -> AsyncWorkQueue:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()


class SyncWorkItem:
    """A claimed item on a sync client (see :class:`AsyncWorkItem`)."""

    def __init__(self, queue: SyncWorkQueue, impl: AsyncWorkItem) -> None:
        self._queue = queue
        self.impl = impl

    id = property(lambda self: self.impl.id, doc="The item id.")
    value = property(lambda self: self.impl.value, doc="The payload (bytes).")
    deliveries = property(lambda self: self.impl.deliveries, doc="1 on first delivery.")

    def is_owner(self) -> Compare:
        """A txn compare that holds while this claim is in force."""
        return self.impl.is_owner()

    def ack(self) -> None:
        """Remove the item for good (raises ClaimLostError if the claim is gone)."""
        self._queue._bridge.call(self.impl.ack)

    def nack(self) -> None:
        """Give the item back (raises ClaimLostError if the claim is gone)."""
        self._queue._bridge.call(self.impl.nack)


class SyncWorkQueue(WorkQueue):
    """The work queue on a sync :class:`~coord.Client` (see :class:`WorkQueue`)."""

    def __init__(
        self,
        client: Client,
        name: str | bytes,
        *,
        max_deliveries: int = 5,
        ttl: int = DEFAULT_TTL,
        session: SyncSession | None = None,
    ) -> None:
        self._bridge = bridge = bridge_of(client)
        self.impl: AsyncWorkQueue = bridge.call(
            lambda: AsyncWorkQueue(
                bridge.aclient,
                name,
                max_deliveries=max_deliveries,
                ttl=ttl,
                session=session.impl if session else None,
            )
        )

    def put(self, value: str | bytes) -> bytes:
        """Enqueue an item; returns its id."""
        return self._bridge.call(self.impl.put, value)  # type: ignore[no-any-return]

    def get(self, timeout: float | None = None) -> SyncWorkItem | None:
        """Claim the next item; None on timeout."""
        item = self._bridge.call(self.impl.get, timeout)
        return SyncWorkItem(self, item) if item is not None else None

    def size(self) -> int:
        """Items not yet acked."""
        return int(self._bridge.call(self.impl.size))

    def dead_letters(self) -> list[DeadLetter]:
        """Items that exhausted ``max_deliveries``."""
        return self._bridge.call(self.impl.dead_letters)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Revoke the worker's own session."""
        self._bridge.call(self.impl.close)

    def __enter__(self) -> SyncWorkQueue:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
