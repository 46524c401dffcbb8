"""coord.recipes exports exactly its documented names, and each dispatches on the client type."""

from __future__ import annotations

import coord.recipes as recipes
from coord import AsyncClient, Client
from coord.recipes.lock import AsyncLock, SyncLock


def test_all_is_pinned() -> None:
    assert sorted(recipes.__all__) == sorted(
        [
            "Barrier",
            "ClaimLostError",
            "Counter",
            "DoubleBarrier",
            "Election",
            "ElectionNotLeaderError",
            "Lock",
            "LockNotHeldError",
            "LockTimeoutError",
            "NoLeaderError",
            "PriorityQueue",
            "Queue",
            "RWLock",
            "RecipeError",
            "Semaphore",
            "Session",
            "SessionExpiredError",
            "TooManyClientsError",
            "WorkQueue",
        ]
    )
    for name in recipes.__all__:
        assert getattr(recipes, name).__doc__, name


def test_dispatch_on_client_type(backend: str) -> None:
    with Client(backend) as client:
        lock = recipes.Lock(client, "/dispatch")
        assert isinstance(lock, SyncLock)
        assert isinstance(lock, recipes.Lock)
        assert isinstance(lock.impl, AsyncLock)
        assert isinstance(lock.impl, recipes.Lock)
        assert isinstance(client.async_client, AsyncClient)
