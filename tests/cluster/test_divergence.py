"""A member whose log diverged from committed entries stops loudly (issue 12).

If no peer answers when a wiped member starts with its bootstrap flags, it cannot know the
cluster exists (etcd has the same limit) and bootstraps a fresh log.  The committed state has
then split: the member that still holds the newer committed entries must not keep serving.
When the new leader's appends contradict its committed log, it logs a CRITICAL error naming
the index and terms and exits non-zero (etcd panics with "entry %d conflict with committed
entry").
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cluster.clusterlib import Cluster, put
from support import wait_for


def test_member_with_diverged_committed_log_stops(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    try:
        # A leads and keeps leading while C is down, so A's entry for W has A's term T.  The
        # new leader (C, with B's vote) writes at index <= W's with term > T: a divergence the
        # terms reveal.  (Had A been elected after C went down, B, having forgotten its vote,
        # could elect C in A's very term: then no term differs and nobody can tell.)
        a = c.wait_leader()
        b, cc = (m for m in c.members if m is not a)
        c.wait_converged()
        c.kill(cc)
        put(a.endpoint, "/acked", "W")  # acknowledged by A and B
        c.kill(b)
        shutil.rmtree(tmp_path / f"{b.name}.coord")
        c.kill(a)

        # B starts while no peer answers, so it bootstraps a fresh log; then C joins it.
        log = tmp_path / f"{b.name}.log"
        served = log.read_text().count("listening for peers")
        c.start_member(b, wait=False)
        wait_for(
            lambda: log.read_text().count("listening for peers") > served,
            timeout=15,
            what="B serving its peer port",
        )
        c.start_member(cc, wait=False)
        c.wait_member(b)
        c.wait_member(cc)
        c.wait_leader([b, cc])
        put(b.endpoint, "/after", "x")

        c.start_member(a, wait=False)
        proc = a.proc
        assert proc is not None
        wait_for(lambda: not proc.alive(), timeout=20, what="the diverged member to stop")
        out = proc.output()
        assert proc.popen.returncode not in (0, None), out
        assert "CRITICAL" in out, out
        assert "conflicts with committed entry" in out, out
        proc.stop()
        a.proc = None
    finally:
        c.stop()
