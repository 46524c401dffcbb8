"""etcdctl (Debian, API v3) against coord-server and, for the same assertions, a real etcd.

Each test runs once per backend (``backend`` fixture): the expected outputs are written out
literally, so passing on both proves coord prints what etcd prints.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from support import etcdctl

pytestmark = pytest.mark.etcdctl


def ctl(endpoint: str, *args: str, **kw: Any) -> str:
    return etcdctl(endpoint, *args, **kw).stdout


def ctl_json(endpoint: str, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(ctl(endpoint, *args, "-w", "json"))
    return out


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def fail(endpoint: str, *args: str, input: str | None = None) -> str:
    proc = etcdctl(endpoint, *args, input=input, check=False)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def test_put_get_json_fields(backend: str, prefix: str) -> None:
    assert ctl(backend, "put", prefix + "a", "1") == "OK\n"
    resp = ctl_json(backend, "get", prefix + "a")
    rev = resp["header"]["revision"]
    assert set(resp["header"]) == {"cluster_id", "member_id", "revision", "raft_term"}
    assert resp["count"] == 1
    assert resp["kvs"] == [
        {
            "key": b64(prefix + "a"),
            "create_revision": rev,
            "mod_revision": rev,
            "version": 1,
            "value": b64("1"),
        }
    ]
    ctl(backend, "put", prefix + "a", "2")
    kv = ctl_json(backend, "get", prefix + "a")["kvs"][0]
    assert (kv["create_revision"], kv["mod_revision"], kv["version"]) == (rev, rev + 1, 2)
    assert "kvs" not in ctl_json(backend, "get", prefix + "missing")


def test_get_prefix_range_limit_sort(backend: str, prefix: str) -> None:
    for k, v in [("b", "2"), ("a", "3"), ("c", "1"), ("d", "0")]:
        ctl(backend, "put", prefix + k, v)
    p = prefix
    assert ctl(backend, "get", "--prefix", p) == f"{p}a\n3\n{p}b\n2\n{p}c\n1\n{p}d\n0\n"
    assert ctl(backend, "get", p + "b", p + "d") == f"{p}b\n2\n{p}c\n1\n"
    assert ctl(backend, "get", "--prefix", p, "--limit", "2") == f"{p}a\n3\n{p}b\n2\n"
    resp = ctl_json(backend, "get", "--prefix", p, "--limit", "2")
    assert resp["more"] is True
    assert resp["count"] == 4
    assert (
        ctl(backend, "get", "--prefix", p, "--sort-by", "VALUE", "--keys-only")
        == f"{p}d\n\n{p}c\n\n{p}b\n\n{p}a\n\n"
    )
    assert (
        ctl(backend, "get", "--prefix", p, "--order", "DESCEND", "--print-value-only")
        == "0\n1\n2\n3\n"
    )
    assert (
        ctl(
            backend,
            "get",
            "--prefix",
            p,
            "--sort-by",
            "CREATE",
            "--order",
            "DESCEND",
            "--limit",
            "1",
            "--keys-only",
        )
        == f"{p}d\n\n"
    )
    assert (
        ctl(backend, "get", "--from-key", p + "c", "--keys-only", "--limit", "2")
        == f"{p}c\n\n{p}d\n\n"
    )
    count = ctl_json(backend, "get", "--prefix", p, "--limit", "1")
    assert count["count"] == 4


def test_get_rev_history(backend: str, prefix: str) -> None:
    ctl(backend, "put", prefix + "h", "old")
    rev = ctl_json(backend, "get", prefix + "h")["header"]["revision"]
    ctl(backend, "put", prefix + "h", "new")
    assert ctl(backend, "get", prefix + "h", "--rev", str(rev), "--print-value-only") == "old\n"
    assert ctl(backend, "get", prefix + "h", "--print-value-only") == "new\n"
    resp = ctl_json(backend, "get", prefix + "h", "--rev", str(rev))
    assert resp["header"]["revision"] == rev + 1  # header: current revision, not the read one


def test_future_revision_rejected(backend: str, prefix: str) -> None:
    err = fail(backend, "get", prefix + "x", "--rev", "99999999")
    assert "Error: etcdserver: mvcc: required revision is a future revision" in err


def test_del_prefix_prev_kv(backend: str, prefix: str) -> None:
    for k in "xyz":
        ctl(backend, "put", prefix + k, k.upper())
    assert ctl(backend, "del", prefix + "x") == "1\n"
    assert ctl(backend, "del", prefix + "nothing") == "0\n"
    out = ctl(backend, "del", "--prefix", prefix, "--prev-kv")
    assert out == f"2\n{prefix}y\nY\n{prefix}z\nZ\n"
    resp = ctl_json(backend, "get", "--prefix", prefix)
    assert resp.get("count", 0) == 0


def test_put_prev_kv_and_ignore_value(backend: str, prefix: str) -> None:
    ctl(backend, "put", prefix + "k", "v1")
    assert ctl(backend, "put", prefix + "k", "v2", "--prev-kv") == f"OK\n{prefix}k\nv1\n"
    assert ctl(backend, "put", prefix + "k", "--ignore-value") == "OK\n"
    assert ctl(backend, "get", prefix + "k", "--print-value-only") == "v2\n"
    err = fail(backend, "put", prefix + "nokey", "--ignore-value")
    assert "Error: etcdserver: key not found" in err


def test_txn_success_and_failure(backend: str, prefix: str) -> None:
    k = prefix + "t"
    ctl(backend, "put", k, "bar")
    stdin = f'value("{k}") = "bar"\n\nput {k} baz\nget {k}\n\nput {k} nope\n\n'
    assert ctl(backend, "txn", input=stdin) == f"SUCCESS\n\nOK\n\n{k}\nbaz\n"
    stdin = f'value("{k}") = "bar"\nversion("{k}") > "0"\n\nput {k} x\n\nget {k}\n\n'
    assert ctl(backend, "txn", input=stdin) == f"FAILURE\n\n{k}\nbaz\n"
    stdin = f'create("{k}") = "0"\n\n\nput {k}2 created\n\n'
    assert ctl(backend, "txn", input=stdin) == "FAILURE\n\nOK\n"
    stdin = f'mod("{k}") > "0"\n\ndel {k}\n\n\n'
    assert ctl(backend, "txn", input=stdin) == "SUCCESS\n\n1\n"
    resp = json.loads(ctl(backend, "txn", "-w", "json", input=f"\nget {k}2\n\n\n"))
    assert resp["succeeded"] is True
    inner = resp["responses"][0]["Response"]["ResponseRange"]
    assert inner["header"] == {"revision": resp["header"]["revision"]}
    assert inner["kvs"][0]["value"] == b64("created")


def test_txn_duplicate_key_rejected(backend: str, prefix: str) -> None:
    err = fail(backend, "txn", input=f"\n\nput {prefix}a 1\nput {prefix}a 2\n\n\n")
    assert "Error: etcdserver: duplicate key given in txn request" in err


def test_txn_too_many_ops(backend: str, prefix: str) -> None:
    ops = "".join(f"put {prefix}k{i} v\n" for i in range(129))
    err = fail(backend, "txn", input=f"\n{ops}\n\n")
    assert "Error: etcdserver: too many operations in txn request" in err
    ops = "".join(f"put {prefix}k{i} v\n" for i in range(128))
    assert ctl(backend, "txn", input=f"\n{ops}\n\n").startswith("SUCCESS\n")


def test_compaction(backend: str, prefix: str) -> None:
    ctl(backend, "put", prefix + "c", "1")
    old = ctl_json(backend, "get", prefix + "c")["header"]["revision"]
    ctl(backend, "put", prefix + "c", "2")
    now = ctl_json(backend, "get", prefix + "c")["header"]["revision"]
    assert ctl(backend, "compaction", str(now)) == f"compacted revision {now}\n"
    err = fail(backend, "get", prefix + "c", "--rev", str(old))
    assert "Error: etcdserver: mvcc: required revision has been compacted" in err
    assert ctl(backend, "get", prefix + "c", "--rev", str(now), "--print-value-only") == "2\n"
    err = fail(backend, "compaction", str(now))
    assert "Error: etcdserver: mvcc: required revision has been compacted" in err
    err = fail(backend, "compaction", str(now + 1000))
    assert "Error: etcdserver: mvcc: required revision is a future revision" in err


def test_endpoint_status_hashkv_member_list(backend: str) -> None:
    status = json.loads(ctl(backend, "endpoint", "status", "-w", "json"))[0]
    st = status["Status"]
    assert st["header"]["member_id"] == st["leader"]
    assert st["raftIndex"] >= 1
    assert st["raftTerm"] >= 1
    assert st["raftAppliedIndex"] >= 1
    assert st["dbSize"] > 0
    assert st["version"].startswith("3.")
    hk = json.loads(ctl(backend, "endpoint", "hashkv", "-w", "json"))[0]
    assert hk["Endpoint"] == backend
    assert isinstance(hk["HashKV"]["hash"], int)
    members = ctl_json(backend, "member", "list")["members"]
    assert len(members) == 1
    assert members[0]["ID"] == st["header"]["member_id"]
    assert members[0]["clientURLs"] == [f"http://{backend}"]
    assert members[0]["peerURLs"]
    assert members[0]["name"]
    health = etcdctl(backend, "endpoint", "health")
    assert f"{backend} is healthy" in health.stdout + health.stderr


def test_hashkv_is_stable_without_writes(backend: str, prefix: str) -> None:
    ctl(backend, "put", prefix + "h", "1")
    rev = ctl_json(backend, "get", prefix + "h")["header"]["revision"]
    a = json.loads(ctl(backend, "endpoint", "hashkv", "--rev", str(rev), "-w", "json"))
    ctl(backend, "put", prefix + "h", "2")
    b = json.loads(ctl(backend, "endpoint", "hashkv", "--rev", str(rev), "-w", "json"))
    assert a[0]["HashKV"]["hash"] == b[0]["HashKV"]["hash"]


def test_empty_key_rejected(backend: str) -> None:
    err = fail(backend, "put", "", "v")
    assert "Error: etcdserver: key is not provided" in err


def test_member_list_header_has_no_revision(backend: str) -> None:
    # etcd's Cluster service headers carry cluster, member and term, but no revision
    header = ctl_json(backend, "member", "list")["header"]
    assert sorted(header) == ["cluster_id", "member_id", "raft_term"]
