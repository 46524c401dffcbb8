"""Failover on a 3-member cluster (real etcd, and coord-server): kill the member in use.

Reads, a watch and a lease keep-alive of the client continue on another member; the watch
delivers exactly the history (checked against a fresh replay): no loss, no duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster.clusterlib import ServerCluster

from coord import AsyncClient, Client, ConnectionFailedError, Event, UnavailableError


@pytest.fixture(params=["etcd", "coord"], scope="module")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerCluster]:
    c = ServerCluster(request.param, tmp_path_factory.mktemp(f"cluster-{request.param}"))
    yield c
    c.stop()


def sig(events: list[Event]) -> list[tuple[int, int, bytes, bytes]]:
    return [(e.revision, int(e.type), e.key, e.value) for e in events]


async def _replay(endpoints: str | list[str], prefix: str, start: int, last: int) -> list[Event]:
    """Ground truth: the events under ``prefix`` from ``start`` through revision ``last``,
    replayed by a fresh client."""
    truth: list[Event] = []
    async with AsyncClient(endpoints, timeout=20) as fresh:
        replay = await fresh.watch(prefix, prefix=True, start_revision=start)
        async for ev in replay:
            truth.append(ev)
            if ev.revision >= last:
                break
        replay.cancel()
    return truth


@pytest.mark.anyio
async def test_kill_member_in_use(cluster: ServerCluster, prefix: str) -> None:
    eps = cluster.endpoints
    n = 120
    async with AsyncClient(eps, timeout=20) as watcher, AsyncClient(eps[1:], timeout=20) as w:
        assert watcher.current_endpoint == eps[0]
        assert len(await watcher.members()) == 3  # one Raft cluster, not 3 solo servers
        start = await w.put(prefix + "start", "0")
        lease = await watcher.lease(4)
        await watcher.put(prefix + "leased", "x", lease=lease)
        seen: list[Event] = []
        watch = await watcher.watch(prefix, prefix=True, start_revision=start)

        async def consume(last_rev: asyncio.Future[int]) -> None:
            async for ev in watch:
                seen.append(ev)
                if last_rev.done() and ev.revision >= last_rev.result():
                    return

        last: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        consumer = asyncio.ensure_future(consume(last))
        rev = start
        for i in range(n):
            if i == n // 3:
                await asyncio.to_thread(cluster.kill, 0)
                # reads fail over transparently
                kv = await watcher.get(prefix + "start")
                assert kv is not None
                assert kv.value == b"0"
                assert watcher.current_endpoint != eps[0]
            while True:
                try:
                    rev = await w.put(f"{prefix}k{i:03}", str(i))
                    break
                except UnavailableError:  # leader change on the writer's side: retry
                    await asyncio.sleep(0.05)
        rev = max(rev, (await w.range(prefix, prefix=True)).revision)
        last.set_result(rev)
        # an event after `last`, so the consumer stops even if it had consumed everything
        await w.put(prefix + "zz-end", "1")
        await asyncio.wait_for(consumer, 30)

        # ground truth: a fresh replay of the same history from a surviving member
        truth = await _replay(eps[2], prefix, start, seen[-1].revision)
        assert sig(seen) == sig(truth)
        revs = [e.revision for e in seen]
        assert revs == sorted(revs)
        assert len({(e.revision, e.key) for e in seen}) == len(seen)
        written = {e.key for e in seen if e.key.startswith((prefix + "k").encode())}
        assert len(written) == n
        assert watcher._watch_mux.streams_opened >= 2  # the watch really moved
        # the lease survived the failover (its keep-alive stream moved too)
        assert lease.alive
        assert (await watcher.lease_time_to_live(lease)).ttl > 0
        assert await watcher.get(prefix + "leased") is not None
        await lease.revoke()


def test_sync_client_failover_and_write_rule(
    cluster: ServerCluster, tmp_path: Path, prefix: str
) -> None:
    eps = cluster.endpoints

    def up(i: int) -> bool:
        proc = cluster.members[i].proc
        assert proc is not None
        return proc.alive()

    alive = [ep for i, ep in enumerate(eps) if up(i)]
    dead = [ep for i, ep in enumerate(eps) if not up(i)]
    # a dead endpoint first: connection refused before sending, so even writes move on
    with Client(dead + alive, timeout=20) as c:
        assert c.put(prefix + "a", "1") > 0
        assert c.current_endpoint in alive
        assert c.get(prefix + "a") is not None
    with pytest.raises(ConnectionFailedError), Client(dead, timeout=3) as c:
        c.get(prefix + "a")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["etcd", "coord"])
@pytest.mark.anyio
async def test_repeated_failover_with_restarts(kind: str, tmp_path: Path, prefix: str) -> None:
    """Kill the watcher's member, write, restart it; three times. The watch must still
    deliver exactly the history."""
    cluster = await asyncio.to_thread(ServerCluster, kind, tmp_path)
    try:
        eps = cluster.endpoints
        async with AsyncClient(eps, timeout=20) as watcher, AsyncClient(eps, timeout=20) as w:
            start = await w.put(prefix + "start", "0")
            seen: list[Event] = []
            watch = await watcher.watch(prefix, prefix=True, start_revision=start)

            async def consume() -> None:
                async for ev in watch:
                    seen.append(ev)

            consumer = asyncio.ensure_future(consume())

            async def write(i: int) -> int:
                while True:
                    try:
                        return await w.put(f"{prefix}k{i:04}", str(i))
                    except UnavailableError:  # ambiguous or no leader: retrying may repeat it
                        await asyncio.sleep(0.05)

            i = 0
            last = start
            for _ in range(3):
                for _ in range(20):
                    last = await write(i)
                    i += 1
                victim = eps.index(watcher.current_endpoint)
                await asyncio.to_thread(cluster.kill, victim)
                for _ in range(20):
                    last = await write(i)
                    i += 1
                await asyncio.to_thread(cluster.restart, victim)
                await asyncio.to_thread(cluster.ready)
            last = max(last, (await w.range(prefix, prefix=True)).revision)
            deadline = asyncio.get_running_loop().time() + 60
            while watch.revision < last:
                assert asyncio.get_running_loop().time() < deadline, "watch fell behind"
                await asyncio.sleep(0.05)
            watch.cancel()
            await consumer
            truth = await _replay(eps, prefix, start, seen[-1].revision)
            assert sig(seen) == sig(truth)
            assert {f"{prefix}k{j:04}".encode() for j in range(i)} <= {e.key for e in seen}
            assert watcher._watch_mux.streams_opened >= 4
    finally:
        await asyncio.to_thread(cluster.stop)
