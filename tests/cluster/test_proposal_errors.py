"""What a failed write reports: "outcome unknown" versus "never reached a log" (issue 12).

A proposal that Raft dropped before it reached any log was surely not applied: the member
answers "etcdserver: no leader" (NoLeaderError), which a caller may retry.  A proposal that was
appended (or forwarded to a leader) and then timed out, for example because the leader was
lost, may still commit: the member answers "etcdserver: request timed out[, possibly due to
previous leader failure]" (RequestTimeoutError, outcome unknown), as etcd's parseProposeCtxErr does,
and the client never re-sends it on its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, get
from support import require_binary, wait_for

from coord import Client, errors


def _pause(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)


def _resume(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGCONT)


def test_write_whose_leader_is_lost_reports_outcome_unknown(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    try:
        lead = c.wait_leader()
        f, g = (m for m in c.members if m is not lead)
        stopped = [m.proc.popen.pid for m in (lead, g) if m.proc is not None]
        _pause(stopped)
        try:
            # F forwards the proposal to the (frozen) leader, then loses it: the write may
            # still commit once the leader runs again, so F must not call it "no leader".
            # The client must not re-send it to the other endpoints either (it would hang
            # there and end with the client's own "coord: ... timed out").
            with (
                Client([f.endpoint, lead.endpoint, g.endpoint], timeout=30) as client,
                pytest.raises(errors.RequestTimeoutError) as caught,
            ):
                client.put("/unknown", "x")
        finally:
            _resume(stopped)
        assert "possibly due to previous leader failure" in str(caught.value)
        # ...and indeed it was not lost: the leader had it queued and commits it, once.
        wait_for(
            lambda: get(f.endpoint, "/unknown", timeout=10) == "x",
            timeout=30,
            what="the write of unknown outcome to be committed after all",
        )
        with Client(f.endpoint) as client:
            kv = client.get("/unknown")
            assert kv is not None
            assert kv.version == 1
    finally:
        c.stop()


def test_proposal_dropped_before_reaching_a_log_is_retryable(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    mover: subprocess.Popen[bytes] | None = None
    try:
        lead = c.wait_leader()
        target = next(m for m in c.members if m is not lead)
        assert target.proc is not None
        frozen = [target.proc.popen.pid]
        _pause(frozen)  # the transfer stays pending (the leader drops proposals meanwhile)
        try:
            mover = subprocess.Popen(
                [
                    require_binary("etcdctl"),
                    f"--endpoints={lead.endpoint}",
                    "move-leader",
                    f"{target.id:x}",
                ],
                env={**os.environ, "ETCDCTL_API": "3"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            failure: errors.CoordError | None = None
            with Client(lead.endpoint, timeout=10) as client:
                client.put("/dropped", "0")
                deadline = time.monotonic() + 10
                i = 0
                while failure is None and time.monotonic() < deadline:
                    i += 1
                    try:
                        client.put("/dropped", str(i))
                    except errors.CoordError as e:
                        failure = e
            assert isinstance(failure, errors.NoLeaderError), repr(failure)
        finally:
            _resume(frozen)
        c.wait_leader()
        # The dropped write was never applied: the key keeps the last acknowledged value.
        assert get(lead.endpoint, "/dropped") == str(i - 1)
    finally:
        if mover is not None:
            mover.kill()
            mover.wait()
        c.stop()
