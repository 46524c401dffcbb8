"""Election: etcd Election layout, proclaim/resign/leader/observe, loss of leadership."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from support import wait_for
from unwrap import unwrap

from coord import AsyncClient, Client, Put
from coord.recipes import Election, ElectionNotLeaderError, SessionExpiredError


@pytest.mark.compat
def test_campaign_proclaim_resign_leader(client: Client, prefix: str) -> None:
    name = prefix + "leader"
    election = Election(client, name, ttl=5)
    assert election.leader() is None
    assert election.campaign("worker-1") is True
    kv = election.leader()
    assert kv is not None
    assert kv.value == b"worker-1"
    assert kv.key == f"{name}/{kv.lease:x}".encode()
    assert kv.key == election.key
    assert election.is_leader
    election.impl._check()
    election.proclaim("worker-1b")
    assert unwrap(election.leader()).value == b"worker-1b"
    ok, _ = client.txn(compare=[election.is_owner()], success=[Put(prefix + "x", "1")])
    assert ok
    election.resign()
    assert election.leader() is None
    assert not election.is_leader
    assert not election.lost
    with pytest.raises(ElectionNotLeaderError):
        election.proclaim("again")


def test_second_candidate_elected_after_resign_and_observe_order(
    client: Client, prefix: str
) -> None:
    name = prefix + "leader"
    seen: list[bytes] = []
    observer = Election(client, name)

    def observe() -> None:
        for kv in observer.observe():
            seen.append(kv.value)
            if len(seen) == 3:
                return

    first = Election(client, name, ttl=5)
    first.campaign("one")
    t = threading.Thread(target=observe)
    t.start()
    wait_for(lambda: seen == [b"one"], timeout=10, what="observer sees the first leader")
    second = Election(client, name, ttl=5)
    won: list[bool] = []
    c = threading.Thread(target=lambda: won.append(second.campaign("two")))
    c.start()
    wait_for(lambda: len(client.get_prefix(name + "/")) == 2, timeout=10, what="2nd queued")
    assert not won
    first.proclaim("one-b")
    first.resign()
    c.join(timeout=20)
    t.join(timeout=20)
    assert won == [True]
    assert seen == [b"one", b"one-b", b"two"]
    second.resign()


def test_leader_learns_it_lost_leadership(client: Client, prefix: str) -> None:
    name = prefix + "leader"
    election = Election(client, name, ttl=5)
    lost: list[bool] = []
    election.campaign("me")
    election.on_lost(lambda: lost.append(True))
    client.revoke_lease(unwrap(client.get(unwrap(election.key))).lease)
    wait_for(lambda: election.lost and lost == [True], timeout=10, what="loss noticed")
    assert not election.is_leader
    with pytest.raises(ElectionNotLeaderError):
        election.proclaim("still me?")


def test_leader_key_deleted_by_third_party_is_noticed(client: Client, prefix: str) -> None:
    election = Election(client, prefix + "leader", ttl=5)
    election.campaign("me")
    client.delete(unwrap(election.key))
    wait_for(lambda: election.lost, timeout=10, what="deleted leader key noticed")


def test_campaign_timeout_withdraws(client: Client, prefix: str) -> None:
    name = prefix + "leader"
    leader = Election(client, name, ttl=5)
    leader.campaign("a")
    other = Election(client, name, ttl=5)
    assert other.campaign("b", timeout=0.3) is False
    assert [kv.value for kv in client.get_prefix(name + "/")] == [b"a"]
    leader.resign()


@pytest.mark.compat
@pytest.mark.anyio
async def test_async_campaign_session_expired(aclient: AsyncClient, prefix: str) -> None:
    name = prefix + "leader"
    leader = Election(aclient, name, ttl=5)
    await leader.campaign("a")
    other = Election(aclient, name, ttl=5)
    errors: list[BaseException] = []

    async def campaign() -> None:
        try:
            await other.campaign("b")
        except SessionExpiredError as e:
            errors.append(e)

    async with anyio.create_task_group() as tg:
        tg.start_soon(campaign)
        with anyio.fail_after(10):
            while len(await aclient.get_prefix(name + "/")) < 2:
                await anyio.sleep(0.02)
        kv = next(k for k in await aclient.get_prefix(name + "/") if k.key != leader.key)
        await aclient.revoke_lease(kv.lease)
    assert len(errors) == 1
    assert unwrap(await leader.leader()).value == b"a"
    async with leader:
        pass  # leaving the context resigns
    assert await leader.leader() is None


def _change_before_watch(
    monkeypatch: pytest.MonkeyPatch, client: AsyncClient, key: bytes, change: Any
) -> None:
    """Make ``client.watch(key)`` run ``await change()`` once, just before the watch exists:
    the change lands between observe()'s read and its watch (a watch from now misses it)."""
    real = client.watch
    pending = [change]

    def watch(k: bytes, *args: Any, **kwargs: Any) -> Any:
        w = real(k, *args, **kwargs)
        if k != key or not pending:
            return w
        todo = pending.pop()

        async def start() -> Any:
            await todo()
            return await w

        return start()

    # not AsyncClient.watch's type (it may return a coroutine): setattr, not an assignment
    monkeypatch.setattr(client, "watch", watch)


@pytest.mark.anyio
@pytest.mark.parametrize("change", ["proclaim", "resign"])
async def test_observe_sees_changes_between_its_read_and_its_watch(
    aclient: AsyncClient, backend: str, prefix: str, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = prefix + "leader"
    first, second = Election(aclient, name, ttl=5), Election(aclient, name, ttl=5)
    await first.campaign("one")
    seen: list[bytes] = []
    async with AsyncClient(backend) as oc, anyio.create_task_group() as tg:

        async def move() -> None:
            if change == "proclaim":
                await first.proclaim("one-b")
            else:
                await first.resign()
                await second.campaign("two")

        assert first.key is not None
        _change_before_watch(monkeypatch, oc, first.key, move)

        async def observe() -> None:
            with anyio.fail_after(10):
                async for kv in Election(oc, name).observe():
                    seen.append(kv.value)
                    return

        tg.start_soon(observe)
    assert seen == ([b"one-b"] if change == "proclaim" else [b"two"])
    for e in (first, second):
        if e.is_leader:
            await e.resign()
