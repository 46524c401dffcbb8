"""Queue and PriorityQueue (etcd ``experimental/recipes`` layouts).

:Status: Beta. Delivery is *at most once*: an item is deleted when it is taken, before the
consumer processes it (as in etcd). Use :class:`~coord.recipes.WorkQueue` for
at-least-once processing with acknowledgements.

Theory of operation
-------------------
:class:`Queue` stores each item as ``name/<unix nanos>`` (created with
``If(Version(key) == 0)``, retried on collision) and serves them in mod-revision order (FIFO
across producers). :class:`PriorityQueue` stores ``name/<priority %05d>/<seq %016d>``: the
sequence is one more than the last key of that priority, committed with etcd's
``newSequentialKV`` guard (``If(ModRevision("__" + prefix) < readRev + 1)`` plus a put of
that marker key), and items are served in key order: lowest priority number first, FIFO
within a priority.

Taking an item reads the first key and deletes it with ``If(ModRevision(key) == rev)``: of
several consumers racing for one item exactly one wins, the others look again. An empty
queue is waited on by watching the prefix for the next PUT (from now, then reading again:
see :func:`~coord.recipes._wait.watch_until`).

Error handling
--------------
* ``get(timeout=...)`` returns None when the timeout passes with the queue still empty.
* Items are plain keys without leases: they survive their producers.
"""

from __future__ import annotations

from typing import Any, overload

import anyio

from coord import AsyncClient, Client, ModRevision, Put
from coord.types import EventType, KeyValue

from ._sync import bridge_of, is_async_client
from ._wait import delete_rev, put_unique, to_bytes, watch_until

__all__ = [
    "AsyncPriorityQueue",
    "AsyncQueue",
    "PriorityQueue",
    "Queue",
    "SyncPriorityQueue",
    "SyncQueue",
]


class Queue:
    """A FIFO queue. ``Queue(client, name)`` returns a :class:`SyncQueue` or :class:`AsyncQueue`."""

    @overload
    def __new__(cls, client: Client, name: str | bytes) -> SyncQueue: ...
    @overload
    def __new__(cls, client: AsyncClient, name: str | bytes) -> AsyncQueue: ...
    def __new__(cls, client: Any, name: str | bytes) -> Any:
        if cls is Queue:
            cls = AsyncQueue if is_async_client(client) else SyncQueue
        return object.__new__(cls)


class _AsyncQueueBase:
    """Shared dequeue logic: read the first item in ``_sort`` order and claim it."""

    _sort = "mod"

    def __init__(self, client: AsyncClient, name: str | bytes) -> None:
        self.client = client
        self.name = to_bytes(name)
        self.prefix = self.name + b"/"

    async def _try_take(self) -> tuple[KeyValue | None, int]:
        """Take the first item; ``(None, read revision)`` when the queue is empty."""
        while True:
            res = await self.client.range(self.prefix, prefix=True, limit=1, sort=self._sort)
            if not res.kvs:
                return None, res.revision
            kv = res.kvs[0]
            if await delete_rev(self.client, kv.key, kv.mod_revision):
                return kv, res.revision

    async def _take(self) -> KeyValue:
        return await watch_until(
            self.client,
            self.prefix,
            self._try_take,
            lambda e: e.type == EventType.PUT,
            prefix=True,
            no_delete=True,
        )

    async def get(self, timeout: float | None = None) -> bytes | None:
        """Take the next item (blocking while empty); None if ``timeout`` passes first."""
        with anyio.move_on_after(timeout):
            return (await self._take()).value
        return None

    async def get_nowait(self) -> bytes | None:
        """Take the next item, or None at once if the queue is empty."""
        while True:
            res = await self.client.range(self.prefix, prefix=True, limit=1, sort=self._sort)
            if not res.kvs:
                return None
            kv = res.kvs[0]
            if await delete_rev(self.client, kv.key, kv.mod_revision):
                return kv.value

    async def size(self) -> int:
        """Number of items waiting."""
        return (await self.client.range(self.prefix, prefix=True, count_only=True)).count


