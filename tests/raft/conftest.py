"""Raft test configuration: adds the ``--rewrite`` and ``--raft-seeds`` options. (The tests
import their harness as ``raft.raft_harness``: tests/ is on pytest's pythonpath.)"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raft")
    group.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite the expected output of tests/raft/testdata/*.txt scenarios",
    )
    group.addoption(
        "--raft-seeds",
        type=int,
        default=None,
        help="number of seeds per randomized Raft simulation (default: env COORD_RAFT_SEEDS)",
    )
