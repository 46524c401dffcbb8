"""Membership changes: apply ConfChange / ConfChangeV2 to a ProgressTracker configuration.

Mirrors etcd's ``confchange.Changer``.  Three operations, each producing a *new* configuration
and progress map (the tracker is replaced only if the change validates):

* ``simple``: at most one voter added/removed/demoted (safe without joint consensus).
* ``enter_joint``: voters become (incoming, outgoing); decisions need a majority of both.
* ``leave_joint``: drop the outgoing half; demoted voters (``learners_next``) become learners.

A configuration takes effect when the entry is *applied* (``RawNode.apply_conf_change``), not when
it is appended, as in etcd-io/raft.  Only one conf change may be pending (uncommitted or
unapplied) at a time.
"""

from __future__ import annotations

import copy

from .progress import Progress, ProgressTracker
from .types import ConfChange, ConfChangeType, ConfChangeV2, ConfState

__all__ = ["ConfChangeError", "Changer", "as_v2", "enters_joint", "leaves_joint", "restore"]


class ConfChangeError(ValueError):
    """The conf change is invalid for the current configuration."""


def as_v2(cc: ConfChange | ConfChangeV2) -> ConfChangeV2:
    if isinstance(cc, ConfChangeV2):
        return cc
    return ConfChangeV2(changes=[cc], transition=0, context=cc.context)


def leaves_joint(cc: ConfChangeV2) -> bool:
    """An empty ConfChangeV2 means: leave the joint configuration."""
    return not cc.changes


def enters_joint(cc: ConfChangeV2) -> tuple[bool, bool]:
    """Returns (uses joint consensus, auto_leave)."""
    if cc.transition != 0 or len(cc.changes) > 1:
        return True, cc.transition in (0, 1)
    return False, False


