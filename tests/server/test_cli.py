"""The coord-server command: --help, several client URLs, lifecycle log lines, clean stop."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import CoordProc, etcdctl, free_port, http_get, wait_for
from unwrap import unwrap

import coord
from coord import Client


def test_help_documents_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "coord.server", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for flag in (
        "--name",
        "--data-dir",
        "--listen-client-urls",
        "--advertise-client-urls",
        "--listen-peer-urls",
        "--initial-advertise-peer-urls",
        "--initial-cluster",
        "--initial-cluster-state",
        "--initial-cluster-token",
        "--quota-backend-bytes",
        "--max-txn-ops",
        "--max-request-bytes",
        "--heartbeat-interval",
        "--election-timeout",
        "--snapshot-count",
        "--log-level",
        "--logger",
        "--log-outputs",
        "--config-file",
        "--version",
    ):
        assert flag in out
    assert "default: default" in out  # --name default shown


def _help() -> str:
    return subprocess.run(
        [sys.executable, "-m", "coord.server", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_help_states_each_default_once() -> None:
    options, _, epilog = _help().partition("\noptions:\n")[2].partition("\n\n")
    blocks = re.split(r"\n(?=  -)", options)  # one block per option (its help may wrap)
    assert len(blocks) > 20
    for block in blocks:
        flat = " ".join(block.split())
        assert flat.count("default:") <= 1, block
    # help text without whitespace, so wrapping at any terminal width does not matter
    by_flag = {b.split()[0].rstrip(","): "".join(b.split()) for b in blocks}
    assert "(default:<name>.coord)" in by_flag["--data-dir"]
    assert "(default:<name>=<initial-advertise-peer-urls>)" in by_flag["--initial-cluster"]
    assert "(default:1572864)" in by_flag["--max-request-bytes"]
    assert "(default:capnslog)" in by_flag["--logger"]
    assert "(default:" not in by_flag["--cert-file"]  # no default value: nothing to state
    # the epilog: configuration sources and the cluster subcommand
    flat = " ".join(epilog.split())
    assert "ETCD_SOME_FLAG" in flat
    assert (
        "When a config file is given, all other command-line flags and environment "
        "variables are ignored."
    ) in flat
    assert "coord-server cluster [--size 3]" in flat


def test_version_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "coord.server", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert coord.__version__ == importlib.metadata.version("coord")
    assert out.splitlines() == [
        f"coord-server {coord.__version__}",
        "etcd API: 3.5",
        f"Python: {platform.python_version()}",
    ]


def test_version_endpoint_reports_coord_and_etcd_versions(tmp_path: Path) -> None:
    proc = CoordProc(tmp_path, name="ver")
    try:
        status, body = http_get(f"http://{proc.endpoint}/version", timeout=10)
        assert status == 200
        with Client(proc.endpoint, timeout=10) as c:
            server = c.status().version
        major_minor = ".".join(server.split(".")[:2])
        assert json.loads(body) == {
            "etcdserver": server,
            "etcdcluster": f"{major_minor}.0",
            "coord": coord.__version__,
        }
        assert major_minor == "3.5"  # what --version prints as the etcd API
    finally:
        proc.stop()


def test_bad_flag_value_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "coord.server", "--listen-client-urls", "localhost:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "invalid URL 'localhost:1': expected http://host:port" in proc.stderr


@pytest.mark.etcdctl
def test_two_client_urls_and_sigterm(tmp_path: Path) -> None:
    second = free_port()
    peer = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    proc = CoordProc(
        tmp_path,
        name="cli",
        client_port=port,
        args=[
            "--listen-client-urls",
            f"http://127.0.0.1:{port},http://127.0.0.1:{second}",
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
        ],
    )
    try:
        etcdctl(proc.endpoint, "put", "/cli/k", "v")
        assert etcdctl(f"127.0.0.1:{second}", "get", "/cli/k", "--print-value-only").stdout == "v\n"
        log = proc.output()
        assert "starting coord-server 'cli'" in log
        assert f"on http://127.0.0.1:{port}" in log
        assert f"on http://127.0.0.1:{second}" in log
        assert "acquired leadership (term" in log  # the node logs leadership changes
        proc.popen.send_signal(signal.SIGTERM)
        wait_for(lambda: not proc.alive(), timeout=20, what="coord-server exit after SIGTERM")
        assert proc.popen.returncode == 0
        log = proc.output()
        assert "stopping coord-server 'cli'" in log
        assert "Traceback" not in log
    finally:
        proc.stop()


def test_second_server_on_one_data_dir_exits(tmp_path: Path) -> None:
    """Bug 7: the data directory is locked; a second server exits at once, the first serves."""
    first = CoordProc(tmp_path, name="first")
    second: CoordProc | None = None
    try:
        with Client(first.endpoint, timeout=10) as c:
            c.put("/lock/a", "1")
        before = sorted(
            (p.relative_to(first.data_dir), p.stat().st_size) for p in first.data_dir.rglob("*")
        )
        second = CoordProc(
            tmp_path, name="second", args=["--data-dir", str(first.data_dir)], wait=False
        )
        wait_for(lambda: not second.alive(), timeout=20, what="the second server to exit")
        assert second.popen.returncode == 1
        err = [ln for ln in second.output().splitlines() if "cannot serve" in ln]
        assert len(err) == 1, second.output()
        assert str(first.data_dir) in err[0]
        assert f"pid {first.pid}" in err[0]
        assert "Traceback" not in second.output()
        after = sorted(
            (p.relative_to(first.data_dir), p.stat().st_size) for p in first.data_dir.rglob("*")
        )
        assert after == before  # the second server touched nothing
        with Client(first.endpoint, timeout=10) as c:
            c.put("/lock/b", "2")
            assert unwrap(c.get("/lock/a")).value == b"1"
        # kill -9 releases the lock (it is a flock): the directory can be used again
        first.kill()
        first.stop()
        third = CoordProc(tmp_path, name="third", args=["--data-dir", str(first.data_dir)])
        try:
            with Client(third.endpoint, timeout=10) as c:
                assert unwrap(c.get("/lock/b")).value == b"2"
        finally:
            third.stop()
    finally:
        first.stop()
        if second is not None:
            second.stop()
