"""What a member logs about itself: elections and leader changes, votes, membership changes,
snapshots, and etcd's "slow fdatasync" WARNING (provoked with a sleep failpoint on the WAL
fsync, docs/chaos.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster
from support import CoordProc, etcdctl, wait_for


@pytest.mark.etcdctl
def test_slow_wal_fsync_is_a_warning(tmp_path: Path) -> None:
    proc = CoordProc(tmp_path, name="slow", env={"COORD_FAILPOINTS": "walBeforeSync=sleep(150)"})
    try:
        etcdctl(proc.endpoint, "put", "/slow/k", "v")
        wait_for(
            lambda: "slow fdatasync" in proc.output(), timeout=10, what="the slow fdatasync warning"
        )
        lines = [ln for ln in proc.output().splitlines() if "slow fdatasync" in ln]
        m = re.search(
            r" WARNING coord\.server\.storage\.wal: slow fdatasync: took (\d+)ms, "
            r"expected-duration 100ms \(WAL .*slow\.coord.*\)$",
            lines[-1],
        )
        assert m is not None, lines
        assert int(m.group(1)) >= 150
    finally:
        proc.stop()


@pytest.mark.etcdctl
def test_compaction_is_logged_on_every_member(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 3).start()
    procs = cluster.procs()
    try:
        ep = procs[0].endpoint
        for i in range(5):
            etcdctl(ep, "put", "/compact/k", str(i))
        rev = int(
            etcdctl(ep, "get", "/compact/k", "-w", "json")
            .stdout.split('"revision":')[1]
            .split(",")[0]
        )
        etcdctl(ep, "compaction", str(rev - 1))
        pattern = re.compile(
            rf" INFO coord\.server\.statemachine: finished scheduled compaction "
            rf"at revision {rev - 1}: 3 key versions removed, took [\d.]+ms$",
            re.M,
        )
        for p in procs:  # applied through Raft, so every member compacts and says so

            def compacted(p: CoordProc = p) -> bool:
                return pattern.search(p.output()) is not None

            wait_for(compacted, timeout=15, what=f"the compaction line in {p.log_path}")
    finally:
        cluster.stop()


@pytest.mark.etcdctl
def test_elections_votes_membership_and_snapshots_are_logged(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 3, snapshot_count=20, extra=["--log-level", "debug"]).start()
    procs = cluster.procs()
    try:
        ep = procs[0].endpoint
        for i in range(30):
            etcdctl(ep, "put", f"/log/{i}", "v")
        out = etcdctl(
            ep, "member", "add", "extra", "--learner", "--peer-urls=http://127.0.0.1:1"
        ).stdout
        new_id = re.search(r"Member +([0-9a-f]+) added", out)  # %16x: space-padded
        assert new_id is not None, out
        etcdctl(ep, "member", "remove", new_id.group(1))
        # the removal is acknowledged once applied on the member that took it: the others
        # apply (and log) it when they learn of the commit
        removed = f"membership: removed member {new_id.group(1)}"
        for p in procs:

            def logged(p: CoordProc = p) -> bool:
                return removed in p.output()

            wait_for(logged, timeout=30, what=f"{removed!r} logged")
        logs = [p.output() for p in procs]
        everything = "\n".join(logs)
        # leader changes at INFO on every member, etcd's wording
        for log in logs:
            assert re.search(
                r" INFO coord\.server\.node: member [0-9a-f]+ elected leader "
                r"[0-9a-f]+ at term \d+",
                log,
            ), log
        # the campaign and the votes at DEBUG
        assert re.search(
            r" DEBUG coord\.server\.node: member [0-9a-f]+ started a campaign: "
            r"became (pre-)?candidate at term \d+",
            everything,
        )
        assert re.search(r" DEBUG .*sent (pre-)?vote request to [0-9a-f]+ at term \d+", everything)
        assert re.search(
            r" DEBUG .*received (pre-)?vote-resp from [0-9a-f]+ at term \d+: "
            r"granted",
            everything,
        )
        assert re.search(r" DEBUG .*granted [0-9a-f]+'s (pre-)?vote at term \d+", everything)
        assert re.search(r" DEBUG .*became (follower|leader) at term \d+", everything)
        # membership changes, as etcd logs them (INFO), on every member
        for log in logs:
            assert (
                f"membership: added learner member {new_id.group(1)} (peer URLs "
                f"http://127.0.0.1:1)" in log
            ), log
            assert removed in log
            assert "membership: added member" in log  # the bootstrap members
        # snapshots (--snapshot-count 20) with the log compaction behind them
        assert re.search(r"snapshot at index \d+; log compacted to \d+", everything)
        assert "Traceback" not in everything
    finally:
        cluster.stop()
