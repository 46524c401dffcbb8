"""Fixtures for the recipe suite: sync ``client`` and async ``aclient`` on ``backend``.

Every functional test runs against coord-server and against a real etcd (``backend`` is
parametrized in tests/conftest.py).
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
