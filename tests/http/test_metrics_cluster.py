"""``/metrics`` of a 3-member cluster under load, scraped on every member: the cluster-level
names (leader, proposals, WAL fsync, peer round trips and bytes) exist and move. The same test
runs against a real 3-member etcd, so the names are proven to be etcd's (issue 15)."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import pytest
from cluster.clusterlib import ServerCluster, status
from support import scrape_metrics as scrape
from support import wait_for
from unwrap import unwrap

from coord import Client

CLUSTER_METRICS = {
    "etcd_server_has_leader": "gauge",
    "etcd_server_is_leader": "gauge",
    "etcd_server_leader_changes_seen_total": "counter",
    "etcd_server_proposals_committed_total": "gauge",
    "etcd_server_proposals_applied_total": "gauge",
    "etcd_server_heartbeat_send_failures_total": "counter",
    "etcd_disk_wal_fsync_duration_seconds": "histogram",
    "etcd_disk_backend_commit_duration_seconds": "histogram",
    "etcd_network_peer_round_trip_time_seconds": "histogram",
    "etcd_network_peer_sent_bytes_total": "counter",
    "etcd_network_peer_received_bytes_total": "counter",
    "etcd_network_client_grpc_received_bytes_total": "counter",
    "grpc_server_handled_total": "counter",
}


@pytest.mark.parametrize("kind", ["coord", "etcd"])
def test_cluster_metrics_move_under_load(kind: str, tmp_path: Path) -> None:
    cluster = ServerCluster(kind, tmp_path)
    try:
        endpoints = cluster.endpoints
        ids = {}
        for ep in endpoints:
            st = status(ep)
            assert st is not None
            ids[ep] = f"{unwrap(st.header).member_id:x}"
        before = {ep: scrape(ep)[1] for ep in endpoints}
        stop = threading.Event()
        written = [0]

        def load() -> None:
            with Client(endpoints[0]) as c:
                while not stop.is_set():
                    c.put(f"/load/{written[0] % 50}", "x" * 100)
                    written[0] += 1

        worker = threading.Thread(target=load)
        worker.start()
        try:
            # every member measures the round trip to every other one (etcd: its prober)
            def measured(ep: str) -> bool:
                _, now = scrape(ep)
                return all(
                    now.get(f'etcd_network_peer_round_trip_time_seconds_count{{To="{ids[o]}"}}', 0)
                    > 0
                    for o in endpoints
                    if o != ep
                )

            for ep in endpoints:
                wait_for(partial(measured, ep), timeout=30, what=f"peer RTTs on {ep}")
            wait_for(lambda: written[0] >= 50, timeout=30, what="50 puts under load")
        finally:
            stop.set()
            worker.join()
        writes = written[0]
        after: dict[str, dict[str, float]] = {}

        def settled() -> bool:
            """Every member has applied the writes (a follower applies them when it learns
            of the commit), and all agree on one leader (not amid an election)."""
            for ep in endpoints:
                types, after[ep] = scrape(ep)
                for name, kind_ in CLUSTER_METRICS.items():
                    assert types.get(name) == kind_, f"{ep} {name}: {types.get(name)} ({kind_})"
            applied = "etcd_server_proposals_applied_total"
            return all(after[ep][applied] >= before[ep][applied] + writes for ep in endpoints) and (
                sum(after[ep]["etcd_server_is_leader"] for ep in endpoints) == 1
            )

        wait_for(settled, timeout=30, what=f"every member to apply the {writes} writes")
        leaders = [ep for ep in endpoints if after[ep]["etcd_server_is_leader"] == 1]
        for ep in endpoints:
            a, b = after[ep], before[ep]
            assert a["etcd_server_has_leader"] == 1
            assert (
                a["etcd_server_proposals_committed_total"]
                >= b["etcd_server_proposals_committed_total"] + writes
            )
            # every member fsyncs the writes to its WAL; group commit may fold several
            # entries into one fsync, so fewer fsyncs than writes
            fsyncs = "etcd_disk_wal_fsync_duration_seconds_count"
            assert a[fsyncs] >= b[fsyncs] + writes // 4, (ep, b[fsyncs], a[fsyncs], writes)
            count = "etcd_disk_wal_fsync_duration_seconds_count"
            assert a['etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}'] == a[count]
            for other in endpoints:
                if other == ep:
                    continue
                to, frm = f'{{To="{ids[other]}"}}', f'{{From="{ids[other]}"}}'
                assert a[f"etcd_network_peer_round_trip_time_seconds_sum{to}"] > 0
                if leaders[0] not in (ep, other):
                    continue  # Raft messages go between the leader and each follower
                assert a[f"etcd_network_peer_sent_bytes_total{to}"] > b.get(
                    f"etcd_network_peer_sent_bytes_total{to}", 0
                )
                assert a[f"etcd_network_peer_received_bytes_total{frm}"] > b.get(
                    f"etcd_network_peer_received_bytes_total{frm}", 0
                )
        puts = 'grpc_server_handled_total{grpc_code="OK",grpc_method="Put",'
        puts += 'grpc_service="etcdserverpb.KV",grpc_type="unary"}'
        assert after[endpoints[0]][puts] >= before[endpoints[0]][puts] + 50
    finally:
        cluster.stop()
