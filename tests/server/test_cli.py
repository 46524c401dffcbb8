"""The coord-server command: --help, several client URLs, lifecycle log lines, clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import CoordProc, etcdctl, free_port, wait_for


def test_help_documents_every_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "coord.server", "--help"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    for flag in ("--name", "--data-dir", "--listen-client-urls", "--advertise-client-urls",
                 "--listen-peer-urls", "--initial-advertise-peer-urls", "--initial-cluster",
                 "--initial-cluster-state", "--initial-cluster-token", "--quota-backend-bytes",
                 "--max-txn-ops", "--max-request-bytes", "--heartbeat-interval",
                 "--election-timeout", "--snapshot-count", "--log-level"):
        assert flag in out
    assert "default: default" in out  # --name default shown


def test_bad_flag_value_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "coord.server", "--listen-client-urls",
                           "localhost:1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "invalid URL 'localhost:1': expected http://host:port" in proc.stderr


@pytest.mark.etcdctl
def test_two_client_urls_and_sigterm(tmp_path: Path) -> None:
    second = free_port()
    peer = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    proc = CoordProc(tmp_path, name="cli", client_port=port, args=[
        "--listen-client-urls", f"http://127.0.0.1:{port},http://127.0.0.1:{second}",
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer])
    try:
        etcdctl(proc.endpoint, "put", "/cli/k", "v")
        assert etcdctl(f"127.0.0.1:{second}", "get", "/cli/k", "--print-value-only").stdout \
            == "v\n"
        log = proc.output()
        assert "starting coord-server 'cli'" in log
        assert f"on http://127.0.0.1:{port}" in log
        assert f"on http://127.0.0.1:{second}" in log
        assert "became leader" in log
        proc.popen.send_signal(signal.SIGTERM)
        wait_for(lambda: not proc.alive(), timeout=20, what="coord-server exit after SIGTERM")
        assert proc.popen.returncode == 0
        log = proc.output()
        assert "stopping coord-server 'cli'" in log
        assert "Traceback" not in log
    finally:
        proc.stop()
