"""A watch whose consumer falls behind is bounded and paused without stalling the others."""

from __future__ import annotations

import asyncio

import pytest

from coord import AsyncClient


@pytest.mark.anyio
async def test_slow_watch_is_bounded_and_loses_nothing(aclient: AsyncClient, prefix: str) -> None:
    slow = aclient.watch_prefix(prefix + "s/")
    slow.max_buffered = 8
    await slow.start()
    async with aclient.watch(prefix + "fast") as fast:
        n = 120
        for i in range(n):
            await aclient.put(f"{prefix}s/{i:04d}", str(i))
            if i % 20 == 0:  # the other watch keeps receiving promptly meanwhile
                await aclient.put(prefix + "fast", str(i))
                ev = await asyncio.wait_for(fast.__anext__(), 5)
                assert ev.kv.value == str(i).encode()
            assert len(slow._queue) <= slow.max_buffered
        assert slow.paused
        assert aclient._watch_mux.streams_opened == 1  # pausing is not a reconnect
        seen = []
        for _ in range(n):
            ev = await asyncio.wait_for(slow.__anext__(), 10)
            seen.append(ev.kv.key.decode())
            assert len(slow._queue) <= slow.max_buffered
        assert seen == [f"{prefix}s/{i:04d}" for i in range(n)]
        await aclient.put(f"{prefix}s/last", "x")  # live again after draining
        ev = await asyncio.wait_for(slow.__anext__(), 10)
        assert ev.kv.key == f"{prefix}s/last".encode()
        assert not slow.paused
        assert slow._queue == type(slow._queue)()  # nothing delivered twice
    await slow.aclose()
