"""WorkQueue: claim under a lease, ack, nack, redelivery on worker death, dead letters."""

from __future__ import annotations

import anyio
import pytest

from coord import AsyncClient, Client
from coord.recipes import ClaimLostError, WorkQueue


@pytest.mark.compat
def test_put_get_ack_nack(client: Client, prefix: str) -> None:
    name = prefix + "wq"
    with WorkQueue(client, name, ttl=5) as q:
        q.put("a")
        q.put("b")
        item = q.get(timeout=5)
        assert item is not None
        assert item.value == b"a"
        assert item.deliveries == 1
        assert client.get(f"{name}/claims/".encode() + item.id) is not None
        item.nack()
        again = q.get(timeout=5)
        assert again is not None
        assert again.value in (b"a", b"b")
        items = [again, q.get(timeout=5)]
        assert sorted(i.value for i in items if i) == [b"a", b"b"]
        assert {i.value: i.deliveries for i in items if i}[b"a"] == 2
        for i in items:
            assert i is not None
            i.ack()
        assert q.size() == 0
        assert q.get(timeout=0.2) is None


@pytest.mark.compat
def test_worker_death_redelivers(client: Client, prefix: str) -> None:
    name = prefix + "wq"
    dying = WorkQueue(client, name, ttl=5)
    dying.put("job")
    item = dying.get(timeout=5)
    assert item is not None
    with WorkQueue(client, name, ttl=5) as other:
        assert other.get(timeout=0.2) is None  # claimed: invisible
        dying.close()  # the worker's lease goes away
        again = other.get(timeout=5)
        assert again is not None
        assert again.value == b"job"
        assert again.deliveries == 2
        with pytest.raises(ClaimLostError):
            item.ack()  # the dead worker's claim is gone
        again.ack()
        assert other.size() == 0


def test_dead_letter_after_max_deliveries(client: Client, prefix: str) -> None:
    with WorkQueue(client, prefix + "wq", ttl=5, max_deliveries=2) as q:
        item_id = q.put("poison")
        for n in (1, 2):
            item = q.get(timeout=5)
            assert item is not None
            assert item.deliveries == n
            item.nack()
        assert q.get(timeout=0.2) is None
        assert q.size() == 0
        dead = q.dead_letters()
        assert [(d.id, d.value, d.deliveries) for d in dead] == [(item_id, b"poison", 2)]


@pytest.mark.anyio
async def test_async_workers_share_items(aclient: AsyncClient, prefix: str) -> None:
    name = prefix + "wq"
    producer = WorkQueue(aclient, name, ttl=5)
    for i in range(30):
        await producer.put(str(i))
    done: list[int] = []

    async def worker() -> None:
        async with WorkQueue(aclient, name, ttl=5) as q:
            while (item := await q.get(timeout=0.5)) is not None:
                await item.ack()
                done.append(int(item.value))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(worker)
    assert sorted(done) == list(range(30))
    assert await producer.size() == 0
