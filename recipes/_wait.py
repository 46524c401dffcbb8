"""Key helpers and the waiting primitives every recipe is built from.

Theory of operation
-------------------
A recipe never polls. It reads the keys it depends on (getting the store revision ``R`` the
read was served at) and then waits for changes after ``R``, so nothing can slip between the
read and the wait. Watches start "from now", never from ``R + 1``: etcd delivers a watch that
starts in the past only from a resync loop running every 100 ms, which capped a contended lock
at ~60 hand-offs/s. What changed between the read and the watch's creation (the created
response's revision tells whether anything did) is found by reading once more.

* :func:`wait_turn` is etcd's ``waitDeletes`` (``client/v3/concurrency/key.go``) fused with
  the post-wait ownership re-check: it repeatedly finds the *last-created* key before mine
  (my direct predecessor) and waits for that one key to go. Each waiter therefore watches
  exactly one other key, so a release wakes one waiter, not all of them (no thundering herd).
* :func:`wait_delete` waits until one key is deleted after ``R`` (etcd's ``waitDelete``).
* :func:`watch_until` re-runs a read until it finds what it looks for, waiting for a
  relevant event in between (queues use it: their readers race, so each wake-up must read
  again anyway).

A watch from now cannot hit a compacted revision, so none of the helpers needs to handle
compaction.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from coord import AsyncClient, Delete, Get, ModRevision, Put, Version
from coord.errors import CoordError
from coord.types import Event, EventType, KeyValue

from .errors import SessionExpiredError

__all__ = [
    "delete_rev",
    "first_created",
    "lease_hex",
    "prefix_end",
    "put_unique",
    "to_bytes",
    "wait_delete",
    "wait_turn",
    "watch_until",
]

T = TypeVar("T")


def to_bytes(value: str | bytes) -> bytes:
    """Keys and values given as ``str`` are UTF-8 encoded."""
    return value.encode() if isinstance(value, str) else bytes(value)


def lease_hex(lease_id: int) -> str:
    """A lease ID as etcd's Go ``fmt.Sprintf("%x", id)``: lowercase hex, no padding."""
    return format(lease_id, "x")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix`` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


async def first_created(client: AsyncClient, prefix: bytes) -> tuple[KeyValue | None, int]:
    """The key under ``prefix`` with the lowest create revision, and the read's revision."""
    res = await client.range(prefix, prefix=True, limit=1, sort="create")
    return (res.kvs[0] if res.kvs else None), res.revision


async def watch_until(
    client: AsyncClient,
    key: bytes,
    check: Callable[[], Awaitable[tuple[T | None, int]]],
    accept: Callable[[Event], bool],
    *,
    prefix: bool = False,
    no_put: bool = False,
    no_delete: bool = False,
) -> T:
    """Return the first result of ``check`` that is not None, re-checking after changes.

    ``check()`` reads the state and returns ``(result or None, revision it read at)``. When
    it finds nothing, a watch on ``key`` (or the prefix) starts *from now*, and ``check``
    runs again after each accepted event newer than its last read, and once right after the
    watch is created if the store moved since the first read. A watch that starts before
    the read it follows misses nothing, and etcd serves it at once (a watch from a past
    revision waits for etcd's 100 ms resync loop).
    """
    result, rev = await check()
    if result is not None:
        return result
    watch = await client.watch(key, prefix=prefix, no_put=no_put, no_delete=no_delete)
    try:
        if watch.revision > rev:
            result, rev = await check()
            if result is not None:
                return result
        async for event in watch:
            if event.kv.mod_revision > rev and accept(event):
                result, rev = await check()
                if result is not None:
                    return result
    finally:
        await watch.aclose()
    raise CoordError("coord: watch ended unexpectedly")  # pragma: no cover - defensive


async def wait_delete(client: AsyncClient, key: bytes, start_revision: int) -> None:
    """Return once ``key`` is deleted at or after ``start_revision`` (or is already gone).

    The watch starts "from now", not from ``start_revision``: etcd serves a watch that starts
    in the past from a resync loop that runs every 100 ms, which made each contended lock
    hand-off wait for it. If the store moved since ``start_revision - 1`` (the created
    response's revision says so), the deletions the watch will not show are found by one
    read: the key is gone, or exists re-created (create revision >= ``start_revision``).
    """
    watch = await client.watch(key, no_put=True)
    try:
        if watch.revision >= start_revision:
            kv = await client.get(key)
            if kv is None or kv.create_revision >= start_revision:
                return
        async for event in watch:
            if event.type == EventType.DELETE:
                return
    finally:
        await watch.aclose()
    raise CoordError("coord: watch ended unexpectedly")  # pragma: no cover - defensive


async def put_unique(
    client: AsyncClient, prefix: bytes, value: bytes, lease: int = 0
) -> tuple[bytes, int]:
    """Create ``prefix + <unix nanos>`` (etcd recipe's ``newUniqueKV``); return key, revision.

    The put is guarded by ``Version(key) == 0`` and retried with a new name on collision.
    """
    while True:
        key = prefix + str(time.time_ns()).encode()
        res = await client.txn(compare=[Version(key) == 0], success=[Put(key, value, lease=lease)])
        if res.succeeded:
            return key, int(res.revision)


async def delete_rev(client: AsyncClient, key: bytes, mod_revision: int) -> bool:
    """Delete ``key`` if still at ``mod_revision`` (etcd recipe's ``deleteRevKey``)."""
    res = await client.txn(compare=[ModRevision(key) == mod_revision], success=[Delete(key)])
    return bool(res.succeeded)


async def wait_turn(
    client: AsyncClient,
    prefix: bytes,
    key: bytes,
    rev: int,
    message: str = "mutex: session is expired",
) -> None:
    """Wait until ``key`` (created at ``rev``) is the first-created key under ``prefix``.

    This is etcd's ``waitDeletes`` fused with the post-wait ownership re-check: each round
    reads the direct predecessor *and* my own key in one read-only txn, so a hand-off costs
    one read after the predecessor's DELETE instead of two.

    Raises:
        SessionExpiredError: my key is gone or was re-created (my session's lease expired).
    """
    while True:
        res = await client.txn(
            success=[
                Get(prefix, prefix=True, limit=1, sort="-create", max_create_revision=rev - 1),
                Get(key),
            ]
        )
        preds: list[KeyValue] = res.results[0]  # type: ignore[assignment]
        mine: list[KeyValue] = res.results[1]  # type: ignore[assignment]
        if not mine or mine[0].create_revision != rev:
            raise SessionExpiredError(message)
        if not preds:
            return
        await wait_delete(client, preds[0].key, int(res.revision) + 1)
