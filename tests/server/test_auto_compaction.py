"""--auto-compaction-mode / --auto-compaction-retention against real coord-server processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster
from support import CoordProc, EtcdProc, etcdctl, wait_for

from coord import Client, CompactedError
from coord.server.compactor import parse_retention

pytestmark = pytest.mark.etcdctl

COMPACTED = "etcdserver: mvcc: required revision has been compacted"


def compact_rev(endpoint: str) -> int:
    with Client(endpoint) as c:
        return c.hash_kv().compact_revision


def get_rev(endpoint: str, key: str, rev: int) -> subprocess.CompletedProcess[str]:
    return etcdctl(endpoint, "get", key, f"--rev={rev}", "--print-value-only", check=False)


def watch_compacted_at(endpoint: str, start: int) -> int:
    """The compact revision a watch from ``start`` is cancelled with."""
    with Client(endpoint) as c:
        try:
            c.watch("/", prefix=True, start_revision=start).next_response(timeout=10)
        except CompactedError as e:
            return e.compact_revision
    raise AssertionError(f"a watch from revision {start} on {endpoint} was not cancelled")


@pytest.mark.parametrize("kind", ["coord", "etcd"])
def test_periodic_compacts_to_the_revision_seen_retention_ago(tmp_path: Path, kind: str) -> None:
    """The same observable behaviour as a real etcd (3.4) with retention 2s."""
    flags = ["--auto-compaction-retention", "2s"]
    proc: CoordProc | EtcdProc = (
        CoordProc(tmp_path, name="periodic", args=flags)
        if kind == "coord"
        else EtcdProc(tmp_path, extra=flags)
    )
    try:
        with Client(proc.endpoint) as c:
            for i in range(5):
                c.put("/p/k", str(i))
            kv = c.get("/p/k")
            assert kv is not None
            r1 = kv.mod_revision
            wait_for(
                lambda: compact_rev(proc.endpoint) == r1,
                timeout=20,
                what=f"periodic compaction to {r1}",
            )
            with pytest.raises(CompactedError):
                c.get("/p/k", revision=r1 - 1)
            old = c.get("/p/k", revision=r1)
            assert old is not None
            assert old.value == b"4"
            assert COMPACTED in get_rev(proc.endpoint, "/p/k", r1 - 1).stderr
            # A newer revision is kept for a whole retention (2 s) before it is compacted.
            c.put("/p/k", "new")
            written = time.monotonic()
            r2 = r1 + 1
            wait_for(
                lambda: compact_rev(proc.endpoint) == r2,
                timeout=20,
                what=f"periodic compaction to {r2}",
            )
            assert time.monotonic() - written >= 1.9
        if kind == "coord":
            log = proc.output()
            assert f"Starting auto-compaction at revision {r1} (retention: 2s)" in log
            assert f"Finished auto-compaction at revision {r2}" in log
            assert " WARNING " not in log
            assert " ERROR " not in log
    finally:
        proc.stop()


def test_revision_mode_keeps_exactly_the_last_n_revisions(tmp_path: Path) -> None:
    proc = CoordProc(
        tmp_path,
        name="revision",
        args=[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "5",
            "--experimental-auto-compaction-revision-interval",
            "200ms",
        ],
    )
    try:
        with Client(proc.endpoint) as c:
            for i in range(20):
                c.put("/r/k", str(i))
            rev = c.status().revision
            assert rev == 21
            wait_for(
                lambda: compact_rev(proc.endpoint) == rev - 5,
                timeout=20,
                what="revision compaction",
            )
            assert get_rev(proc.endpoint, "/r/k", rev - 5).stdout == f"{rev - 5 - 2}\n"
            assert COMPACTED in get_rev(proc.endpoint, "/r/k", rev - 6).stderr
            for i in range(3):
                c.put("/r/k", f"more{i}")
            wait_for(
                lambda: compact_rev(proc.endpoint) == rev + 3 - 5,
                timeout=20,
                what="the next revision compaction",
            )
        log = proc.output()
        assert f"Starting auto-compaction at revision {rev - 5} (retention: 5 revisions)" in log
        assert f"Finished auto-compaction at revision {rev - 2}" in log
    finally:
        proc.stop()


def test_client_compaction_first_is_not_an_error(tmp_path: Path) -> None:
    """The compactor's target is already compacted (by a client): logged as done, no error."""
    proc = CoordProc(
        tmp_path,
        name="already",
        args=[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "2",
            "--experimental-auto-compaction-revision-interval",
            "1s",
        ],
    )
    try:
        with Client(proc.endpoint) as c:
            for i in range(10):
                c.put("/a/k", str(i))
            c.compact(11)  # past what the compactor will ask for (11 - 2 = 9)
            wait_for(
                lambda: "revision 9 was already compacted" in proc.output(),
                timeout=20,
                what="the compactor to meet the client's compaction",
            )
            assert compact_rev(proc.endpoint) == 11
        log = proc.output()
        assert " WARNING " not in log
        assert " ERROR " not in log
    finally:
        proc.stop()