class Changer:
    """Computes new configurations from the tracker's current one (never mutates it)."""

    def __init__(self, tracker: ProgressTracker, last_index: int) -> None:
        self.tracker = tracker
        self.last_index = last_index

    def _clone(self) -> tuple[ProgressTracker, dict[int, Progress]]:
        t = self.tracker
        nt = ProgressTracker(t.max_inflight, t.max_inflight_bytes)
        nt.voters = (set(t.voters[0]), set(t.voters[1]))
        nt.learners = set(t.learners)
        nt.learners_next = set(t.learners_next)
        nt.auto_leave = t.auto_leave
        nt.progress = {i: copy.copy(pr) for i, pr in t.progress.items()}
        return nt, nt.progress

    def enter_joint(self, auto_leave: bool, ccs: list[ConfChange]) -> ProgressTracker:
        nt, _ = self._clone()
        if nt.voters[1]:
            raise ConfChangeError("config is already joint")
        if not nt.voters[0]:
            raise ConfChangeError("can't make a zero-voter config joint")
        nt.voters = (nt.voters[0], set(nt.voters[0]))
        self._apply(nt, ccs)
        nt.auto_leave = auto_leave
        _check_invariants(nt)
        return nt

    def leave_joint(self) -> ProgressTracker:
        nt, prs = self._clone()
        if not nt.voters[1]:
            raise ConfChangeError("can't leave a non-joint config")
        for id_ in nt.learners_next:
            nt.learners.add(id_)
            prs[id_].is_learner = True
        nt.learners_next = set()
        for id_ in nt.voters[1]:
            if id_ not in nt.voters[0] and id_ not in nt.learners:
                del prs[id_]
        nt.voters = (nt.voters[0], set())
        nt.auto_leave = False
        _check_invariants(nt)
        return nt

    def simple(self, ccs: list[ConfChange]) -> ProgressTracker:
        nt, _ = self._clone()
        if nt.voters[1]:
            raise ConfChangeError("can't apply simple config change in joint config")
        self._apply(nt, ccs)
        if len(self.tracker.voters[0] ^ nt.voters[0]) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        _check_invariants(nt)
        return nt

    def _apply(self, nt: ProgressTracker, ccs: list[ConfChange]) -> None:
        for cc in ccs:
            if cc.node_id == 0:
                continue  # etcd: a zero id is a no-op
            if cc.type == ConfChangeType.ADD_NODE:
                self._make_voter(nt, cc.node_id)
            elif cc.type == ConfChangeType.ADD_LEARNER_NODE:
                self._make_learner(nt, cc.node_id)
            elif cc.type == ConfChangeType.REMOVE_NODE:
                self._remove(nt, cc.node_id)
            elif cc.type == ConfChangeType.UPDATE_NODE:
                pass
            else:  # pragma: no cover - IntEnum exhausts the cases
                raise ConfChangeError(f"unexpected conf change type {cc.type}")
        if not nt.voters[0]:
            raise ConfChangeError("removed all voters")

    def _init_progress(self, nt: ProgressTracker, id_: int, is_learner: bool) -> None:
        pr = Progress(max(self.last_index, 1), nt.max_inflight, nt.max_inflight_bytes)
        pr.is_learner = is_learner
        # A new member counts as recently active so check-quorum does not depose the leader
        # before it has had a chance to hear from it.
        pr.recent_active = True
        nt.progress[id_] = pr

    def _make_voter(self, nt: ProgressTracker, id_: int) -> None:
        pr = nt.progress.get(id_)
        if pr is None:
            self._init_progress(nt, id_, is_learner=False)
        else:
            pr.is_learner = False
        nt.learners.discard(id_)
        nt.learners_next.discard(id_)
        nt.voters[0].add(id_)

    def _make_learner(self, nt: ProgressTracker, id_: int) -> None:
        pr = nt.progress.get(id_)
        if pr is None:
            self._init_progress(nt, id_, is_learner=True)
            nt.learners.add(id_)
            return
        if pr.is_learner:
            return
        self._remove(nt, id_)
        nt.progress[id_] = pr
        if id_ in nt.voters[1]:
            # Still a voter of the outgoing config: becomes a learner on leaving joint.
            nt.learners_next.add(id_)
        else:
            pr.is_learner = True
            nt.learners.add(id_)

    def _remove(self, nt: ProgressTracker, id_: int) -> None:
        if id_ not in nt.progress:
            return
        nt.voters[0].discard(id_)
        nt.learners.discard(id_)
        nt.learners_next.discard(id_)
        if id_ not in nt.voters[1]:
            del nt.progress[id_]


def _check_invariants(nt: ProgressTracker) -> None:
    try:
        nt._check()
    except AssertionError as exc:  # pragma: no cover - defensive
        raise ConfChangeError(f"invalid configuration: {exc}") from exc


def restore(tracker: ProgressTracker, cs: ConfState, last_index: int) -> ProgressTracker:
    """Build the configuration described by ``cs`` from scratch (snapshot / restart)."""
    t = ProgressTracker(tracker.max_inflight, tracker.max_inflight_bytes)
    if not cs.voters_outgoing:
        for v in cs.voters:
            t = Changer(t, last_index).simple([ConfChange(ConfChangeType.ADD_NODE, v)])
        for lr in cs.learners:
            t = Changer(t, last_index).simple([ConfChange(ConfChangeType.ADD_LEARNER_NODE, lr)])
        return t
    for v in cs.voters_outgoing:
        t = Changer(t, last_index).simple([ConfChange(ConfChangeType.ADD_NODE, v)])
    # Entering joint copies the voters into the outgoing half; the incoming half is then
    # rebuilt by removing every outgoing voter and adding the incoming members (as etcd does).
    incoming = [ConfChange(ConfChangeType.REMOVE_NODE, v) for v in cs.voters_outgoing]
    incoming += [ConfChange(ConfChangeType.ADD_NODE, v) for v in cs.voters]
    incoming += [ConfChange(ConfChangeType.ADD_LEARNER_NODE, lr) for lr in cs.learners]
    incoming += [ConfChange(ConfChangeType.ADD_LEARNER_NODE, lr) for lr in cs.learners_next]
    return Changer(t, last_index).enter_joint(cs.auto_leave, incoming)
