"""Raft test configuration: makes ``raft_harness`` importable and adds the ``--rewrite`` and
``--raft-seeds`` options."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


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
