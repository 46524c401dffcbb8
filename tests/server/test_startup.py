"""Failing fast at startup: a busy client or peer port, or a data directory in use, is refused
with one line and exit code 1 before anything is bootstrapped or written; the first server
keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import CoordProc, etcdctl, free_port, wait_for


def _tree(path: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")
    )


def _peer_args(port: int, name: str) -> list[str]:
    url = f"http://127.0.0.1:{port}"
    return [
        "--listen-peer-urls",
        url,
        "--initial-advertise-peer-urls",
        url,
        "--initial-cluster",
        f"{name}={url}",
    ]


@pytest.mark.etcdctl
@pytest.mark.parametrize("clash", ["client port", "peer port", "data dir"])
def test_second_server_is_refused_with_one_line(tmp_path: Path, clash: str) -> None:
    first = CoordProc(tmp_path, name="first")  # its ports are sockets bound here and passed
    first_peer = int(first.argv[first.argv.index("--listen-peer-urls") + 1].rsplit(":", 1)[1])
    second: CoordProc | None = None
    try:
        etcdctl(first.endpoint, "put", "/startup/a", "1")
        before = _tree(first.data_dir)
        client_port = first.client_port if clash == "client port" else None
        peer_port = first_peer if clash == "peer port" else free_port()
        args = _peer_args(peer_port, "second")
        if clash == "data dir":
            args += ["--data-dir", str(first.data_dir)]
        second = CoordProc(tmp_path, name="second", client_port=client_port, args=args, wait=False)
        wait_for(lambda: not second.alive(), timeout=20, what="the second server to exit")
        assert second.popen.returncode == 1
        lines = second.output().strip().splitlines()
        assert len(lines) == 1, second.output()  # one line, no traceback, nothing else
        (line,) = lines
        if clash == "client port":
            assert (
                f"cannot serve: cannot listen for client requests on "
                f"http://127.0.0.1:{client_port}: address already in use"
            ) in line
        elif clash == "peer port":
            assert (
                f"cannot serve: cannot listen for peers on "
                f"http://127.0.0.1:{peer_port}: address already in use"
            ) in line
        else:
            assert f"data directory {first.data_dir} is in use" in line
            assert f"pid {first.pid}" in line
        if clash != "data dir":
            assert not second.data_dir.exists()  # nothing created, bootstrapped or written
        assert _tree(first.data_dir) == before
        assert first.alive()
        etcdctl(first.endpoint, "put", "/startup/b", "2")
        assert etcdctl(first.endpoint, "get", "/startup/a", "--print-value-only").stdout == "1\n"
    finally:
        first.stop()
        if second is not None:
            second.stop()
