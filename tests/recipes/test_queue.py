"""Queue (FIFO) and PriorityQueue (etcd recipe layouts)."""

from __future__ import annotations

import re
import threading

import pytest

from coord import AsyncClient, Client
from coord.recipes import PriorityQueue, Queue


@pytest.mark.compat
def test_fifo_and_timeout(client: Client, prefix: str) -> None:
    q = Queue(client, prefix + "q")
    for v in ("a", "b", "c"):
        key = q.put(v)
        assert re.fullmatch(rf"{prefix}q/\d+".encode(), key)
    assert q.size() == 3
    assert [q.get(timeout=5) for _ in range(3)] == [b"a", b"b", b"c"]
    assert q.get(timeout=0.2) is None
    assert q.get_nowait() is None


def test_blocked_get_woken_by_put(client: Client, prefix: str) -> None:
    q = Queue(client, prefix + "q")
    got: list[bytes | None] = []
    t = threading.Thread(target=lambda: got.append(Queue(client, prefix + "q").get(timeout=10)))
    t.start()
    q.put("late")
    t.join(timeout=10)
    assert got == [b"late"]
    assert q.size() == 0


@pytest.mark.compat
def test_priority_order_and_layout(client: Client, prefix: str) -> None:
    q = PriorityQueue(client, prefix + "pq")
    q.put("low-1", 5)
    q.put("high", 1)
    q.put("low-2", 5)
    key = q.put("low-3", 5)
    assert key == f"{prefix}pq/00005/{2:016d}".encode()
    assert [q.get(timeout=5) for _ in range(4)] == [b"high", b"low-1", b"low-2", b"low-3"]
    with pytest.raises(ValueError, match="priority"):
        q.put("x", 70000)


@pytest.mark.anyio
async def test_async_concurrent_consumers_each_item_once(aclient: AsyncClient, prefix: str) -> None:
    import anyio

    q = Queue(aclient, prefix + "q")
    for i in range(20):
        await q.put(str(i))
    got: list[bytes] = []

    async def consumer() -> None:
        while (v := await q.get(timeout=0.5)) is not None:
            got.append(v)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(consumer)
    assert sorted(int(v) for v in got) == list(range(20))
