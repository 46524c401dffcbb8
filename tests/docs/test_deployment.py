"""The deployment examples in docs/deploy/ configure a working 3-member cluster.

The systemd unit's member files (m1.yml ... for hosts 10.0.0.1-3) and compose.yaml's ETCD_*
environments are started as they are, with real coord-server processes, on this one machine:
each address the files name (10.0.0.i:port, mN:port, 0.0.0.0:port) is mapped to a free
loopback port, the same one wherever it appears, and data directories move into the test's
directory. ``docker build`` of the Dockerfile runs only where a container runtime answers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from support import Proc, free_port, wait_for
from unwrap import unwrap

from coord import Client

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"


class Addresses:
    """Maps each host:port of the examples to its own free port on 127.0.0.1."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}

    def __call__(self, text: str, listen_host: str) -> str:
        def one(m: re.Match[str]) -> str:
            host, port = m.group(1), m.group(2)
            if host == "0.0.0.0":  # every address of this member's host: its name's port
                host = listen_host
            elif host == "127.0.0.1":  # the loopback of the member's own host
                host = f"{listen_host}-loopback"
            key = f"{host}:{port}"
            return "127.0.0.1:" + str(self.ports.setdefault(key, free_port()))

        return re.sub(r"(?<=://)([\w.]+):(\d+)", one, text)


def _cluster_up(procs: list[Proc], endpoints: list[str]) -> None:
    def healthy() -> bool:
        for p in procs:
            if not p.alive():
                raise AssertionError(p.output())
        try:
            with Client(endpoints[0], timeout=2) as c:
                return len(c.members()) == 3 and c.status().leader != 0
        except Exception:
            return False

    wait_for(healthy, timeout=60, what="a 3-member cluster")
    with Client(endpoints[0]) as c:
        c.put("/deploy/check", "written on the first member")
    with Client(endpoints[2]) as c:  # linearizable read on another member
        assert unwrap(c.get("/deploy/check")).value == b"written on the first member"


def _run(procs: list[Proc], endpoints: list[str], check: Callable[[], None]) -> None:
    try:
        check()
    finally:
        for p in procs:
            p.stop()


def test_systemd_member_files_form_a_cluster(tmp_path: Path) -> None:
    assert "--config-file /etc/coord/coord.yml" in (DEPLOY / "coord.service").read_text()
    addresses = Addresses()
    procs, endpoints = [], []
    for i in (1, 2, 3):
        text = addresses((DEPLOY / f"m{i}.yml").read_text(), listen_host=f"10.0.0.{i}")
        config = yaml.safe_load(text)
        config["data-dir"] = str(tmp_path / f"m{i}")
        path = tmp_path / f"m{i}.yml"
        path.write_text(yaml.safe_dump(config))
        endpoints.append(config["advertise-client-urls"].removeprefix("http://"))
        procs.append(
            Proc(
                [sys.executable, "-m", "coord.server", "--config-file", str(path)],
                tmp_path / f"m{i}.log",
            )
        )
    _run(procs, endpoints, lambda: _cluster_up(procs, endpoints))


def test_compose_environments_form_a_cluster(tmp_path: Path) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert len(compose["services"]) == 3
    addresses = Addresses()
    procs, endpoints = [], []
    for name, service in compose["services"].items():
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        ).resolve()
        env = {k: addresses(str(v), listen_host=name) for k, v in service["environment"].items()}
        env["ETCD_DATA_DIR"] = str(tmp_path / name)
        endpoints.append(env["ETCD_ADVERTISE_CLIENT_URLS"].removeprefix("http://"))
        procs.append(
            Proc([sys.executable, "-m", "coord.server"], tmp_path / f"{name}.log", env=env)
        )
    _run(procs, endpoints, lambda: _cluster_up(procs, endpoints))


def _container_runtime() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    ok = subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False)
    return docker if ok.returncode == 0 else None


def test_dockerfile_builds() -> None:
    docker = _container_runtime()
    if docker is None:
        pytest.skip(
            "no container runtime answers here (docker info failed); "
            "docs/deployment.md says the image build is untested on such machines"
        )
    root = DEPLOY.parents[1]
    done = subprocess.run(
        [docker, "build", "-f", str(DEPLOY / "Dockerfile"), "-t", "coord-deploy-test", str(root)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
