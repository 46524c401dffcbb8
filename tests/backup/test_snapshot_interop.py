"""Snapshots between coord and a real etcd, both ways, through etcdctl (issue 18's acceptance).

1. coord -> etcd: a 3-member coord cluster with 10,000 keys, overwrites, deletes, a
   compaction, 10 leases with keys, users and roles (auth on); ``etcdctl snapshot save``
   from coord, ``snapshot status``, ``snapshot restore``, a real etcd on the restored dir:
   every live key, revision, lease, user and role matches.
2. etcd -> coord: the same data in a real etcd, ``etcdctl snapshot save``, ``coord-server
   snapshot restore`` of three members, a 3-member coord cluster: everything matches and
   ``etcdctl endpoint hashkv`` agrees across the members.
3. coord -> coord: a single coord-server's snapshot restored into a new one (the offline save
   of the stopped member gives the same file status).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster.clusterlib import TOKEN, Cluster
from support import (
    CoordProc,
    EtcdProc,
    Proc,
    enable_auth,
    etcdctl,
    free_port,
    http_get,
    listen_socket,
    require_binary,
    socket_url,
    wait_for,
)

from coord import Client, Delete, Put

ROOT = ("--user", "root:rootpw")
KEYS = 10_000


def fill(endpoint: str) -> None:
    """The acceptance data set: written the same way into coord and into etcd."""
    with Client(endpoint, timeout=30) as c:
        for start in range(0, KEYS, 125):
            c.txn(
                success=[
                    Put(f"/d/{i:05d}", f"v{i}-" + "x" * (i % 300))
                    for i in range(start, start + 125)
                ]
            )
        for i in range(0, KEYS, 10):  # overwrites: version 2 and 3
            c.put(f"/d/{i:05d}", f"over{i}")
        for i in range(0, KEYS, 20):
            c.put(f"/d/{i:05d}", f"again{i}")
        middle = c.put("/mark", "m")
        c.txn(success=[Delete(f"/d/{i:05d}") for i in range(5, KEYS, 100)])  # deletes
        for i in range(7, 200, 7):
            c.delete(f"/d/{i:05d}")
        c.compact(middle)
        for n in range(10):
            lease = c.lease(600 + n)
            for j in range(3):
                c.put(f"/leased/{n}/{j}", "l", lease=lease)
        c.put("/app/config", "on")
    enable_auth(endpoint)


def dump(endpoint: str) -> dict[str, Any]:
    """Everything the acceptance compares, read with etcdctl as root."""
    got = json.loads(etcdctl(endpoint, *ROOT, "get", "", "--prefix", "-w", "json").stdout)
    kvs = {
        kv["key"]: (
            kv.get("value"),
            kv["create_revision"],
            kv["mod_revision"],
            kv["version"],
            kv.get("lease", 0),
        )
        for kv in got["kvs"]
    }
    leases = {}
    for line in etcdctl(endpoint, *ROOT, "lease", "list").stdout.splitlines()[1:]:
        ttl = json.loads(
            etcdctl(endpoint, *ROOT, "lease", "timetolive", line, "--keys", "-w", "json").stdout
        )
        leases[line] = (ttl["granted-ttl"], len(ttl.get("keys") or []))
    users = etcdctl(endpoint, *ROOT, "user", "list").stdout.split()
    roles = {
        r: etcdctl(endpoint, *ROOT, "role", "get", r).stdout
        for r in etcdctl(endpoint, *ROOT, "role", "list").stdout.split()
    }
    return {
        "revision": got["header"]["revision"],
        "kvs": kvs,
        "leases": leases,
        "users": users,
        "roles": roles,
    }


def check_app_user(endpoint: str) -> None:
    """The restored password hash and role work: app reads /app/, nothing else."""
    app = ("--user", "app:apppw")
    assert etcdctl(endpoint, *app, "get", "/app/config", "--print-value-only").stdout == "on\n"
    denied = etcdctl(endpoint, *app, "get", "/d/00001", check=False)
    assert "permission denied" in denied.stderr


class RestoredEtcd(Proc):
    """A real etcd member started on a directory ``etcdctl snapshot restore`` made."""

    def __init__(self, snapshot: Path, tmp: Path) -> None:
        self.client_port, peer = free_port(), free_port()
        self.endpoint = f"127.0.0.1:{self.client_port}"
        peer_url = f"http://127.0.0.1:{peer}"
        data = tmp / "etcd-restored"
        etcdctl(
            self.endpoint,
            "snapshot",
            "restore",
            str(snapshot),
            "--data-dir",
            str(data),
            "--name",
            "r1",
            "--initial-cluster",
            f"r1={peer_url}",
            "--initial-advertise-peer-urls",
            peer_url,
        )
        super().__init__(
            [
                require_binary("etcd"),
                "--name",
                "r1",
                "--data-dir",
                str(data),
                "--log-level",
                "warn",
                "--listen-client-urls",
                f"http://{self.endpoint}",
                "--advertise-client-urls",
                f"http://{self.endpoint}",
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"r1={peer_url}",
            ],
            tmp / "etcd-restored.log",
        )
        wait_for(self._healthy, timeout=30, what=f"restored etcd on {self.endpoint}")

    def _healthy(self) -> bool:
        assert self.alive(), f"restored etcd exited:\n{self.output()}"
        code, body = http_get(f"http://{self.endpoint}/health")
        return code == 200 and b'"true"' in body


def coord_snapshot(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "coord.server", "snapshot", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def status(path: Path) -> dict[str, int]:
    ours = json.loads(coord_snapshot("status", str(path), "-w", "json").stdout)
    theirs = json.loads(
        etcdctl("127.0.0.1:1", "snapshot", "status", str(path), "-w", "json").stdout
    )
    assert ours == theirs
    return dict(ours)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    (tmp_path / "coord").mkdir()
    c = Cluster(tmp_path / "coord", 3)
    yield c
    c.stop()


def test_coord_to_etcd(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start()
    ep = cluster.wait_leader().endpoint
    fill(ep)
    want = dump(ep)
    assert len(want["kvs"]) > 9_000
    assert len(want["leases"]) == 10
    snap = tmp_path / "coord.db"
    etcdctl(cluster.members[1].endpoint, *ROOT, "snapshot", "save", str(snap))
    st = status(snap)
    assert st["revision"] == want["revision"]
    etcd = RestoredEtcd(snap, tmp_path)
    try:
        got = dump(etcd.endpoint)
        assert got == want
        check_app_user(etcd.endpoint)
        # etcd goes on from there
        etcdctl(etcd.endpoint, *ROOT, "put", "/after", "1")
        rev = json.loads(etcdctl(etcd.endpoint, *ROOT, "get", "/after", "-w", "json").stdout)
        assert rev["kvs"][0]["mod_revision"] == want["revision"] + 1
    finally:
        etcd.stop()


def test_etcd_to_coord(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "etcd").mkdir()
    etcd = EtcdProc(tmp_path / "etcd")
    try:
        fill(etcd.endpoint)
        want = dump(etcd.endpoint)
        snap = tmp_path / "etcd.db"
        etcdctl(etcd.endpoint, *ROOT, "snapshot", "save", str(snap))
    finally:
        etcd.stop()
    st = status(snap)
    for m in cluster.members:
        coord_snapshot(
            "restore",
            str(snap),
            "--data-dir",
            str(tmp_path / "coord" / f"{m.name}.coord"),
            "--name",
            m.name,
            "--initial-cluster",
            cluster.initial_cluster,
            "--initial-cluster-token",
            TOKEN,
            "--initial-advertise-peer-urls",
            m.peer_url,
        )
    cluster.start()
    ep = cluster.wait_leader().endpoint
    got = dump(ep)
    assert got == want
    assert got["revision"] == st["revision"]
    check_app_user(ep)
    for m in cluster.members:  # every member, not only the leader, serves the same state
        one = json.loads(
            etcdctl(m.endpoint, *ROOT, "get", "/d/00003", "--consistency=s", "-w", "json").stdout
        )
        assert one["kvs"][0]["mod_revision"] == want["kvs"]["L2QvMDAwMDM="][2]
    endpoints = ",".join(m.endpoint for m in cluster.members)
    hashes = json.loads(etcdctl(endpoints, *ROOT, "endpoint", "hashkv", "-w", "json").stdout)
    assert len(hashes) == 3, hashes
    assert len({h["HashKV"]["hash"] for h in hashes}) == 1, hashes
    # the restored cluster takes writes at the next revision on every member
    etcdctl(ep, *ROOT, "put", "/after", "1")
    wait_for(
        lambda: all(
            json.loads(
                etcdctl(m.endpoint, *ROOT, "get", "/after", "--consistency=s", "-w", "json").stdout
            ).get("kvs")
            for m in cluster.members
        ),
        timeout=10,
        what="the write on every member",
    )


def test_coord_to_coord_and_offline_save(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    src = CoordProc(tmp_path / "src", name="src")
    try:
        with Client(src.endpoint) as c:
            for i in range(300):
                c.put(f"/k/{i}", str(i) * (i % 50))
            c.delete("/k/7")
            c.compact(100)
            lease = c.lease(900)
            c.put("/leased", "x", lease=lease)
            c.put("/app/config", "on")
        enable_auth(src.endpoint)
        want = dump(src.endpoint)
        snap = tmp_path / "online.db"
        etcdctl(src.endpoint, *ROOT, "snapshot", "save", str(snap))
    finally:
        src.stop()
    offline = tmp_path / "offline.db"
    coord_snapshot("save", "--data-dir", str(src.data_dir), str(offline))
    assert status(offline) == status(snap)
    peer_sock = listen_socket()  # bound here and passed on: no race for the port
    peer = socket_url(peer_sock)
    dst_dir = tmp_path / "dst"
    coord_snapshot(
        "restore",
        str(offline),
        "--data-dir",
        str(dst_dir / "dst.coord"),
        "--name",
        "dst",
        "--initial-cluster",
        f"dst={peer}",
        "--initial-advertise-peer-urls",
        peer,
    )
    dst = CoordProc(
        dst_dir,
        name="dst",
        args=[
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"dst={peer}",
        ],
        sockets=[peer_sock],
    )
    try:
        assert dump(dst.endpoint) == want
        check_app_user(dst.endpoint)
    finally:
        dst.stop()
