"""Shared fixtures: real coord-server and etcd processes on loopback.

``coord_server`` and ``etcd_server`` are session-scoped single-member servers (tests use
unique key prefixes); ``backend`` parametrizes a test over both, so client and recipe
suites run the same assertions against coord and against a real etcd.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import CoordProc, EtcdProc


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
