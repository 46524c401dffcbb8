"""RWLock: shared readers, exclusive writer, writers not starved (etcd RWMutex layout)."""

from __future__ import annotations

import threading

import anyio
import pytest
from support import wait_for

from coord import AsyncClient, Client
from coord.recipes import RWLock


@pytest.mark.compat
def test_readers_share_writer_excludes(client: Client, prefix: str) -> None:
    name = prefix + "rw"
    r1, r2, w = (
        RWLock(client, name, ttl=5),
        RWLock(client, name, ttl=5),
        RWLock(client, name, ttl=5),
    )
    assert r1.acquire_read(timeout=5)
    assert r2.acquire_read(timeout=5)
    keys = [kv.key for kv in client.get_prefix(name + "/")]
    assert all(k.startswith(f"{name}/read/".encode()) for k in keys)
    assert len(keys) == 2
    assert w.acquire_write(timeout=0.3) is False
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(w.acquire_write(timeout=10)))
    t.start()
    wait_for(
        lambda: any(b"/write/" in kv.key for kv in client.get_prefix(name + "/")),
        timeout=10,
        what="writer queued",
    )
    # a reader arriving after the waiting writer must wait for it (no writer starvation)
    r3 = RWLock(client, name, ttl=5)
    assert r3.acquire_read(timeout=0.3) is False
    r1.release()
    assert not got
    r2.release()
    t.join(timeout=10)
    assert got == [True]
    assert w.mode == "write"
    assert r3.acquire_read(timeout=0.3) is False
    w.release()
    with r3.read_lock(timeout=5):
        assert r3.mode == "read"


@pytest.mark.anyio
async def test_async_writers_exclusive(aclient: AsyncClient, prefix: str) -> None:
    name = prefix + "rw"
    state = {"readers": 0, "writers": 0}
    violations: list[str] = []

    async def reader() -> None:
        async with RWLock(aclient, name, ttl=5).read_lock(timeout=10):
            state["readers"] += 1
            if state["writers"]:
                violations.append("reader with writer")
            await anyio.sleep(0.02)
            state["readers"] -= 1

    async def writer() -> None:
        async with RWLock(aclient, name, ttl=5).write_lock(timeout=10):
            state["writers"] += 1
            if state["writers"] > 1 or state["readers"]:
                violations.append("writer not alone")
            await anyio.sleep(0.02)
            state["writers"] -= 1

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(writer if i % 3 == 0 else reader)
    assert violations == []
