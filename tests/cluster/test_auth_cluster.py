"""Auth state is replicated state: it survives restarts, travels in snapshots to a lagging
member, and a member added later enforces the same rules (issue 16)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, Member
from support import enable_auth, etcdctl, wait_for

ROOT = "--user=root:rootpw"
APP = "--user=app:apppw"
DENIED = "etcdserver: permission denied"


def _assert_enforced(endpoint: str, key: str) -> None:
    """app may write and read under /app/ (serializably: this member's own state), nothing
    else; no credentials are refused."""
    etcdctl(endpoint, APP, "put", key, "v")
    got = etcdctl(endpoint, APP, "get", key, "--consistency=s", "--print-value-only").stdout
    assert got == "v\n"
    denied = etcdctl(endpoint, APP, "get", "/other", "--consistency=s", check=False)
    assert denied.returncode != 0
    assert DENIED in denied.stderr
    anonymous = etcdctl(endpoint, "get", key, "--consistency=s", check=False)
    assert "etcdserver: user name is empty" in anonymous.stderr


@pytest.mark.etcdctl
def test_auth_survives_restart_snapshot_install_and_new_members(tmp_path: Path) -> None:
    c = Cluster(tmp_path, snapshot_count=40).start()
    try:
        leader = c.wait_leader()
        enable_auth(leader.endpoint)
        lagging = next(m for m in c.members if m is not leader)
        c.kill(lagging)
        # enough writes that the others snapshot and compact their logs past the auth entries
        for i in range(120):
            etcdctl(leader.endpoint, ROOT, "put", f"/app/fill{i % 4}", str(i))
        c.start_member(lagging)
        wait_for(
            lambda: "applied snapshot at index" in (lagging.proc.output() if lagging.proc else ""),
            timeout=30,
            what="the lagging member to install a snapshot",
        )
        _assert_enforced(lagging.endpoint, "/app/after-snapshot")

        # a whole-cluster restart: the rules come back from the WAL and snapshots
        for m in c.members:
            c.kill(m)
        for m in c.members:
            c.start_member(m, wait=False)
        for m in c.members:
            c.wait_member(m)
        c.wait_leader()
        for m in c.members:
            _assert_enforced(m.endpoint, f"/app/after-restart-{m.name}")

        # a member added afterwards learns the rules from the others
        new = Member("m4", tmp_path)
        new.proxy_port = new.peer_port
        c.members.append(new)
        out = etcdctl(
            c.members[0].endpoint, ROOT, "member", "add", "m4", f"--peer-urls={new.peer_url}"
        ).stdout
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]+)"', out)
        assert initial is not None, out
        c.start_member(new, state="existing", initial_cluster=initial.group(1))
        wait_for(
            lambda: (
                etcdctl(new.endpoint, ROOT, "user", "list", check=False).stdout == "app\nroot\n"
            ),
            timeout=30,
            what="the new member to apply the auth state",
        )
        _assert_enforced(new.endpoint, "/app/on-new-member")
    finally:
        c.stop()
