"""``GET /metrics``: Prometheus text format with etcd's names, types and labels.

The same checks run against a coord-server and a real etcd, so every name asserted here is
proven to be etcd's (issue 15)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from support import CoordProc, etcdctl
from support import scrape_metrics as scrape

from coord import Client, Get, Put
from coord.errors import FutureRevisionError

#: name -> type, as etcd exposes them (etcd 3.4/3.5 reports these "totals" as gauges).
STATE_METRICS = {
    "etcd_server_has_leader": "gauge",
    "etcd_server_is_leader": "gauge",
    "etcd_server_is_learner": "gauge",
    "etcd_server_leader_changes_seen_total": "counter",
    "etcd_server_proposals_pending": "gauge",
    "etcd_server_proposals_failed_total": "counter",
    "etcd_server_slow_apply_total": "counter",
    "etcd_server_proposals_committed_total": "gauge",
    "etcd_server_proposals_applied_total": "gauge",
    "etcd_server_quota_backend_bytes": "gauge",
    "etcd_server_id": "gauge",
    "etcd_server_version": "gauge",
    "etcd_cluster_version": "gauge",
    "etcd_debugging_mvcc_current_revision": "gauge",
    "etcd_debugging_mvcc_compact_revision": "gauge",
    "etcd_mvcc_db_total_size_in_bytes": "gauge",
    "etcd_mvcc_db_total_size_in_use_in_bytes": "gauge",
    "etcd_disk_wal_fsync_duration_seconds": "histogram",
    "etcd_disk_wal_write_bytes_total": "gauge",
    "etcd_mvcc_range_total": "counter",
    "etcd_mvcc_put_total": "counter",
    "etcd_mvcc_delete_total": "counter",
    "etcd_mvcc_txn_total": "counter",
    "etcd_debugging_mvcc_keys_total": "gauge",
    "etcd_debugging_mvcc_watcher_total": "gauge",
    "etcd_debugging_mvcc_slow_watcher_total": "gauge",
    "etcd_debugging_lease_granted_total": "counter",
    "etcd_debugging_lease_revoked_total": "counter",
    "etcd_debugging_lease_renewed_total": "counter",
    "etcd_debugging_server_lease_expired_total": "counter",
    "etcd_server_slow_read_indexes_total": "counter",
    "etcd_server_read_indexes_failed_total": "counter",
    "etcd_server_heartbeat_send_failures_total": "counter",
    "etcd_disk_backend_commit_duration_seconds": "histogram",
    "etcd_disk_backend_snapshot_duration_seconds": "histogram",
    "etcd_network_client_grpc_sent_bytes_total": "counter",
    "etcd_network_client_grpc_received_bytes_total": "counter",
    "grpc_server_started_total": "counter",
    "grpc_server_handled_total": "counter",
    "grpc_server_msg_received_total": "counter",
    "grpc_server_msg_sent_total": "counter",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_start_time_seconds": "gauge",
}


def grpc(name: str, method: str, **labels: str) -> str:
    """The sample key of a grpc_server_* counter of ``etcdserverpb.<method>`` (a unary call)."""
    service, _, rpc = method.partition("/")
    all_labels = {"grpc_method": rpc, "grpc_service": f"etcdserverpb.{service}"}
    all_labels |= {"grpc_type": "unary", **labels}
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(all_labels.items())) + "}"


def test_metrics_have_etcds_names_types_and_labels(backend: str, prefix: str) -> None:
    types, before = scrape(backend)
    for name, kind in STATE_METRICS.items():
        assert types.get(name) == kind, f"{name}: {types.get(name)} (want {kind})"
    with Client(backend) as c:
        status = c.status()
        for i in range(3):
            c.put(f"{prefix}m{i}", "v")
        c.get(f"{prefix}m0")
        c.txn(success=[Put(f"{prefix}t", "v"), Get(f"{prefix}m1")])  # two operations
        c.delete(f"{prefix}m2")
        with pytest.raises(FutureRevisionError):
            c.get(f"{prefix}m0", revision=10**9)
        lease = c.lease(60)
        etcdctl(backend, "lease", "keep-alive", "--once", f"{lease.id:x}")
        lease.revoke()
        with c.watch(f"{prefix}w"):
            _, after = scrape(backend)
    assert after["etcd_server_has_leader"] == 1
    assert after["etcd_server_is_leader"] == 1  # a single member
    assert after["etcd_server_is_learner"] == 0
    assert after["etcd_server_leader_changes_seen_total"] >= 1
    assert after[f'etcd_server_id{{server_id="{status.member_id:x}"}}'] == 1
    assert after["etcd_server_quota_backend_bytes"] == 2**31  # the default quota: 2 GiB
    # three puts: three more committed and applied proposals, three more revisions
    # 3 puts, a txn, a delete, a grant and a revoke: 7 proposals, 5 revisions
    for moved, by in (
        ("etcd_server_proposals_committed_total", 7),
        ("etcd_server_proposals_applied_total", 7),
        ("etcd_debugging_mvcc_current_revision", 5),
        ("etcd_mvcc_put_total", 4),
        ("etcd_mvcc_range_total", 2),
        ("etcd_mvcc_txn_total", 1),
        ("etcd_mvcc_delete_total", 1),
        ("etcd_debugging_lease_granted_total", 1),
        ("etcd_debugging_lease_revoked_total", 1),
        ("etcd_debugging_lease_renewed_total", 1),
    ):
        assert after[moved] >= before[moved] + by, (moved, before[moved], after[moved])
    # every committed write was fsynced by the WAL: 7 more fsyncs at least, in the buckets
    fsyncs = "etcd_disk_wal_fsync_duration_seconds_count"
    assert after[fsyncs] >= before[fsyncs] + 7, (before[fsyncs], after[fsyncs])
    assert after['etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}'] == after[fsyncs]
    assert after['etcd_disk_wal_fsync_duration_seconds_bucket{le="8.192"}'] <= after[fsyncs]
    assert after["etcd_disk_wal_fsync_duration_seconds_sum"] > 0
    assert after["etcd_disk_wal_write_bytes_total"] > before["etcd_disk_wal_write_bytes_total"]
    # gRPC calls, as go-grpc-prometheus counts them: every method and code pre-initialized
    puts = grpc("grpc_server_handled_total", "KV/Put", grpc_code="OK")
    assert before[puts] >= 0
    for key in (
        grpc("grpc_server_started_total", "KV/Put"),
        puts,
        grpc("grpc_server_msg_received_total", "KV/Put"),
        grpc("grpc_server_msg_sent_total", "KV/Put"),
    ):
        assert after[key] >= before[key] + 3, (key, before[key], after[key])
    future = grpc("grpc_server_handled_total", "KV/Range", grpc_code="OutOfRange")
    assert after[future] >= before[future] + 1
    assert before[grpc("grpc_server_handled_total", "Lease/LeaseGrant", grpc_code="DataLoss")] == 0
    for direction in ("sent", "received"):
        moved = f"etcd_network_client_grpc_{direction}_bytes_total"
        assert after[moved] > before[moved] + 3 * 7, (moved, before[moved], after[moved])
    assert after["etcd_debugging_mvcc_keys_total"] >= 3
    assert after["etcd_debugging_mvcc_watcher_total"] >= 1
    assert after["etcd_server_proposals_pending"] >= 0
    assert (
        after["etcd_server_proposals_applied_total"]
        <= after["etcd_server_proposals_committed_total"]
    )
    assert after["etcd_mvcc_db_total_size_in_bytes"] > 0
    assert (
        after["etcd_mvcc_db_total_size_in_bytes"]
        >= after["etcd_mvcc_db_total_size_in_use_in_bytes"]
        > 0
    )
    assert any(k.startswith("etcd_server_version{server_version=") for k in after)
    assert any(k.startswith("etcd_cluster_version{cluster_version=") for k in after)


def test_metrics_answers_any_method_as_etcd_does(backend: str) -> None:
    """etcd's handler (promhttp) ignores the method: a POST scrapes as a GET does."""
    req = urllib.request.Request(f"http://{backend}/metrics", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
        assert b"# TYPE etcd_server_has_leader gauge" in resp.read()


def test_slow_apply_is_logged_and_counted(tmp_path: Path) -> None:
    """An apply over 100 ms (etcd's warnApplyDuration): etcd's "apply request took too long"
    warning with the numbers, and etcd_server_slow_apply_total. The failpoint sleeps 250 ms
    inside the first command's apply."""
    server = CoordProc(tmp_path, env={"COORD_FAILPOINTS": "applyBeforeCommand=1*sleep(250)"})
    try:
        _, before = scrape(server.endpoint)
        with Client(server.endpoint) as c:
            for i in range(3):
                c.put(f"/slow/{i}", "v")
        _, after = scrape(server.endpoint)
        assert after["etcd_server_slow_apply_total"] == before["etcd_server_slow_apply_total"] + 1
        took = re.findall(
            r"apply request took too long: took (\d+)ms, expected-duration 100ms", server.output()
        )
        assert len(took) == 1, server.output()
        assert int(took[0]) >= 250, server.output()
    finally:
        server.stop()
