"""Shared fixtures: real coord-server and etcd processes on loopback, and clients for them.

``coord_server`` and ``etcd_server`` are session-scoped single-member servers (tests use
unique key prefixes); ``backend`` parametrizes a test over both, so client and recipe
suites run the same assertions against coord and against a real etcd. ``client`` and
``aclient`` are a sync and an async client connected to ``backend``.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support import CoordProc, EtcdProc

from coord import AsyncClient, Client

# Child processes (`python -m coord.server`, workers) must import the installed package: with
# the repo root as their cwd, Python would otherwise put it first on sys.path, and the source
# folder coord/ (which holds no coord.server: that maps from server/) would shadow it.
os.environ["PYTHONSAFEPATH"] = "1"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# A SIGTERM (e.g. from `timeout`) stops the run like Ctrl-C: fixtures tear down and the atexit
# hook in support.py kills any server left, instead of leaving them running.
signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture(scope="session")
def coord_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordProc]:
    proc = CoordProc(tmp_path_factory.mktemp("coord"))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProc]:
    proc = EtcdProc(tmp_path_factory.mktemp("etcd"))
    yield proc
    proc.stop()


@pytest.fixture(params=["coord", "etcd"])
def backend(request: pytest.FixtureRequest) -> str:
    """Endpoint ("host:port") of a coord-server, then of a real etcd."""
    name = "coord_server" if request.param == "coord" else "etcd_server"
    server = request.getfixturevalue(name)
    return str(server.endpoint)


@pytest.fixture
def prefix() -> str:
    """A key prefix unique to this test, so tests can share one server."""
    return f"/t-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


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
