"""Recipe tests run against coord; those marked ``compat`` also run against a real etcd.

The recipes' behaviour does not depend on the server, so one run of each assertion against
coord covers the recipe code; the etcd run checks that the recipe keeps working on etcd (the
same key layout, txns and lease semantics). Every recipe keeps at least one ``compat`` test,
``test_interop.py`` (our recipes against etcdctl's) is ``compat`` as a whole, and the test ids
stay ``[coord]`` / ``[etcd]``.
"""

from __future__ import annotations

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        kinds = ["coord", "etcd"] if metafunc.definition.get_closest_marker("compat") else ["coord"]
        metafunc.parametrize("backend", kinds, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Endpoint ("host:port") of the coord-server or the real etcd named by the parameter."""
    name = "coord_server" if request.param == "coord" else "etcd_server"
    return str(request.getfixturevalue(name).endpoint)
