"""Barrier and DoubleBarrier (etcd recipe layouts)."""

from __future__ import annotations

import threading

import anyio
import pytest
from support import wait_for

from coord import AsyncClient, Client
from coord.recipes import Barrier, DoubleBarrier, TooManyClientsError


@pytest.mark.compat
def test_barrier_hold_wait_release(client: Client, prefix: str) -> None:
    barrier = Barrier(client, prefix + "b")
    assert barrier.wait(timeout=0.1) is True  # not held: passes at once
    assert barrier.hold() is True
    assert barrier.hold() is False  # already held
    assert client.get(prefix + "b") is not None  # layout: the key itself
    assert barrier.wait(timeout=0.2) is False
    passed: list[bool] = []
    t = threading.Thread(target=lambda: passed.append(Barrier(client, prefix + "b").wait(10)))
    t.start()
    barrier.release()
    t.join(timeout=10)
    assert passed == [True]


@pytest.mark.compat
@pytest.mark.anyio
async def test_double_barrier_enter_and_leave_together(aclient: AsyncClient, prefix: str) -> None:
    name = prefix + "db"
    log: list[str] = []

    async def participant(i: int) -> None:
        barrier = DoubleBarrier(aclient, name, 3, ttl=5)
        await anyio.sleep(0.05 * i)
        log.append("arrive")
        assert await barrier.enter(timeout=10)
        log.append("enter")
        await anyio.sleep(0.05 * i)
        log.append("leave")
        assert await barrier.leave(timeout=10)
        log.append("left")

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(participant, i)
    # nobody gets through enter() before all have arrived, nor through leave() before all
    # have started leaving
    assert log.index("enter") > max(i for i, x in enumerate(log) if x == "arrive")
    assert log.index("left") > max(i for i, x in enumerate(log) if x == "leave")
    assert await aclient.get_prefix(name + "/") == []


def test_double_barrier_too_many_and_timeout(client: Client, prefix: str) -> None:
    name = prefix + "db"
    lone = DoubleBarrier(client, name, 2, ttl=5)
    assert lone.enter(timeout=0.3) is False  # nobody else: times out, withdraws
    assert client.get_prefix(name + "/") == []
    a, b = DoubleBarrier(client, name, 1, ttl=5), DoubleBarrier(client, name, 1, ttl=5)
    assert a.enter(timeout=5)
    with pytest.raises(TooManyClientsError):
        b.enter(timeout=5)
    assert a.leave(timeout=5)
    wait_for(lambda: client.get_prefix(name + "/") == [], timeout=5, what="barrier cleaned up")