def test_only_the_leader_compacts_and_followers_apply_it(tmp_path: Path) -> None:
    cluster = Cluster(
        tmp_path,
        3,
        timings=(),
        extra=[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "3",
            "--experimental-auto-compaction-revision-interval",
            "200ms",
        ],
    ).start()
    procs = cluster.procs()
    try:
        eps = [p.endpoint for p in procs]
        with Client(eps[0]) as c:
            lead_id = c.status().leader
            for i in range(10):
                c.put("/c/k", str(i))
            rev = c.status().revision
        ids = []
        for ep in eps:
            with Client(ep) as c:
                ids.append(c.status().member_id)
        leader = ids.index(lead_id)
        wait_for(
            lambda: all(compact_rev(ep) == rev - 3 for ep in eps),
            timeout=30,
            what="every member at the leader's compact revision",
        )
        for i, p in enumerate(procs):
            log = p.output()
            assert "auto-compaction: mode revision, retention 3 revisions" in log
            assert ("Starting auto-compaction" in log) == (i == leader), (i, leader, log)
        # Every member refuses the compacted history (a watch from an old revision fails).
        for ep in eps:
            assert watch_compacted_at(ep, 2) == rev - 3
        # A follower that becomes leader takes over the compactions.
        new = (leader + 1) % 3
        etcdctl(",".join(eps), "move-leader", f"{ids[new]:x}")
        with Client(eps[new]) as c:
            wait_for(lambda: c.status().leader == ids[new], timeout=15, what="the new leader")
            for i in range(4):
                c.put("/c/k", f"after{i}")
            rev2 = c.status().revision
        wait_for(
            lambda: all(compact_rev(ep) == rev2 - 3 for ep in eps),
            timeout=30,
            what="every member at the new leader's compact revision",
        )
        assert f"Starting auto-compaction at revision {rev2 - 3}" in procs[new].output()
        assert f"Starting auto-compaction at revision {rev2 - 3}" not in procs[leader].output()
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    ("mode", "retention", "parsed"),
    [
        ("periodic", "0", 0.0),
        ("periodic", "", 0.0),
        ("periodic", "1", 3600.0),
        ("periodic", "30m", 1800.0),
        ("periodic", "1h30m", 5400.0),
        ("periodic", "2s", 2.0),
        ("periodic", "0s", 0.0),
        ("revision", "1000", 1000.0),
        ("revision", "0", 0.0),
    ],
)
def test_retention_parsing_follows_etcd(mode: str, retention: str, parsed: float) -> None:
    policy = parse_retention(mode, retention)
    assert policy.retention == parsed
    assert policy.enabled == (parsed > 0)


def test_retention_is_logged_as_go_prints_durations() -> None:
    shown = [
        parse_retention("periodic", r).describe()
        for r in ("200ms", "2s", "90s", "1", "25h", "1.5s")
    ]
    assert shown == ["200ms", "2s", "1m30s", "1h0m0s", "25h0m0s", "1.5s"]
    assert parse_retention("revision", "7").describe() == "7 revisions"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--auto-compaction-mode", "hourly"],
            "unknown --auto-compaction-mode 'hourly' (expected periodic or revision)",
        ),
        (
            ["--auto-compaction-retention", "1.5"],
            "invalid --auto-compaction-retention '1.5' for --auto-compaction-mode periodic: "
            "expected a duration (30m, 1h) or a number of hours",
        ),
        (
            ["--auto-compaction-retention=-1h"],
            "invalid --auto-compaction-retention '-1h' for --auto-compaction-mode periodic",
        ),
        (
            ["--auto-compaction-mode", "revision", "--auto-compaction-retention", "10m"],
            "invalid --auto-compaction-retention '10m' for --auto-compaction-mode revision: "
            "expected a non-negative number of revisions",
        ),
    ],
)
def test_bad_mode_or_retention_is_a_usage_error(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "coord.server", *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"coord-server: error: {message}"), last
    assert "Traceback" not in proc.stderr
