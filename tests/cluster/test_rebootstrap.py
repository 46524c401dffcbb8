"""A wiped member restarted with its bootstrap flags must not bootstrap the cluster again.

Issue 12, bug 3: B loses its data directory and is restarted with ``--initial-cluster-state
new``.  Bootstrapping again under the same member ID with a fresh log splits the committed
state (A keeps an acknowledged write that B and C never had).  Like etcd
(``isMemberBootstrapped``), B asks its peers first and refuses with "member <id> has already
been bootstrapped"; the acknowledged write survives on the members that still have it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cluster.clusterlib import Cluster, get, put
from support import wait_for


def test_wiped_member_refuses_to_bootstrap_again(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    a, b, cc = c.members
    try:
        c.wait_leader()
        c.wait_converged()  # C has applied every member's published client URLs
        c.kill(cc)
        c.wait_leader([a, b])
        put(a.endpoint, "/acked", "W")  # acknowledged by A and B
        c.kill(b)
        shutil.rmtree(tmp_path / f"{b.name}.coord")
        c.kill(a)

        # C comes back first (its peer port answers discovery at once), then the wiped B with
        # its original bootstrap flags.
        log = tmp_path / f"{cc.name}.log"
        served = log.read_text().count("listening for peers")
        c.start_member(cc, wait=False)
        wait_for(
            lambda: log.read_text().count("listening for peers") > served,
            timeout=15,
            what="C serving its peer port",
        )
        c.start_member(b, wait=False)
        proc = b.proc
        assert proc is not None
        wait_for(
            lambda: not proc.alive(),
            timeout=20,
            what="the wiped member to refuse to bootstrap again",
        )
        assert proc.popen.returncode == 1, proc.output()
        out = proc.output()
        assert f"cannot serve: member {b.id:x} has already been bootstrapped" in out, out
        assert not (tmp_path / f"{b.name}.coord" / "member").exists()
        proc.stop()
        b.proc = None

        # A and C still hold the acknowledged write.
        c.start_member(a, wait=False)
        c.wait_member(a)
        c.wait_member(cc)
        c.wait_leader([a, cc])
        assert get(a.endpoint, "/acked") == "W"
        assert get(cc.endpoint, "/acked") == "W"
    finally:
        c.stop()
