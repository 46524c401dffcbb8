"""Leases: grant, keep-alive, TTL, revoke, loss notification, context managers."""

from __future__ import annotations

import threading
import time

import pytest
from support import wait_for
from unwrap import unwrap

from coord import AsyncClient, Client, LeaseNotFoundError


def test_lease_attach_and_revoke(client: Client, prefix: str) -> None:
    lease = client.lease(ttl=10)
    assert lease.granted_ttl == 10
    assert lease.alive
    assert not lease.expired
    assert 0 < lease.ttl() <= 10
    client.put(prefix + "a", "up", lease=lease)
    client.put(prefix + "b", "up", lease=lease.id)
    assert unwrap(client.get(prefix + "a")).lease == lease.id
    info = client.lease_time_to_live(lease, keys=True)
    assert info.id == lease.id
    assert info.granted_ttl == 10
    assert sorted(info.keys) == [(prefix + "a").encode(), (prefix + "b").encode()]
    assert lease.id in client.leases()
    lease.revoke()
    assert not lease.alive
    assert not lease.expired
    assert client.get_prefix(prefix) == []
    assert client.lease_time_to_live(lease.id).ttl == -1
    with pytest.raises(LeaseNotFoundError):
        client.revoke_lease(lease.id)
    with pytest.raises(LeaseNotFoundError):
        client.put(prefix + "c", "v", lease=lease)


def test_lease_context_manager_revokes(client: Client, prefix: str) -> None:
    with client.lease(ttl=5) as lease:
        client.put(prefix + "a", "v", lease=lease)
        assert client.get(prefix + "a") is not None
    assert client.get(prefix + "a") is None
    assert not lease.alive


def test_keepalive_outlives_ttl(client: Client, prefix: str) -> None:
    lease = client.lease(ttl=2)
    client.put(prefix + "a", "v", lease=lease)
    deadline = time.monotonic() + 4.5  # more than twice the TTL
    while time.monotonic() < deadline:
        assert lease.alive
        time.sleep(0.5)
    assert client.get(prefix + "a") is not None
    assert lease.ttl() > 0
    lease.revoke()


def test_loss_is_observable(client: Client, backend: str, prefix: str) -> None:
    lost = threading.Event()
    lease = client.lease(ttl=5, on_lost=lambda _lease: lost.set())
    client.put(prefix + "a", "v", lease=lease)
    with Client(backend) as other:
        other.revoke_lease(lease.id)  # someone else revokes it
    assert lost.wait(10)  # the next keep-alive answers TTL 0
    assert lease.expired
    assert not lease.alive
    assert lease.wait(0.1)
    assert client.get(prefix + "a") is None


@pytest.mark.anyio
async def test_async_lease(aclient: AsyncClient, prefix: str) -> None:
    async with aclient.lease(5) as lease:
        await aclient.put(prefix + "a", "v", lease=lease)
        assert 0 < await lease.ttl() <= 5
        assert await lease.keys() == [(prefix + "a").encode()]
    assert await aclient.get(prefix + "a") is None
    lease2 = await aclient.lease(5)
    events: list[int] = []
    lease2.on_lost(lambda lz: events.append(lz.id))
    await aclient.revoke_lease(lease2)
    await lease2.wait()
    assert events == [lease2.id]
    assert lease2.expired


def test_keepalive_resumes_for_a_later_lease(client: Client, prefix: str) -> None:
    """The keep-alive stream goes idle when the last lease ends; a later lease still lives."""
    keeper = client.async_client._keepaliver
    first = client.lease(ttl=2)
    first.revoke()
    wait_for(lambda: keeper.idle, what="keep-alive loop going idle")  # its stream is closed
    second = client.lease(ttl=2)
    client.put(prefix + "b", "v", lease=second)
    deadline = time.monotonic() + 4.5  # more than twice the TTL
    while time.monotonic() < deadline:
        assert second.alive
        time.sleep(0.5)
    assert client.get(prefix + "b") is not None
    assert keeper.streams_opened == 2
    second.revoke()


def test_sync_lease_helpers(client: Client, prefix: str) -> None:
    lease = client.lease(10)
    client.put(prefix + "k", "v", lease=lease)
    assert lease.keys() == [(prefix + "k").encode()]
    assert lease.wait(0.05) is False  # still alive
    assert "alive" in repr(lease)
    client.revoke_lease(lease)  # by object
    assert client.lease_time_to_live(lease).ttl == -1
