"""Interoperation with etcd's own recipes: ``etcdctl lock`` and ``etcdctl elect`` (3.4).

``etcdctl lock NAME`` (no command) prints the lock key once acquired and holds the lock until
SIGINT, then unlocks; ``etcdctl lock NAME -- CMD`` runs CMD while holding it. ``etcdctl elect
NAME PROPOSAL`` campaigns, prints the leader key and value, and resigns on SIGINT; ``-l``
observes. Both use Go's concurrency.Mutex / Election, so these tests prove our key layout
and txns are the same.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from support import Proc, require_binary, wait_for

from coord import Client
from coord.recipes import Election, Lock

pytestmark = [pytest.mark.etcdctl, pytest.mark.compat]


def etcdctl_proc(endpoint: str, log: Path, *args: str) -> Proc:
    exe = require_binary("etcdctl")
    return Proc([exe, f"--endpoints={endpoint}", *args], log, env={"ETCDCTL_API": "3"})


def test_etcdctl_lock_excludes_our_lock(
    client: Client, backend: str, prefix: str, tmp_path: Path
) -> None:
    name = prefix + "jobs"
    theirs = etcdctl_proc(backend, tmp_path / "lock.log", "lock", name, "--ttl", "5")
    try:
        wait_for(
            lambda: name.encode() + b"/" in theirs.output().encode(),
            timeout=15,
            what="etcdctl holds the lock",
        )
        their_rev = client.get_prefix(name + "/")[0].create_revision
        ours = Lock(client, name, ttl=5)
        assert ours.acquire(timeout=0.3) is False
        got: list[bool] = []
        t = threading.Thread(target=lambda: got.append(ours.acquire(timeout=20)))
        t.start()
        wait_for(lambda: len(client.get_prefix(name + "/")) == 2, timeout=10, what="queued")
        assert not got
        theirs.kill(signal.SIGINT)  # etcdctl unlocks on interrupt
        t.join(timeout=20)
        assert got == [True]
        assert ours.fencing_token > their_rev
        ours.release()
    finally:
        theirs.stop()


def test_our_lock_excludes_etcdctl_lock(
    client: Client, backend: str, prefix: str, tmp_path: Path
) -> None:
    name = prefix + "jobs"
    ours = Lock(client, name, ttl=5)
    ours.acquire()
    theirs = etcdctl_proc(
        backend,
        tmp_path / "lock.log",
        "lock",
        name,
        "--ttl",
        "5",
        "--",
        "sh",
        "-c",
        "echo ACQUIRED-$ETCD_LOCK_KEY",
    )
    try:
        wait_for(
            lambda: len(client.get_prefix(name + "/")) == 2,
            timeout=15,
            what="etcdctl queued behind our lock",
        )
        assert theirs.alive()
        assert "ACQUIRED" not in theirs.output()
        ours.release()
        wait_for(lambda: not theirs.alive(), timeout=15, what="etcdctl ran and unlocked")
        assert "ACQUIRED-" + name in theirs.output()
        assert theirs.popen.returncode == 0
        assert client.get_prefix(name + "/") == []
    finally:
        theirs.stop()


def test_etcdctl_elect_sees_our_leader_and_we_see_theirs(
    client: Client, backend: str, prefix: str, tmp_path: Path
) -> None:
    name = prefix + "leader"
    ours = Election(client, name, ttl=5)
    assert ours.campaign("ours-value")
    listener = etcdctl_proc(backend, tmp_path / "listen.log", "elect", "-l", name)
    theirs = etcdctl_proc(backend, tmp_path / "elect.log", "elect", name, "their-value")
    try:
        wait_for(
            lambda: "ours-value" in listener.output(),
            timeout=15,
            what="etcdctl elect -l reports our leader",
        )
        wait_for(
            lambda: len(client.get_prefix(name + "/")) == 2,
            timeout=15,
            what="etcdctl campaigns behind us",
        )
        assert "their-value" not in theirs.output()
        ours.resign()
        wait_for(
            lambda: "their-value" in theirs.output(),
            timeout=15,
            what="etcdctl elected after our resign",
        )
        leader = ours.leader()
        assert leader is not None
        assert leader.value == b"their-value"
        wait_for(
            lambda: "their-value" in listener.output(),
            timeout=15,
            what="listener sees the new leader",
        )
        # our campaign now waits behind etcdctl's leader and wins when it resigns
        won: list[bool] = []
        t = threading.Thread(target=lambda: won.append(ours.campaign("ours-again", 20)))
        t.start()
        wait_for(lambda: len(client.get_prefix(name + "/")) == 2, timeout=15, what="we queue")
        assert not won
        os.killpg(theirs.pid, signal.SIGINT)  # etcdctl resigns on interrupt
        t.join(timeout=20)
        assert won == [True]
        ours.resign()
    finally:
        theirs.stop()
        listener.stop()
