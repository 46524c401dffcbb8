"""A follower that was down while the others compacted their logs catches up via a snapshot."""

from __future__ import annotations

from pathlib import Path

from cluster.clusterlib import Cluster, get_prefix, run, status, write_load
from support import wait_for

from coord.server.storage import snapfile


def test_stopped_follower_catches_up_through_snapshot(tmp_path: Path) -> None:
    c = Cluster(tmp_path, snapshot_count=40).start()
    try:
        leader = c.wait_leader()
        follower = next(m for m in c.members if m is not leader)
        assert follower.proc is not None
        follower.proc.stop()
        follower.proc = None
        live = [m.endpoint for m in c.running()]
        acked = run(write_load(live, "/snap/", 150, concurrency=4))
        assert len(acked) == 300
        # the others snapshotted and compacted well past where the follower stopped
        st = status(leader.endpoint)
        assert st is not None
        assert st.raft_applied_index > 300
        lead_snaps = snapfile.list_snapshots(tmp_path / f"{leader.name}.coord" / "member" /
                                             "snap")
        assert lead_snaps
        assert lead_snaps[-1][0] > 200
        c.start_member(follower)
        wait_for(lambda: "applied snapshot at index" in (follower.proc.output()
                                                         if follower.proc else ""),
                 timeout=20, what="the follower to receive a snapshot")
        c.wait_converged()
        assert get_prefix(follower.endpoint, "/snap/") == acked
    finally:
        c.stop()
