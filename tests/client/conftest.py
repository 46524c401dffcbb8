"""Fixtures for the client suite: a sync ``client`` and an async ``aclient`` on ``backend``.

Every test here runs twice with the same assertions: against coord-server and a real etcd.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from coord import AsyncClient, Client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client(backend: str) -> Iterator[Client]:
    with Client(backend, timeout=10) as c:
        yield c


@pytest.fixture
async def aclient(backend: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(backend, timeout=10) as c:
        yield c
