"""Fixtures for the recipe suite: sync ``client`` and async ``aclient`` on ``backend``.

Every functional test runs against coord-server and against a real etcd (``backend`` is
parametrized in tests/conftest.py). Multi-process tests start ``worker.py`` processes.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support import Proc

from coord import AsyncClient, Client

WORKER = Path(__file__).with_name("worker.py")


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


class Workers:
    """Starts worker.py processes (cwd outside the repo) and stops them all at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []

    def start(self, *args: str) -> Proc:
        n = len(self.procs)
        proc = Proc([sys.executable, str(WORKER), *args], self.tmp / f"worker{n}.log",
                    cwd=self.tmp)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for p in self.procs:
            p.kill()
            p.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    w = Workers(tmp_path)
    yield w
    w.stop_all()
