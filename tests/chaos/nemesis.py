"""Nemeses: faults injected into a running :class:`cluster.clusterlib.Cluster`.

Theory of operation
-------------------
Each nemesis is a small class with ``inject(target)`` and ``heal()``; both return a short
description of what they did and append it to :attr:`Nemesis.log` (a shared list of
:class:`Event` with monotonic times), so a run prints exactly which fault hit which member
when. ``target`` is a role chosen by the scheduler (``leader``, ``follower`` or a member
index), resolved against the cluster at inject time. ``heal()`` undoes the fault and is safe
to call when nothing is injected; the scheduler always calls it at the end of a run.

* :class:`Kill` -- ``kill -9`` a member; heal restarts it on its data directory.
* :class:`Pause` -- SIGSTOP a member's process group; heal sends SIGCONT.
* :class:`Partition` -- cut every peer link of a member in the :class:`PeerProxy`
  (needs ``Cluster(proxy=True)``); heal lets traffic through.
* :class:`DiskStall` -- arm ``walBeforeSync`` on a member: ``block`` (every fsync waits until
  healed) or ``sleep(ms)`` (a slow disk); heal disarms it.
* :class:`Membership` -- a step function running the documented member replacement on a
  follower: remove it, wipe its data directory, ``member add --learner`` it again, start it
  with ``--initial-cluster-state existing``, wait until it caught up, promote it (retrying
  while the leader says it is not in sync). A step that cannot complete within its deadline is
  recorded as a *liveness* finding and heal leaves the cluster with the members it has.
* :class:`LeaderTransfer` -- MoveLeader to a random follower (no heal needed).
* :class:`Compaction` -- compact the store to a revision a little behind the current one.

Quorum is the scheduler's concern: it injects one disruptive fault at a time.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.clusterlib import Cluster, Member, status
from unwrap import unwrap

from . import clusterops

__all__ = [
    "NEMESES",
    "Compaction",
    "DiskStall",
    "Event",
    "Kill",
    "LeaderTransfer",
    "Membership",
    "Nemesis",
    "Partition",
    "Pause",
    "make",
]


@dataclass
class Event:
    t: float
    nemesis: str
    action: str
    detail: str

    def __str__(self) -> str:
        return f"{self.t:10.3f} {self.nemesis:<10} {self.action:<7} {self.detail}"


@dataclass
class Findings:
    """Liveness problems a nemesis ran into (a safety checker never sees these)."""

    items: list[str] = field(default_factory=list)


class Nemesis:
    name = "nemesis"
    disruptive = True

    def __init__(
        self, cluster: Cluster, rng: random.Random, log: list[Event], findings: Findings, t0: float
    ) -> None:
        self.c = cluster
        self.rng = rng
        self.log = log
        self.findings = findings
        self.t0 = t0
        self.injected = 0

    def _record(self, action: str, detail: str) -> str:
        self.log.append(Event(time.monotonic() - self.t0, self.name, action, detail))
        return detail

    def resolve(self, target: str) -> Member | None:
        """The member ``target`` names now (``leader``, ``follower`` or an index)."""
        running = self.c.running()
        if not running:
            return None
        if target in ("leader", "follower"):
            lead = self.c.leader()
            if lead is None:
                return self.rng.choice(running)
            if target == "leader":
                return lead
            others = [m for m in running if m is not lead]
            return self.rng.choice(others) if others else None
        return self.c.members[int(target) % len(self.c.members)]

    def inject(self, target: str) -> str:
        raise NotImplementedError

    def heal(self) -> str:
        return ""


class Kill(Nemesis):
    name = "kill"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.down: list[Member] = []

    def inject(self, target: str) -> str:
        m = self.resolve(target)
        if m is None or m.proc is None:
            return self._record("skip", f"no running {target}")
        self.c.kill(m)
        self.down.append(m)
        self.injected += 1
        return self._record("inject", f"kill -9 {m.name} ({target})")

    def heal(self) -> str:
        done = []
        for m in self.down:
            self.c.start_member(m, wait=False)
            try:
                self.c.wait_member(m, timeout=60)
            except AssertionError as e:
                self.findings.items.append(f"{m.name} did not come back after kill -9: {e}")
            done.append(m.name)
        self.down.clear()
        return self._record("heal", f"restarted {done}") if done else ""


class Pause(Nemesis):
    name = "pause"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.paused: list[Member] = []

    def inject(self, target: str) -> str:
        m = self.resolve(target)
        if m is None or m.proc is None:
            return self._record("skip", f"no running {target}")
        os.killpg(m.proc.pid, signal.SIGSTOP)
        self.paused.append(m)
        self.injected += 1
        return self._record("inject", f"SIGSTOP {m.name} ({target})")

    def heal(self) -> str:
        done = []
        for m in self.paused:
            if m.proc is not None:
                try:
                    os.killpg(m.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                done.append(m.name)
        self.paused.clear()
        return self._record("heal", f"SIGCONT {done}") if done else ""


class Partition(Nemesis):
    name = "partition"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.isolated: list[Member] = []

    def inject(self, target: str) -> str:
        if self.c.proxy is None:
            return self._record("skip", "cluster has no peer proxy")
        m = self.resolve(target)
        if m is None:
            return self._record("skip", f"no {target}")
        self.c.proxy.isolate(m.id)
        self.isolated.append(m)
        self.injected += 1
        return self._record("inject", f"isolate {m.name} ({target}) from its peers")

    def heal(self) -> str:
        if self.c.proxy is None or not self.isolated:
            return ""
        names = [m.name for m in self.isolated]
        self.c.proxy.heal()
        self.isolated.clear()
        return self._record("heal", f"reconnect {names}")


class DiskStall(Nemesis):
    """``walBeforeSync`` = ``block`` (term "block") or ``sleep(ms)`` (a slow disk)."""

    name = "diskstall"

    def __init__(self, *a: Any, term: str = "block", **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.term = term
        self.stalled: list[Member] = []

    def inject(self, target: str) -> str:
        m = self.resolve(target)
        if m is None or m.proc is None:
            return self._record("skip", f"no running {target}")
        m.failpoint("walBeforeSync", self.term)
        self.stalled.append(m)
        self.injected += 1
        return self._record("inject", f"walBeforeSync={self.term} on {m.name} ({target})")

    def heal(self) -> str:
        done = []
        for m in self.stalled:
            if m.proc is not None and m.proc.alive():
                try:
                    m.failpoint("walBeforeSync", "off")
                except OSError as e:
                    self.findings.items.append(f"could not disarm failpoint on {m.name}: {e}")
                done.append(m.name)
        self.stalled.clear()
        return self._record("heal", f"walBeforeSync=off on {done}") if done else ""


class LeaderTransfer(Nemesis):
    name = "transfer"

    def inject(self, target: str) -> str:
        lead = self.c.leader()
        if lead is None:
            return self._record("skip", "no agreed leader")
        followers = [m for m in self.c.running() if m is not lead]
        if not followers:
            return self._record("skip", "no follower")
        to = self.rng.choice(followers)
        try:
            clusterops.move_leader(lead.endpoint, to.id)
        except Exception as e:  # a transfer may time out under other load; not a safety issue
            return self._record("inject", f"move-leader {lead.name}->{to.name} failed: {e!r}")
        self.injected += 1
        return self._record("inject", f"move-leader {lead.name}->{to.name}")


class Compaction(Nemesis):
    name = "compact"
    disruptive = False

    def inject(self, target: str) -> str:
        running = self.c.running()
        if not running:
            return self._record("skip", "nothing running")
        m = self.rng.choice(running)
        st = status(m.endpoint)
        if st is None:
            return self._record("skip", f"{m.name} does not answer")
        rev = int(unwrap(st.header).revision) - self.rng.randint(0, 30)
        if rev <= 1:
            return self._record("skip", f"revision {rev} too low")
        try:
            clusterops.compact(m.endpoint, rev)
        except Exception as e:
            return self._record("inject", f"compact {rev} via {m.name} failed: {e!r}")
        self.injected += 1
        return self._record("inject", f"compact {rev} via {m.name}")


class Membership(Nemesis):
    """Replace a follower: remove, wipe, re-add as learner, start, catch up, promote."""

    name = "membership"

    def __init__(self, *a: Any, step_timeout: float = 20.0, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.step_timeout = step_timeout
        self.pending: Member | None = None  # a member removed and not yet back as a voter
        self.learner_id = 0
        #: when set by the run: an event that pauses client load during the replacement
        self.quiet: threading.Event | None = None

    def _some_endpoint(self, exclude: Member | None = None) -> str:
        lead = self.c.leader([m for m in self.c.running() if m is not exclude])
        if lead is not None:
            return lead.endpoint
        return next(m.endpoint for m in self.c.running() if m is not exclude)

    def _wait(self, what: str, pred: Callable[[], object]) -> bool:
        deadline = time.monotonic() + self.step_timeout
        while time.monotonic() < deadline:
            try:
                if pred():
                    return True
            except Exception:
                pass
            time.sleep(0.2)
        self.findings.items.append(f"membership: {what} not done within {self.step_timeout}s")
        self._record("stuck", what)
        return False

    def inject(self, target: str) -> str:
        if self.quiet is not None:
            self.quiet.set()
        try:
            return self._replace()
        finally:
            if self.quiet is not None:
                self.quiet.clear()

    def _replace(self) -> str:
        m = self.resolve("follower")
        if m is None or m.proc is None or self.pending is not None:
            return self._record("skip", "no follower to replace")
        self.injected += 1
        self.pending = m
        self._record("step", f"member remove {m.name} ({m.id:x})")
        try:
            clusterops.member_remove(self._some_endpoint(exclude=m), m.id)
        except Exception as e:
            self.pending = None
            return self._record("step", f"member remove {m.name} failed: {e!r}")
        proc = m.proc
        self._wait(f"{m.name} to stop after its removal", lambda: not proc.alive())
        proc.kill()
        proc.stop()
        m.proc = None
        clusterops.wipe(self.c, m)
        self._record("step", f"wiped {m.name}")
        return self._continue()

    def _continue(self) -> str:
        m = self.pending
        assert m is not None
        if not self.learner_id:
            ep = self._some_endpoint()
            try:
                new_id, members = clusterops.member_add(ep, m.peer_url, learner=True)
            except Exception as e:
                return self._record("step", f"member add {m.name} failed: {e!r}")
            self.learner_id = new_id
            initial = clusterops.initial_cluster(members, new_id, m.name)
            self._record("step", f"member add --learner {m.name} ({new_id:x})")
            self.c.start_member(m, state="existing", initial_cluster=initial, wait=False)

        def caught_up() -> bool:
            lead = self.c.leader([x for x in self.c.running() if x is not m])
            s, ls = status(m.endpoint), status(lead.endpoint) if lead else None
            return (
                s is not None
                and ls is not None
                and s.raft_applied_index >= ls.raft_applied_index - 20
            )

        if not self._wait(f"learner {m.name} to catch up", caught_up):
            return self._record("step", f"learner {m.name} did not catch up")
        m.id = self.learner_id
        self._record("step", f"learner {m.name} caught up")

        def promoted() -> bool:
            clusterops.member_promote(self._some_endpoint(), self.learner_id)
            return True

        if not self._wait(f"promote {m.name}", promoted):
            return self._record("step", f"promote {m.name} failed")
        self.pending, self.learner_id = None, 0
        return self._record("step", f"promoted {m.name}")

    def heal(self) -> str:
        if self.pending is None:
            return ""
        return self._continue()


#: nemesis kinds by name (the scheduler's vocabulary)
NEMESES: dict[str, type[Nemesis]] = {
    n.name: n for n in (Kill, Pause, Partition, DiskStall, LeaderTransfer, Compaction, Membership)
}


def make(
    kind: str, cluster: Cluster, rng: random.Random, log: list[Event], findings: Findings, t0: float
) -> Nemesis:
    """Build nemesis ``kind``: a name from :data:`NEMESES`, or ``slowdisk`` (walBeforeSync
    sleep(300)), the slow-disk flavour of :class:`DiskStall`."""
    if kind == "slowdisk":
        n = DiskStall(cluster, rng, log, findings, t0, term="sleep(300)")
        n.name = "slowdisk"
        return n
    return NEMESES[kind](cluster, rng, log, findings, t0)
