"""Short randomized chaos runs (fixed seeds) in the default suite.

Each run prints its seed and fault schedule first, then the fault log and a summary; a failure
is replayed with ``COORD_CHAOS_SEED=<seed> pytest tests/chaos/test_short.py::<test>``.
"""

from __future__ import annotations

from pathlib import Path

from .run import ChaosConfig, Report, run_chaos, seed_from_env


def assert_clean(report: Report) -> None:
    assert report.ok, report.summary()


def test_crashes_pauses_partitions_transfers(tmp_path: Path) -> None:
    """kill -9, SIGSTOP, partitions, leader transfer and compaction; register, watch, leases."""
    cfg = ChaosConfig(
        seed_from_env(12), seconds=30, nemeses=("kill", "pause", "partition", "transfer", "compact")
    )
    assert_clean(run_chaos(tmp_path, cfg))


def test_disk_stalls_with_locks_and_leases(tmp_path: Path) -> None:
    """A blocked or slow WAL fsync on the leader, longer than the lease TTL (issue 12 bugs 1
    and 4): locks fenced by their token, leases, the register."""
    cfg = ChaosConfig(seed_from_env(21), seconds=30, nemeses=("diskstall", "slowdisk"), locks=True)
    assert_clean(run_chaos(tmp_path, cfg))


def test_membership_changes_after_compaction(tmp_path: Path) -> None:
    """Replace a follower (remove, wipe, re-add as learner, promote) with --snapshot-count 100
    so the new member needs a snapshot, with the load paused meanwhile so the leader takes no
    newer one (issue 12 bug 2); compaction under load."""
    cfg = ChaosConfig(
        seed_from_env(33),
        seconds=30,
        nemeses=("membership", "compact"),
        leases=False,
        snapshot_count=100,
        quiet_membership=True,
    )
    assert_clean(run_chaos(tmp_path, cfg))
