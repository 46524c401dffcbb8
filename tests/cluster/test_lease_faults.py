"""Leases under faults: a disk-stalled leader, a lagging leader apply (architecture rules 4, 9)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, get, put
from support import etcdctl, require_binary, wait_for

from coord import Client
from coord.recipes import Lock, Session


def _put_quietly(endpoint: str, key: str) -> None:
    try:
        put(endpoint, key, "x", timeout=2.0)
    except Exception:
        pass  # the stalled leader may never answer: the write only starts the stall


def test_stalled_leader_neither_renews_nor_revokes(tmp_path: Path) -> None:
    """Issue 12 bug 1: the leader's fsync stalls for 8 s (longer than the TTL of 5 s) while
    client A holds a lock through a follower; the followers elect a new leader. A's lock key
    must never be deleted while A's session is kept alive, and B must never get the lock."""
    c = Cluster(tmp_path).start()
    a = b = None
    try:
        leader = c.wait_leader()
        f1, f2 = [m for m in c.members if m is not leader]
        a, b = Client(f1.endpoint), Client(f2.endpoint)
        session = Session(a, ttl=5)
        lock_a = Lock(a, "/locks/job", session=session)
        assert lock_a.acquire(timeout=10)
        key = lock_a.key
        assert key is not None
        # the loop below reads f2 serializably: it must have applied the key before the stall
        # (acquire returned once f1 had applied it; f2 may lag behind under load)
        wait_for(
            lambda: get(f2.endpoint, key.decode(), serializable=True) is not None,
            timeout=10,
            what="the lock key on f2",
        )
        leader.failpoint("walBeforeSync", "1*sleep(8000)")
        t0 = time.monotonic()
        threading.Thread(
            target=_put_quietly, args=(leader.endpoint, "/trigger"), daemon=True
        ).start()
        # past the stall and a whole TTL after it: A keeps its session alive throughout
        while time.monotonic() - t0 < 14:
            alive = not session.expired
            present = get(f2.endpoint, key.decode(), serializable=True) is not None
            assert present or not alive, (
                f"A's lock key was deleted {time.monotonic() - t0:.1f} s into the stall "
                "while A's session was still kept alive"
            )
            lock_b = Lock(b, "/locks/job", ttl=5)
            try:
                got = lock_b.acquire(blocking=False)
            except Exception:
                got = False  # no leader for a moment: B simply does not get the lock
            if got:
                lock_b.release()
            assert not (got and alive), "B acquired the lock while A held it"
            time.sleep(0.5)  # the polling cadence
        assert not session.expired, "A's session was lost although it was kept alive"
        assert lock_a.is_owner()
    finally:
        for cl in (a, b):
            if cl is not None:
                cl.close()
        c.stop()


@pytest.mark.etcdctl
def test_fresh_lease_is_renewed_while_leader_apply_lags(tmp_path: Path) -> None:
    """Issue 12 bug 4: under write load with leader fsyncs of 0.3 s, a lease granted through a
    follower and kept alive at once through it must never be reported lost (TTL 0): the
    leader renews only after it has applied the follower's read point."""
    c = Cluster(tmp_path).start()
    stop = threading.Event()
    try:
        leader = c.wait_leader()
        f1 = next(m for m in c.members if m is not leader)
        leader.failpoint("walBeforeSync", "sleep(300)")

        def load() -> None:
            i = 0
            while not stop.is_set():
                _put_quietly(f1.endpoint, f"/load/{i}")
                i += 1

        loaders = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for t in loaders:
            t.start()
        for _ in range(6):
            out = etcdctl(f1.endpoint, "lease", "grant", "30").stdout
            m = re.search(r"lease ([0-9a-f]+) granted", out)
            assert m is not None, out
            ka = etcdctl(f1.endpoint, "lease", "keep-alive", "--once", m.group(1), check=False)
            assert "TTL(30)" in ka.stdout, (
                f"a fresh lease's first keep-alive was not confirmed: {ka.stdout}{ka.stderr}"
            )
    finally:
        stop.set()
        c.stop()


