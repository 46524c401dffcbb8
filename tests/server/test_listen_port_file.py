"""Port 0 and ``--listen-port-file``; listening sockets passed by socket activation.

CoordProc (tests/support.py) starts every server this way: clients on port 0, whose bound
port it reads from the port file, and peer sockets it binds itself and passes in (LISTEN_FDS),
so these tests check what the rest of the suite relies on.
"""

from __future__ import annotations

import json
from pathlib import Path

from support import CoordProc, etcdctl, listen_socket, socket_url


def test_port_zero_is_logged_written_and_advertised(tmp_path: Path) -> None:
    proc = CoordProc(tmp_path, name="zero")
    try:
        url = f"http://127.0.0.1:{proc.client_port}"
        data = json.loads(proc.port_file.read_text())
        assert data["name"] == "zero"
        assert data["client"] == [url]
        assert proc.client_port != 0
        assert f"listening for client requests (gRPC and HTTP/JSON) on {url}" in proc.output()
        members = etcdctl(proc.endpoint, "member", "list", "-w", "json").stdout
        assert json.loads(members)["members"][0]["clientURLs"] == [url]
    finally:
        proc.stop()


def test_passed_peer_and_client_sockets_are_used(tmp_path: Path) -> None:
    client, peer = listen_socket(), listen_socket()
    client_port, peer_url = client.getsockname()[1], socket_url(peer)
    proc = CoordProc(
        tmp_path,
        name="passed",
        client_port=client_port,
        sockets=[client, peer],
        args=[
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            f"passed={peer_url}",
        ],
    )
    try:
        data = json.loads(proc.port_file.read_text())
        assert data["client"] == [f"http://127.0.0.1:{client_port}"]
        assert data["peer"] == [peer_url]
        etcdctl(proc.endpoint, "put", "/passed", "1")
    finally:
        proc.stop()
