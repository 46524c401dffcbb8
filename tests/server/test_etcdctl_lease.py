"""etcdctl lease commands, lease expiry, NOSPACE alarms and snapshot save.

The lease command tests run against coord and a real etcd (``backend``); expiry, quota and
snapshot tests use their own coord-server with small limits.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import CoordProc, etcdctl, free_port, wait_for

from coord._pb import etcdserverpb as pb
from coord.server.backup.etcddb import read_backend
from coord.server.backup.snapshotfile import open_snapshot
from coord.server.statemachine import StateMachine

pytestmark = pytest.mark.etcdctl


def ctl(endpoint: str, *args: str, **kw: Any) -> str:
    return etcdctl(endpoint, *args, **kw).stdout


def grant(endpoint: str, ttl: int) -> str:
    out = ctl(endpoint, "lease", "grant", str(ttl))
    m = re.fullmatch(r"lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)\n", out)
    assert m, out
    assert int(m.group(2)) == max(ttl, 2)
    return m.group(1)


def test_lease_lifecycle(backend: str, prefix: str) -> None:
    lease = grant(backend, 60)
    assert ctl(backend, "put", "--lease", lease, prefix + "a", "1") == "OK\n"
    assert ctl(backend, "put", "--lease", lease, prefix + "b", "2") == "OK\n"
    out = ctl(backend, "lease", "timetolive", lease, "--keys")
    m = re.fullmatch(
        rf"lease {lease} granted with TTL\(60s\), remaining\((\d+)s\), "
        r"attached keys\(\[(.*)\]\)\n",
        out,
    )
    assert m, out
    assert 55 <= int(m.group(1)) <= 60
    assert sorted(m.group(2).split()) == [prefix + "a", prefix + "b"]  # etcd: map order
    assert (
        ctl(backend, "lease", "keep-alive", "--once", lease)
        == f"lease {lease} keepalived with TTL(60)\n"
    )
    listed = ctl(backend, "lease", "list")
    assert lease in listed.split("\n")[1:]
    assert listed.startswith("found ")
    resp = json.loads(ctl(backend, "get", "--prefix", prefix, "-w", "json"))
    assert [kv["lease"] for kv in resp["kvs"]] == [int(lease, 16)] * 2
    rev = resp["header"]["revision"]
    assert ctl(backend, "lease", "revoke", lease) == f"lease {lease} revoked\n"
    resp = json.loads(ctl(backend, "get", "--prefix", prefix, "-w", "json"))
    assert "kvs" not in resp
    assert resp["header"]["revision"] == rev + 1  # both keys deleted in one revision
    assert ctl(backend, "lease", "timetolive", lease) == f"lease {lease} already expired\n"
    proc = etcdctl(backend, "lease", "keep-alive", "--once", lease, check=False)
    assert proc.returncode != 0
    assert "requested lease not found" in proc.stderr
    proc = etcdctl(backend, "lease", "revoke", lease, check=False)
    assert "Error: failed to revoke lease (etcdserver: requested lease not found)" in proc.stderr
    proc = etcdctl(backend, "put", "--lease", lease, prefix + "c", "3", check=False)
    assert "Error: etcdserver: requested lease not found" in proc.stderr


def test_small_ttl_raised_to_minimum(backend: str) -> None:
    lease = grant(backend, 1)
    ctl(backend, "lease", "revoke", lease)


# -- own servers ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordProc]:
    """Election timeout 500 ms -> minimum lease TTL 1 s; 4 KiB quota."""
    peer = f"http://127.0.0.1:{free_port()}"
    proc = CoordProc(
        tmp_path_factory.mktemp("fast"),
        args=[
            "--election-timeout",
            "500",
            "--quota-backend-bytes",
            "4096",
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
        ],
    )
    yield proc
    proc.stop()


def test_lease_expiry_deletes_keys(fast_server: CoordProc) -> None:
    ep = fast_server.endpoint
    out = ctl(ep, "lease", "grant", "1")
    lease = out.split()[1]
    assert out.endswith("granted with TTL(1s)\n")
    ctl(ep, "put", "--lease", lease, "/exp/a", "1")
    ctl(ep, "put", "--lease", lease, "/exp/b", "1")
    assert ctl(ep, "get", "--prefix", "/exp/", "--keys-only") == "/exp/a\n\n/exp/b\n\n"
    wait_for(
        lambda: ctl(ep, "get", "--prefix", "/exp/") == "",
        timeout=10,
        what="expired lease's keys deleted",
    )
    assert ctl(ep, "lease", "timetolive", lease) == f"lease {lease} already expired\n"
    assert lease not in ctl(ep, "lease", "list")


def test_nospace_alarm_and_disarm(fast_server: CoordProc) -> None:
    ep = fast_server.endpoint
    big = "v" * 500
    failures = []
    for i in range(20):
        proc = etcdctl(ep, "put", f"/quota/{i}", big, check=False)
        if proc.returncode != 0:
            failures.append(proc.stderr)
    assert failures, "quota never hit"
    assert "Error: etcdserver: mvcc: database space exceeded" in failures[0]
    alarms = ctl(ep, "alarm", "list")
    assert re.fullmatch(r"memberID:\d+ alarm:NOSPACE \n", alarms), alarms
    status = json.loads(ctl(ep, "endpoint", "status", "-w", "json"))[0]["Status"]
    assert any("alarm:NOSPACE" in e for e in status["errors"])
    # reads and deletes keep working; puts and grants do not
    assert ctl(ep, "get", "/quota/0", "--print-value-only") == big + "\n"
    proc = etcdctl(ep, "lease", "grant", "10", check=False)
    assert "etcdserver: mvcc: database space exceeded" in proc.stderr
    txn = etcdctl(ep, "txn", input="\n\nput /quota/t v\n\n", check=False)
    assert "Error: etcdserver: mvcc: database space exceeded" in txn.stderr
    assert ctl(ep, "del", "--prefix", "/quota/") != "0\n"
    ctl(
        ep,
        "compaction",
        json.loads(ctl(ep, "get", "x", "-w", "json"))["header"]["revision"].__str__(),
    )
    assert ctl(ep, "alarm", "disarm") == alarms
    assert ctl(ep, "alarm", "list") == ""
    assert ctl(ep, "put", "/quota/after", "ok") == "OK\n"


def test_snapshot_save(fast_server: CoordProc, tmp_path: Path) -> None:
    ep = fast_server.endpoint
    ctl(ep, "put", "/snap/k", "v")
    path = tmp_path / "snap.db"
    proc = etcdctl(ep, "snapshot", "save", str(path))
    assert f"Snapshot saved at {path}" in proc.stdout
    data = path.read_bytes()
    assert len(data) % 512 == 32
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    # an etcd backend db: etcdctl reads it, and it holds the key with its revisions
    st = json.loads(ctl(ep, "snapshot", "status", str(path), "-w", "json"))
    got = json.loads(ctl(ep, "get", "/snap/k", "-w", "json"))
    assert st["totalSize"] == len(data) - 32
    assert st["revision"] == got["header"]["revision"]
    sm = StateMachine()
    with open_snapshot(path) as db:
        sm.restore(read_backend(db).state(1))
    resp = pb.RangeResponse.parse(sm.kv.range(pb.RangeRequest(key=b"/snap/k")))
    assert resp.kvs[0].value == b"v"
    assert resp.kvs[0].mod_revision == got["kvs"][0]["mod_revision"]
