"""wait_delete and watch_until: watch "from now" and catch up on what came before by reading.

A watch from a past revision is served by etcd's 100 ms resync loop; wait_delete avoids it
and must still see every deletion at or after the caller's start revision, whether it
happened before the watch was created (found by a read) or after (the watch).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from coord import AsyncClient
from coord.recipes._wait import wait_delete, watch_until
from coord.types import EventType

pytestmark = pytest.mark.anyio


async def _returns(coro: Awaitable[object], within: float) -> bool:
    """True if ``coro`` finished within ``within`` seconds."""
    with anyio.move_on_after(within):
        await coro
        return True
    return False


async def test_deleted_between_read_and_watch(aclient: AsyncClient, prefix: str) -> None:
    key = (prefix + "k").encode()
    read_rev = await aclient.put(key, "v")
    await aclient.delete(key)
    assert await _returns(wait_delete(aclient, key, read_rev + 1), 10)


async def test_deleted_and_recreated_between_read_and_watch(
    aclient: AsyncClient, prefix: str
) -> None:
    key = (prefix + "k").encode()
    read_rev = await aclient.put(key, "v")
    await aclient.delete(key)
    await aclient.put(key, "again")  # same name, a new incarnation
    assert await _returns(wait_delete(aclient, key, read_rev + 1), 10)


@pytest.mark.compat
@pytest.mark.parametrize("other_writes", [0, 3])
async def test_waits_while_the_key_lives_then_wakes_on_delete(
    aclient: AsyncClient, prefix: str, other_writes: int
) -> None:
    key = (prefix + "k").encode()
    read_rev = await aclient.put(key, "v")
    for i in range(other_writes):  # the store moves on, but not this key
        await aclient.put(prefix + f"other{i}", "x")
    await aclient.put(key, "v2")  # a PUT to the key is not a deletion either
    assert not await _returns(wait_delete(aclient, key, read_rev + 1), 0.5)

    done = anyio.Event()

    async def waiter() -> None:
        await wait_delete(aclient, key, read_rev + 1)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        with anyio.fail_after(10):
            while not aclient._watch_mux._watches:  # its watch exists: now delete
                await anyio.sleep(0.01)
        await aclient.delete(key)
        with anyio.fail_after(10):
            await done.wait()


def _value_check(
    client: AsyncClient,
    key: bytes,
    ready: Callable[[bytes], bool],
    after_first_read: Callable[[], Awaitable[object]] | None = None,
) -> tuple[Callable[[], Awaitable[tuple[bytes | None, int]]], list[int]]:
    """A ``check`` for watch_until: the key's value once ``ready(value)``; counts its calls."""
    calls = [0]

    async def check() -> tuple[bytes | None, int]:
        calls[0] += 1
        res = await client.range(key)
        value = res.kvs[0].value if res.kvs else None
        if calls[0] == 1 and after_first_read is not None:
            await after_first_read()
        return (value if value is not None and ready(value) else None), res.revision

    return check, calls


async def test_watch_until_sees_a_change_between_its_read_and_its_watch(
    aclient: AsyncClient, prefix: str
) -> None:
    key = (prefix + "item").encode()
    # the put lands after the first read and before the watch exists
    check, calls = _value_check(aclient, key, lambda v: True, lambda: aclient.put(key, "arrived"))
    with anyio.fail_after(10):
        got = await watch_until(aclient, key, check, lambda e: e.type == EventType.PUT)
    assert got == b"arrived"
    assert calls == [2]


async def test_watch_until_rechecks_on_accepted_events(aclient: AsyncClient, prefix: str) -> None:
    key = (prefix + "item").encode()
    check, calls = _value_check(aclient, key, lambda v: v == b"go")
    result: list[bytes] = []

    async def waiter() -> None:
        result.append(await watch_until(aclient, key, check, lambda e: e.type == EventType.PUT))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        with anyio.fail_after(10):
            while not aclient._watch_mux._watches:
                await anyio.sleep(0.01)
        await aclient.put(key, "not yet")  # accepted: re-checked, not done yet
        await aclient.put(key, "go")
    assert result == [b"go"]
    # the first read, maybe one after the watch's creation, at most one per PUT event (the
    # re-check after "not yet" may already see "go")
    assert 2 <= calls[0] <= 4