class AsyncQueue(Queue, _AsyncQueueBase):
    """The FIFO queue on an :class:`~coord.AsyncClient` (see :class:`Queue`)."""

    async def put(self, value: str | bytes) -> bytes:
        """Append an item; returns its key."""
        key, _ = await put_unique(self.client, self.prefix, to_bytes(value))
        return key


class PriorityQueue:
    """A priority queue (lower number first). ``PriorityQueue(client, name)`` returns a sync
    or async face."""

    @overload
    def __new__(cls, client: Client, name: str | bytes) -> SyncPriorityQueue: ...
    @overload
    def __new__(cls, client: AsyncClient, name: str | bytes) -> AsyncPriorityQueue: ...
    def __new__(cls, client: Any, name: str | bytes) -> Any:
        if cls is PriorityQueue:
            cls = AsyncPriorityQueue if is_async_client(client) else SyncPriorityQueue
        return object.__new__(cls)


class AsyncPriorityQueue(PriorityQueue, _AsyncQueueBase):
    """The priority queue on an :class:`~coord.AsyncClient` (see :class:`PriorityQueue`)."""

    _sort = "key"

    async def put(self, value: str | bytes, priority: int) -> bytes:
        """Add an item with ``priority`` (0..65535, lower is served first); returns its key."""
        if not 0 <= priority <= 0xFFFF:
            raise ValueError("priority must be in 0..65535 (etcd's uint16)")
        prefix = self.prefix + b"%05d" % priority
        marker = b"__" + prefix
        while True:
            res = await self.client.range(prefix + b"/", prefix=True, limit=1, sort="-key")
            seq = 0
            if res.kvs:
                seq = int(res.kvs[0].key.rsplit(b"/", 1)[-1]) + 1
            key = prefix + b"/%016d" % seq
            txn = await self.client.txn(
                compare=[ModRevision(marker) < res.revision + 1],
                success=[Put(marker, b""), Put(key, to_bytes(value))],
            )
            if txn.succeeded:
                return key


class _SyncQueueBase:
    """What the sync FIFO and priority queues share: taking items and counting them."""

    _bridge: Any
    impl: Any

    def get(self, timeout: float | None = None) -> bytes | None:
        """Take the next item (blocking while empty); None if ``timeout`` passes first."""
        return self._bridge.call(self.impl.get, timeout)  # type: ignore[no-any-return]

    def get_nowait(self) -> bytes | None:
        """Take the next item, or None if empty."""
        return self._bridge.call(self.impl.get_nowait)  # type: ignore[no-any-return]

    def size(self) -> int:
        """Number of items waiting."""
        return int(self._bridge.call(self.impl.size))


class SyncQueue(Queue, _SyncQueueBase):
    """The FIFO queue on a sync :class:`~coord.Client` (see :class:`Queue`)."""

    def __init__(self, client: Client, name: str | bytes) -> None:
        self._bridge = bridge_of(client)
        self.impl = AsyncQueue(self._bridge.aclient, name)

    def put(self, value: str | bytes) -> bytes:
        """Append an item; returns its key."""
        return self._bridge.call(self.impl.put, value)  # type: ignore[no-any-return]


class SyncPriorityQueue(PriorityQueue, _SyncQueueBase):
    """The priority queue on a sync :class:`~coord.Client` (see :class:`PriorityQueue`)."""

    def __init__(self, client: Client, name: str | bytes) -> None:
        self._bridge = bridge_of(client)
        self.impl = AsyncPriorityQueue(self._bridge.aclient, name)

    def put(self, value: str | bytes, priority: int) -> bytes:
        """Add an item with ``priority`` (lower is served first); returns its key."""
        return self._bridge.call(self.impl.put, value, priority)  # type: ignore[no-any-return]
