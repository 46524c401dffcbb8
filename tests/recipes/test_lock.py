"""Lock: etcd Mutex layout, fencing tokens, ownership compares, timeouts, session loss."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from support import wait_for
from unwrap import unwrap

from coord import AsyncClient, Client, Put
from coord.recipes import Lock, LockNotHeldError, Session, SessionExpiredError
from coord.recipes.lock import SyncLock
from coord.types import KeyValue


@pytest.mark.compat
def test_acquire_release_layout_and_fencing(client: Client, prefix: str) -> None:
    name = prefix + "jobs"
    lock = Lock(client, name, ttl=5)
    assert lock.acquire() is True
    kvs = client.get_prefix(name + "/")
    assert len(kvs) == 1
    kv = kvs[0]
    assert kv.key == f"{name}/{kv.lease:x}".encode()  # prefix/<lease id lowercase hex>
    assert kv.value == b""
    assert lock.key == kv.key
    assert lock.fencing_token == kv.create_revision
    lock.impl._check()
    first = lock.fencing_token
    lock.release()
    assert client.get_prefix(name + "/") == []
    with pytest.raises(LockNotHeldError):
        lock.release()
    with Lock(client, name, ttl=5) as again:
        assert again.fencing_token > first


def test_nonblocking_and_timeout_leave_nothing_behind(client: Client, prefix: str) -> None:
    name = prefix + "jobs"
    holder = Lock(client, name, ttl=5)
    assert holder.acquire()
    other = Lock(client, name, ttl=5)
    assert other.acquire(blocking=False) is False
    assert len(client.get_prefix(name + "/")) == 1
    start = time.monotonic()
    assert other.acquire(timeout=0.4) is False
    assert time.monotonic() - start >= 0.35
    assert len(client.get_prefix(name + "/")) == 1
    holder.release()
    assert other.acquire(blocking=False) is True
    other.release()


def test_is_owner_guards_txns_and_fails_after_release(client: Client, prefix: str) -> None:
    name = prefix + "jobs"
    lock = Lock(client, name, ttl=5)
    with pytest.raises(LockNotHeldError):
        lock.is_owner()
    lock.acquire()
    ok, _ = client.txn(compare=[lock.is_owner()], success=[Put(prefix + "data", "1")])
    assert ok
    lock.release()
    ok, _ = client.txn(compare=[lock.is_owner()], success=[Put(prefix + "data", "2")])
    assert not ok
    assert unwrap(client.get(prefix + "data")).value == b"1"


def test_session_loss_while_held_fails_is_owner(client: Client, prefix: str) -> None:
    name = prefix + "jobs"
    lock = Lock(client, name, ttl=5)
    lock.acquire()
    assert lock.held
    lease = unwrap(client.get(lock.key)).lease
    client.revoke_lease(lease)  # as if the lease expired
    ok, _ = client.txn(compare=[lock.is_owner()], success=[Put(prefix + "data", "x")])
    assert not ok
    wait_for(lambda: not lock.held, timeout=10, what="lock notices its session is gone")


@pytest.mark.compat
def test_waiters_granted_in_arrival_order(client: Client, prefix: str) -> None:
    name = prefix + "jobs"
    first = Lock(client, name, ttl=5)
    first.acquire()
    order: list[int] = []
    tokens: list[int] = []

    def contender(i: int) -> None:
        lock = Lock(client, name, ttl=5)
        lock.acquire()
        order.append(i)
        tokens.append(lock.fencing_token)
        lock.release()

    threads = []
    for i in range(3):
        t = threading.Thread(target=contender, args=(i,))
        t.start()
        threads.append(t)
        queued = i + 2
        wait_for(
            lambda: len(client.get_prefix(name + "/")) == queued,  # noqa: B023
            timeout=10,
            what="contender queued",
        )
    first.release()
    for t in threads:
        t.join(timeout=20)
    assert order == [0, 1, 2]
    assert tokens == sorted(tokens)
    assert tokens[0] > first.fencing_token


def _queued_waiter(
    client: Client, name: str
) -> tuple[SyncLock, SyncLock, list[BaseException], threading.Thread, KeyValue]:
    """A holder, and a waiter blocked in acquire() on a thread (its errors collected);
    returns (holder, waiter, errors, thread, the waiter's key-value)."""
    holder = Lock(client, name, ttl=5)
    holder.acquire()
    waiter = Lock(client, name, ttl=5)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            waiter.acquire(timeout=20)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=wait)
    t.start()
    wait_for(lambda: len(client.get_prefix(name + "/")) == 2, timeout=10, what="waiter queued")
    mine = next(kv for kv in client.get_prefix(name + "/") if kv.key != holder.key)
    return holder, waiter, errors, t, mine


def test_waiter_whose_session_expires_raises(client: Client, prefix: str) -> None:
    holder, _waiter, errors, t, mine = _queued_waiter(client, prefix + "jobs")
    client.revoke_lease(mine.lease)
    t.join(timeout=20)
    assert len(errors) == 1
    assert isinstance(errors[0], SessionExpiredError)
    assert holder.held
    holder.release()


def test_shared_session_holds_several_locks(client: Client, prefix: str) -> None:
    with Session(client, ttl=5) as session:
        a = Lock(client, prefix + "a", session=session)
        b = Lock(client, prefix + "b", session=session)
        a.acquire()
        b.acquire()
        assert a.key
        assert b.key
        assert a.key.endswith(b.key.rsplit(b"/", 1)[1])
        b.release()
        assert client.get(a.key) is not None  # releasing b keeps the shared session
    assert client.get(a.key) is None  # closing the session released a


@pytest.mark.compat
@pytest.mark.anyio
async def test_async_lock_handoff(aclient: AsyncClient, prefix: str) -> None:
    name = prefix + "jobs"
    held: list[int] = []
    inside = 0

    async def worker() -> None:
        nonlocal inside
        for _ in range(3):
            async with Lock(aclient, name, ttl=5) as lock:
                inside += 1
                assert inside == 1
                held.append(lock.fencing_token)
                await anyio.sleep(0.01)
                inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(worker)
    assert len(held) == 9
    assert held == sorted(held)
    assert len(set(held)) == 9
    assert await aclient.get_prefix(name + "/") == []


@pytest.mark.anyio
async def test_async_timeout_and_cancel_clean_up(aclient: AsyncClient, prefix: str) -> None:
    name = prefix + "jobs"
    holder = Lock(aclient, name, ttl=5)
    await holder.acquire()
    other = Lock(aclient, name, ttl=5)
    assert await other.acquire(timeout=0.2) is False
    with anyio.move_on_after(0.2):
        await other.acquire()
    assert len(await aclient.get_prefix(name + "/")) == 1
    await holder.release()


def test_waiter_rechecks_its_key_after_the_wait(client: Client, prefix: str) -> None:
    """etcd #11456 (Jepsen): a waiter whose key vanished while it waited must not be told it
    holds the lock when its predecessor goes away."""
    holder, waiter, errors, t, mine = _queued_waiter(client, prefix + "jobs")
    client.delete(mine.key)  # the waiter's key disappears; its session stays alive
    holder.release()
    t.join(timeout=20)
    assert len(errors) == 1
    assert isinstance(errors[0], SessionExpiredError)
    assert str(errors[0]) == "mutex: session is expired"
    assert not waiter.held
