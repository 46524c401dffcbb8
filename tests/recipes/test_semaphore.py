"""Semaphore: n permits, arrival order, timeouts."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from support import wait_for

from coord import AsyncClient, Client
from coord.recipes import Semaphore


@pytest.mark.compat
def test_two_permits(client: Client, prefix: str) -> None:
    name = prefix + "sem"
    a, b, c = (Semaphore(client, name, 2, ttl=5) for _ in range(3))
    assert a.acquire()
    assert b.acquire()
    assert c.acquire(blocking=False) is False
    start = time.monotonic()
    assert c.acquire(timeout=0.3) is False
    assert time.monotonic() - start >= 0.25
    assert len(client.get_prefix(name + "/")) == 2
    assert len(a.holders()) == 2
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(c.acquire(timeout=10)))
    t.start()
    wait_for(lambda: len(client.get_prefix(name + "/")) == 3, timeout=10, what="c queued")
    b.release()
    t.join(timeout=10)
    assert got == [True]
    a.release()
    c.release()
    assert client.get_prefix(name + "/") == []


@pytest.mark.anyio
async def test_async_never_more_than_n(aclient: AsyncClient, prefix: str) -> None:
    name = prefix + "sem"
    inside = peak = 0

    async def worker() -> None:
        nonlocal inside, peak
        for _ in range(2):
            async with Semaphore(aclient, name, 2, ttl=5):
                inside += 1
                peak = max(peak, inside)
                await anyio.sleep(0.02)
                inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(worker)
    assert peak == 2