@pytest.mark.etcdctl
def test_keepalive_via_follower_survives_a_frozen_leader(tmp_path: Path) -> None:
    """A forwarded keep-alive against a frozen (SIGSTOPped) leader gives up within the lease's
    remaining time, not after the request timeout (6 s here, longer than the TTL of 3 s), so
    etcdctl's next keep-alive reaches the new leader before the lease dies. etcdctl talks to
    the follower only, so every keep-alive is forwarded."""
    c = Cluster(tmp_path).start()
    keeper = None
    try:
        leader = c.wait_leader()
        f1 = next(m for m in c.members if m is not leader)
        out = etcdctl(f1.endpoint, "lease", "grant", "3").stdout
        m = re.search(r"lease ([0-9a-f]+) granted", out)
        assert m is not None, out
        lid = m.group(1)
        etcdctl(f1.endpoint, "put", "--lease", lid, "/frozen/k", "v")
        keeper = subprocess.Popen(
            [require_binary("etcdctl"), f"--endpoints={f1.endpoint}", "lease", "keep-alive", lid],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        assert leader.proc is not None
        assert keeper.stdout is not None
        first = keeper.stdout.readline()  # keep-alives flow before the leader freezes
        assert "TTL(3)" in first, first
        os.killpg(leader.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 8:
                assert keeper.poll() is None, (
                    f"etcdctl lost the lease {time.monotonic() - t0:.1f} s after the leader froze"
                )
                time.sleep(0.2)  # the polling cadence
        finally:
            os.killpg(leader.proc.pid, signal.SIGCONT)
        assert get(f1.endpoint, "/frozen/k") == "v"
    finally:
        if keeper is not None:
            keeper.kill()
            keeper.communicate()  # reaps it and closes its pipe
        c.stop()


@pytest.mark.etcdctl
def test_checkpointed_lease_expires_despite_leader_changes(tmp_path: Path) -> None:
    """Lease checkpoints (etcd #9888): with the leader moved every 2.5 s, a lease of TTL 4
    that nobody keeps alive still expires. Without checkpoints every new leader restarts it
    from its full TTL (plus the election timeout), so it would live forever. A lease that is
    kept alive meanwhile survives (a renew clears its checkpoint)."""
    c = Cluster(tmp_path, extra=["--experimental-lease-checkpoint-interval", "200ms"]).start()
    keeper = None
    try:
        leader = c.wait_leader()
        leases = []
        for _ in range(2):
            out = etcdctl(leader.endpoint, "lease", "grant", "4").stdout
            m = re.search(r"lease ([0-9a-f]+) granted", out)
            assert m is not None, out
            leases.append(m.group(1))
        etcdctl(leader.endpoint, "put", "--lease", leases[0], "/ckpt/k", "v")
        etcdctl(leader.endpoint, "put", "--lease", leases[1], "/ckpt/kept", "v")
        keeper = subprocess.Popen(
            [
                require_binary("etcdctl"),
                "--endpoints=" + ",".join(x.endpoint for x in c.members),
                "lease",
                "keep-alive",
                leases[1],
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        t0 = time.monotonic()
        moves = 0
        while get(leader.endpoint, "/ckpt/k", serializable=True) is not None:
            elapsed = time.monotonic() - t0
            assert elapsed < 15, f"the lease outlived {moves} leader changes ({elapsed:.1f} s)"
            target = next(x for x in c.members if x is not leader)
            moved = etcdctl(leader.endpoint, "move-leader", f"{target.id:x}", check=False)
            if moved.returncode == 0:
                moves += 1
            leader = c.wait_leader()
            time.sleep(2.5)  # the cadence of leader changes
        assert moves >= 1
        assert keeper.poll() is None, "the kept-alive lease was lost"
        assert get(leader.endpoint, "/ckpt/kept") == "v"
    finally:
        if keeper is not None:
            keeper.kill()
            keeper.communicate()  # reaps it and closes its pipe
        c.stop()
