"""Schedules are a pure function of the seed (that is what makes a run replayable)."""

from __future__ import annotations

import itertools

from .schedule import plan

KINDS = ("kill", "pause", "partition", "diskstall", "membership", "transfer", "compact")


def test_same_seed_same_schedule() -> None:
    assert plan(7, 120, KINDS) == plan(7, 120, KINDS)
    assert plan(7, 120, KINDS) != plan(8, 120, KINDS)


def test_steps_fit_the_run_and_never_overlap() -> None:
    for seed in range(50):
        steps = plan(seed, 60, KINDS)
        assert steps, seed
        assert all(s.kind in KINDS and s.target in ("leader", "follower") for s in steps)
        assert all(a.at + a.hold < b.at for a, b in itertools.pairwise(steps))
        assert steps[-1].at + steps[-1].hold <= 59
