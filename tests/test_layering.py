"""The server does not load the client (docs/architecture.md, the dependency rule).

``import coord.server.X`` imports the parent package ``coord`` first; its public names are
lazy (PEP 562), so that costs the server nothing of the client's transport. Each check runs in
a fresh interpreter (``-X importtime`` lists every module it loaded), because this test
process has long imported the client. import-linter (``tox -e lint``) checks the static
imports; this checks what is actually loaded.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import coord

ROOT = Path(__file__).resolve().parents[1]

#: modules only the client's transport needs
CLIENT_TRANSPORT = re.compile(
    r"\b(coord\._h2|coord\._conn|coord\.aio|coord\.client"
    r"|grpclib\.client)$"
)


def loaded_modules(code: str, cwd: Path) -> list[str]:
    """The modules a fresh interpreter imports while running ``code``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]


@pytest.mark.parametrize(
    "module",
    [
        "coord",
        "coord.errors",
        "coord.server.statemachine",
        "coord.server.app",
        "coord.server.main",
    ],
)
def test_importing_the_server_loads_no_client_transport(module: str, tmp_path: Path) -> None:
    loaded = loaded_modules(f"import {module}", tmp_path)
    assert module in loaded or module == "coord"
    assert [name for name in loaded if CLIENT_TRANSPORT.search(name)] == []


def test_public_names_load_on_first_use(tmp_path: Path) -> None:
    code = "import sys, coord; coord.Client; print(*sorted(sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = proc.stdout.split()
    assert "coord.client" in loaded
    assert "coord._conn" in loaded


def test_every_public_name_has_a_lazy_home() -> None:
    lazy = set(coord._LAZY) | {"__version__", "errors"}
    assert lazy == set(coord.__all__)
    assert set(coord.__all__) <= set(dir(coord))


def _contract(name_start: str) -> dict[str, list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["name"].startswith(name_start))


def _children(folder: Path, package: str) -> set[str]:
    """The modules and packages directly inside ``folder``, as ``package.name``."""
    return {
        f"{package}.{p.stem}"
        for p in folder.iterdir()
        if not p.name.startswith("__") and (p.suffix == ".py" or (p / "__init__.py").exists())
    }


def test_contracts_name_every_module() -> None:
    """The import-linter contracts list modules one by one: a new module must join them."""
    raft = _contract("The Raft core")
    assert set(raft["forbidden_modules"]) == _children(ROOT / "server", "coord.server") - {
        "coord.server.raft"
    }
    client = _contract("The client does not import the server")
    assert set(client["source_modules"]) == _children(ROOT / "coord", "coord")


def test_server_modules_hold_one_concept_each() -> None:
    """No server module grows past 600 lines (docs/architecture.md); the Raft core stays whole,
    as etcd-io/raft's raft.go does."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "server").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    long.pop("server/raft/core.py", None)
    assert long == {}
