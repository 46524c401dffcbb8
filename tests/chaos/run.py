"""One chaos run end to end: cluster, workloads, seeded faults, heal, checks, summary.

Theory of operation
-------------------
:func:`run_chaos` starts a 3-member :class:`~cluster.clusterlib.Cluster` (with the peer proxy
when a partition is planned), starts the workloads of :mod:`.workloads` on a fresh key prefix,
prints the seed and the whole fault schedule (:func:`.schedule.plan`) *before* running it, runs
the :class:`~.schedule.Scheduler` for ``seconds``, heals everything, waits until the cluster is
healthy, stops the workloads, reads a reference watch history from the healed cluster, and
runs every checker that has data. The returned :class:`Report` holds the checker results, the
nemeses' event log and liveness findings, and :meth:`Report.summary` prints what docs/chaos.md
shows: operations, faults injected by kind, violations found. The cluster is always stopped.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.clusterlib import Cluster, status
from unwrap import unwrap

from coord import Client, CompactedError

from . import clusterops
from .fenced import FencedRegister
from .history import OK, History
from .leasesafety import LeaseResult, check_leases
from .linearizable import LinearizabilityResult, check_register
from .locksafety import LockResult, check_locks
from .nemesis import Event, Findings, Membership, Nemesis, make
from .schedule import Scheduler, Step, plan
from .watchguarantees import WatchResult, check_watch, reference_events
from .workloads import (
    LeaseProbes,
    RegisterWorkload,
    WatchedResponse,
    WatchRecorder,
    WatchSegment,
    _convert,
    read_jsonl,
    start_lock_workers,
)

__all__ = ["ChaosConfig", "Report", "run_chaos", "seed_from_env"]

PREFIX = "/chaos/"


def seed_from_env(default: int) -> int:
    """``COORD_CHAOS_SEED`` if set (to replay a run), else ``default``."""
    value = os.environ.get("COORD_CHAOS_SEED")
    return int(value) if value else default


@dataclass
class ChaosConfig:
    seed: int
    seconds: float = 30.0
    nemeses: tuple[str, ...] = ("kill", "pause", "partition", "transfer", "compact")
    register: bool = True
    watch: bool = True
    leases: bool = True
    locks: bool = False
    lock_workers: int = 3
    ttl: int = 3
    snapshot_count: int = 10000
    #: pause the register load while a member is replaced (no new snapshot then: the
    #: learner must catch up from the snapshot the leader already has)
    quiet_membership: bool = False

    def __str__(self) -> str:
        work = [w for w in ("register", "watch", "leases", "locks") if getattr(self, w)]
        return (
            f"seed={self.seed} seconds={self.seconds} nemeses={','.join(self.nemeses)} "
            f"workloads={','.join(work)} ttl={self.ttl} "
            f"snapshot-count={self.snapshot_count}"
        )


@dataclass
class Report:
    config: ChaosConfig
    steps: list[Step]
    events: list[Event] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    linearizability: LinearizabilityResult | None = None
    locks: LockResult | None = None
    leases: LeaseResult | None = None
    watches: list[WatchResult] = field(default_factory=list)
    elapsed: float = 0.0
    t0: float = 0.0  # time.monotonic() at the start of the schedule

    @property
    def checks(self) -> list[Any]:
        return [
            c
            for c in (self.linearizability, self.locks, self.leases, *self.watches)
            if c is not None
        ]

    @property
    def violations(self) -> list[str]:
        return [str(c) for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.violations and not self.findings

    def summary(self) -> str:
        total_ops = sum(self.ops.values())
        lines = [
            f"chaos run {self.config}",
            f"  elapsed {self.elapsed:.1f}s; replay with COORD_CHAOS_SEED={self.config.seed}",
            f"  ops {total_ops}: " + ", ".join(f"{k}={v}" for k, v in sorted(self.ops.items())),
            "  faults injected: "
            + (", ".join(f"{k}={v}" for k, v in sorted(self.faults.items())) or "none"),
        ]
        lines += [f"  {line}" for c in self.checks for line in str(c).splitlines()]
        lines.append(f"  liveness findings: {len(self.findings)}")
        lines += [f"    {f}" for f in self.findings]
        lines.append(f"  RESULT: {'PASS' if self.ok else 'VIOLATIONS FOUND'}")
        return "\n".join(lines)

    def schedule_text(self) -> str:
        return "\n".join(
            [
                f"chaos schedule for {self.config} ({len(self.steps)} steps):",
                *(f"  {s}" for s in self.steps),
            ]
        )

    def event_log(self) -> str:
        return "\n".join(
            [
                f"fault log (seconds since start = monotonic {self.t0:.3f}):",
                *(f"  {e}" for e in self.events),
            ]
        )


def _reference(endpoints: list[str], until: int) -> tuple[list[WatchSegment], int]:
    """A fresh watch of the whole prefix from the oldest retained revision to ``until``."""
    start = 1
    with Client(endpoints, timeout=10) as client:
        for _ in range(5):
            seg = WatchSegment(start)
            try:
                w = client.watch_prefix(PREFIX, start_revision=start, prev_kv=True)
                with w:
                    deadline = time.monotonic() + 60
                    last = start - 1
                    while last < until and time.monotonic() < deadline:
                        resp = w.next_response(timeout=1.0)
                        if resp is None:
                            client.put(PREFIX + "zz-progress", "x")  # move past `until`
                            continue
                        seg.responses.append(
                            WatchedResponse(
                                time.monotonic(),
                                resp.revision,
                                tuple(_convert(e) for e in resp.events),
                            )
                        )
                        last = resp.revision
                return [seg], start
            except CompactedError as e:
                start = e.compact_revision
    raise AssertionError("could not read a reference watch history")


def run_chaos(base: Path, cfg: ChaosConfig, out: Any = print) -> Report:
    """Run one chaos run in ``base`` (see the module docstring)."""
    base.mkdir(parents=True, exist_ok=True)
    steps = plan(cfg.seed, cfg.seconds, cfg.nemeses)
    report = Report(cfg, steps)
    out(report.schedule_text())
    t_start = time.monotonic()
    proxy = "partition" in cfg.nemeses
    c = Cluster(base, size=3, snapshot_count=cfg.snapshot_count, proxy=proxy).start()
    lock_procs = []
    findings = Findings()
    try:
        eps = [m.endpoint for m in c.members]
        history = History()
        register = RegisterWorkload(eps, PREFIX, history, cfg.seed) if cfg.register else None
        watchers = (
            [
                WatchRecorder(eps, PREFIX, cfg.seed, None, "watch-0"),
                WatchRecorder(eps[1:] + eps[:1], PREFIX, cfg.seed + 1, 3.0, "watch-resume"),
            ]
            if cfg.watch or cfg.leases
            else []
        )
        probes = LeaseProbes(eps, PREFIX, cfg.seed, ttl=cfg.ttl) if cfg.leases else None
        for w in watchers:
            w.start()
        if register:
            register.start()
        if probes:
            probes.start()
        reg_path = base / "fenced.json"
        holds = base / "holds.jsonl"
        if cfg.locks:
            lock_procs = start_lock_workers(
                eps,
                PREFIX + "lock",
                reg_path,
                holds,
                cfg.lock_workers,
                cfg.ttl,
                cfg.seconds,
                cfg.seed,
                base,
            )
        t0 = report.t0 = time.monotonic()
        rng = random.Random(cfg.seed ^ 0x5EED)
        nemeses: dict[str, Nemesis] = {
            k: make(k, c, rng, report.events, findings, t0)
            for k in dict.fromkeys(s.kind for s in steps)
        }
        if cfg.quiet_membership and register is not None and "membership" in nemeses:
            membership = nemeses["membership"]
            assert isinstance(membership, Membership)
            membership.quiet = register.paused
        stop = threading.Event()
        sched = Scheduler(c, nemeses, steps, stop, cfg.seconds)
        try:
            sched.run(t0)
            left = t0 + cfg.seconds - time.monotonic()
            if left > 0:
                time.sleep(left)
        finally:
            stop.set()
            sched.heal_all()
        for k, n in nemeses.items():
            report.faults[k] = n.injected
        if not clusterops.healthy(c, timeout=60):
            findings.items.append("cluster not healthy 60s after healing")
        if register:
            register.join()
        if probes:
            probes.join()
        for p in lock_procs:
            deadline = time.monotonic() + 30
            while p.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            p.kill()
            p.stop()
        live = [m.endpoint for m in c.running()]
        final_rev = max(
            int(unwrap(st.header).revision)
            for m in c.running()
            if (st := status(m.endpoint)) is not None
        )
        for w in watchers:
            deadline = time.monotonic() + 30
            while w.last_revision < final_rev and time.monotonic() < deadline:
                time.sleep(0.1)
            w.join()
        # -- checks -------------------------------------------------------------------------
        history.close_pending()
        report.ops = history.counts()
        if register:
            report.linearizability = check_register(history.ops)
        if watchers:
            ref_segs, ref_start = _reference(live, final_rev)
            ref = reference_events(ref_segs)
            ref_end = ref_segs[0].responses[-1].revision if ref_segs[0].responses else 0
            report.watches.append(check_watch("reference", ref_segs))
            acked = [
                (o.key, o.value if o.f == "put" else o.value[1], o.revision)
                for o in history.ops
                if o.outcome == OK and o.revision
            ]
            for w in watchers:
                report.watches.append(
                    check_watch(w.name, w.segments, ref, (ref_start, ref_end), acked)
                )
                findings.items.extend(f"{w.name}: {e}" for e in w.errors[:3])
                report.ops[f"watch-events:{w.name}"] = report.watches[-1].events
        if probes:
            deleted: dict[str, float] = {}
            for w in watchers:
                for seg in w.segments:
                    for r in seg.responses:
                        for e in r.events:
                            if e.type == "DELETE":
                                deleted[e.key] = min(deleted.get(e.key, r.t), r.t)
            report.leases = check_leases(probes.leases, probes.keepalives, deleted)
            report.ops["keepalive"] = len(probes.keepalives)
        if cfg.locks:
            grants = read_jsonl(holds)
            report.locks = check_locks(grants, FencedRegister(reg_path).attempts())
            report.ops["lock-grant"] = len(grants)
    finally:
        for p in lock_procs:
            p.kill()
            p.stop()
        c.stop()
        report.findings = findings.items
        report.elapsed = time.monotonic() - t_start
    out(report.event_log())
    out(report.summary())
    return report
