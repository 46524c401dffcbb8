"""Seeded fault schedules: which nemesis, against which role, when and for how long.

Theory of operation
-------------------
:func:`plan` turns a seed and a run length into a list of :class:`Step` s using only
``random.Random(seed)``, so the same seed always gives the same schedule (``COORD_CHAOS_SEED``
replays one). A step names a nemesis kind, a target role resolved at injection time
(``leader`` or ``follower``: the member ids of a run are not known in advance), when to
inject it (seconds after the workloads started) and how long to hold it. Steps never
overlap: one disruptive fault at a time keeps a majority of a 3-member cluster healthy, so
every violation found is a real one and not a lost quorum. :class:`Scheduler` executes a plan
against nemeses, waiting for the cluster to be healthy before each disruptive step (skipping
it, as a liveness finding, when it does not get healthy), stops at the end of the run even if
steps overran, and always heals everything at the end, even when interrupted.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cluster.clusterlib import Cluster

from . import clusterops
from .nemesis import Nemesis

__all__ = ["Scheduler", "Step", "plan"]


@dataclass(frozen=True)
class Step:
    at: float
    kind: str
    target: str
    hold: float

    def __str__(self) -> str:
        return f"t={self.at:7.2f}s {self.kind:<10} {self.target:<8} hold {self.hold:5.2f}s"


#: how long each kind of fault is held (seconds, uniform in the range)
HOLD = {
    "kill": (1.0, 5.0),
    "pause": (1.0, 5.0),
    "partition": (1.0, 6.0),
    "diskstall": (5.0, 9.0),  # longer than the lease TTLs the workloads use (3 s)
    "slowdisk": (3.0, 8.0),
    "transfer": (0.0, 0.0),
    "compact": (0.0, 0.0),
    "membership": (0.0, 0.0),
}

#: seconds a kind takes beyond its hold (a membership replacement runs several steps)
COST = {"membership": 10.0, "kill": 1.0}


def plan(seed: int, seconds: float, kinds: Sequence[str], warmup: float = 2.0) -> list[Step]:
    """A schedule of faults drawn from ``kinds`` filling ``seconds`` (see module docstring)."""
    rng = random.Random(seed)
    steps: list[Step] = []
    t = warmup
    while kinds:
        kind = rng.choice(list(kinds))
        lo, hi = HOLD.get(kind, (1.0, 5.0))
        hold = round(rng.uniform(lo, hi), 2)
        if t + hold > seconds - 1:
            break
        target = "leader" if rng.random() < 0.6 else "follower"
        steps.append(Step(round(t, 2), kind, target, hold))
        t += hold + COST.get(kind, 0.0) + rng.uniform(1.0, 3.0)
    return steps


class Scheduler:
    """Runs a plan (see the module docstring); ``nemeses`` by kind."""

    def __init__(
        self,
        cluster: Cluster,
        nemeses: dict[str, Nemesis],
        steps: list[Step],
        stop: threading.Event,
        seconds: float,
    ) -> None:
        self.c = cluster
        self.seconds = seconds
        self.nemeses = nemeses
        self.steps = steps
        self.stop = stop

    def run(self, t0: float) -> None:
        try:
            for step in self.steps:
                if time.monotonic() > t0 + self.seconds:
                    n = self.nemeses[step.kind]
                    n.findings.items.append(f"schedule overran: skipped {step} and later")
                    return
                delay = t0 + step.at - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    return
                n = self.nemeses[step.kind]
                if n.disruptive and not clusterops.healthy(self.c, timeout=30):
                    # another fault now could cost the quorum: what it found would not be a
                    # bug. Skip the step; the unhealthy cluster is itself a finding.
                    n.findings.items.append(f"cluster not healthy before step {step}; skipped")
                    continue
                n.inject(step.target)
                if step.hold and self.stop.wait(step.hold):
                    return
                n.heal()
        finally:
            self.heal_all()

    def heal_all(self) -> None:
        for n in self.nemeses.values():
            try:
                n.heal()
            except Exception as e:
                n.findings.items.append(f"heal {n.name} failed: {e!r}")
