"""Counter: atomic add through txn compare-and-swap."""

from __future__ import annotations

import anyio
import pytest
from unwrap import unwrap

from coord import AsyncClient, Client
from coord.recipes import Counter


@pytest.mark.compat
def test_add_get_set(client: Client, prefix: str) -> None:
    counter = Counter(client, prefix + "n")
    assert counter.get() == 0
    assert counter.add() == 1
    assert counter.add(5) == 6
    assert counter.add(-2) == 4
    assert unwrap(client.get(prefix + "n")).value == b"4"
    counter.set(10)
    assert counter.get() == 10


@pytest.mark.anyio
async def test_concurrent_adds_lose_nothing(aclient: AsyncClient, prefix: str) -> None:
    async def adder() -> None:
        counter = Counter(aclient, prefix + "n")
        for _ in range(15):
            await counter.add()

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(adder)
    assert await Counter(aclient, prefix + "n").get() == 60
