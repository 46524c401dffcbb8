"""The Raft core is sans-IO: no module under server/raft imports asyncio, time, random, os,
socket (or other I/O / clock / threading modules).  Randomness is injected via RaftConfig.rng."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RAFT_DIR = Path(__file__).resolve().parents[2] / "server" / "raft"
FORBIDDEN = {
    "asyncio",
    "time",
    "random",
    "os",
    "socket",
    "threading",
    "subprocess",
    "selectors",
    "datetime",
    "secrets",
    "msgspec",
    "anyio",
    "trio",
}


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            names.append("__import__")
    return names


def test_raft_modules_exist() -> None:
    files = sorted(p.name for p in RAFT_DIR.glob("*.py"))
    for required in (
        "core.py",
        "rawnode.py",
        "log.py",
        "log_unstable.py",
        "storage.py",
        "progress.py",
        "inflights.py",
        "quorum.py",
        "read_only.py",
        "confchange.py",
        "types.py",
    ):
        assert required in files


@pytest.mark.parametrize("path", sorted(RAFT_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [n for n in _imports(tree) if n == "__import__" or n.split(".")[0] in FORBIDDEN]
    assert not bad, f"{path.name} imports forbidden modules: {bad}"


def test_detector_catches_violations() -> None:
    src = "import os\nfrom time import monotonic\nimport asyncio.tasks\nimport random as r\n"
    assert [n.split(".")[0] for n in _imports(ast.parse(src))] == [
        "os",
        "time",
        "asyncio",
        "random",
    ]
