"""Progress: the leader's view of one follower's log, and the ProgressTracker of all of them.

States (etcd-io/raft design.md):

* PROBE: the leader does not know the follower's last matching index; it sends at most one
  append per heartbeat interval and backs ``next`` off on rejections.
* REPLICATE: the follower is caught up to ``match``; the leader streams appends optimistically,
  advancing ``next`` at send time, bounded by the Inflights window.
* SNAPSHOT: the follower needs a snapshot; nothing else is sent until the snapshot is reported
  (``report_snapshot``) or an append response shows the follower caught up.
"""

from __future__ import annotations

import enum

from .inflights import Inflights
from .quorum import JointConfig, VoteResult, joint_committed_index, joint_vote_result
from .types import ConfState

__all__ = ["Progress", "ProgressState", "ProgressTracker"]


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Progress:
    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "msg_app_flow_paused",
        "next",
        "pending_snapshot",
        "recent_active",
        "state",
    )

    def __init__(self, next_: int, max_inflight: int, max_inflight_bytes: int = 0) -> None:
        # Highest index known replicated on the follower.  Invariant: match < next.
        self.match = 0
        # Next index to send.
        self.next = next_
        self.state = ProgressState.PROBE
        # Snapshot index being sent while in SNAPSHOT state.
        self.pending_snapshot = 0
        # Heard from the follower since the last check-quorum round.
        self.recent_active = False
        # PROBE: an append was sent and we wait for a response or a heartbeat response.
        self.msg_app_flow_paused = False
        self.inflights = Inflights(max_inflight, max_inflight_bytes)
        self.is_learner = False

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.name} match={self.match} next={self.next}"
            f"{' learner' if self.is_learner else ''}"
            f"{' paused' if self.msg_app_flow_paused else ''} inflight={len(self.inflights)})"
        )

    def _reset_state(self, state: ProgressState) -> None:
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Send one append at a time until the follower's match is found (after a rejection or a
        finished snapshot); ``next`` restarts just after what it is known to have.
        """
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        """Stream appends optimistically, bounded by the inflight window."""
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshoti: int) -> None:
        """Stop appends until the follower reports the snapshot at ``snapshoti`` applied or lost."""
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshoti
        # Keep next > match; the snapshot's index is the new next-1 once it is applied.
        self.next = max(self.match + 1, snapshoti + 1)

    def sent_entries(self, n: int, nbytes: int, last: int) -> None:
        """Record that an append carrying ``n`` entries ending at ``last`` was sent."""
        if self.state == ProgressState.REPLICATE:
            if n > 0:
                self.next = last + 1
                self.inflights.add(last, nbytes)
        elif self.state == ProgressState.PROBE:
            self.msg_app_flow_paused = True

    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged index ``n``; returns whether ``match`` advanced."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.msg_app_flow_paused = False
        self.next = max(self.next, n + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append at ``rejected``; back off ``next``.

        Returns False if the rejection is stale (out of order) and was ignored.
        """
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # stale: not the probe we sent
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.msg_app_flow_paused = False
        return True

    def is_paused(self) -> bool:
        """Must the leader hold back appends to this follower (probe already sent, window full,
        or a snapshot in flight)?
        """
        if self.state == ProgressState.PROBE:
            return self.msg_app_flow_paused
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def _check(self) -> None:
        assert 0 <= self.match < self.next, self
        self.inflights._check()
        if self.state != ProgressState.REPLICATE:
            assert len(self.inflights) == 0, self


class ProgressTracker:
    """Membership configuration plus a Progress per member (voters and learners)."""

    def __init__(self, max_inflight: int, max_inflight_bytes: int = 0) -> None:
        # Voters as (incoming, outgoing); outgoing non-empty only in a joint config.
        self.voters: JointConfig = (set(), set())
        self.learners: set[int] = set()
        # Voters of the outgoing config that become learners when the joint config is left.
        self.learners_next: set[int] = set()
        self.auto_leave = False
        # One Progress per id in voters[0] | voters[1] | learners | learners_next.
        self.progress: dict[int, Progress] = {}
        # Votes received in the current election: id -> granted.
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes

    def conf_state(self) -> ConfState:
        """The configuration as a ConfState (what a snapshot records)."""
        return ConfState(
            voters=sorted(self.voters[0]),
            voters_outgoing=sorted(self.voters[1]),
            learners=sorted(self.learners),
            learners_next=sorted(self.learners_next),
            auto_leave=self.auto_leave,
        )

    def is_singleton(self) -> bool:
        """Is this a single-voter configuration (not joint)?"""
        return len(self.voters[0]) == 1 and not self.voters[1]

    def is_voter(self, id_: int) -> bool:
        """Is ``id_`` a voter in either half of the configuration?"""
        return id_ in self.voters[0] or id_ in self.voters[1]

    def voter_ids(self) -> set[int]:
        """All voters, of both halves in a joint configuration."""
        return self.voters[0] | self.voters[1]

    def committed(self) -> int:
        """Highest index replicated on a quorum (of both halves in a joint config)."""
        prs = self.progress
        return joint_committed_index(self.voters, lambda i: prs[i].match if i in prs else 0)

    def reset_votes(self) -> None:
        """Forget the votes of the previous election."""
        self.votes = {}

    def record_vote(self, id_: int, granted: bool) -> None:
        """Record ``id_``'s vote; only its first vote in an election counts."""
        self.votes.setdefault(id_, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """Granted count, rejected count, and the (joint) election result."""
        granted = sum(1 for i, v in self.votes.items() if v and self.is_voter(i))
        rejected = sum(1 for i, v in self.votes.items() if not v and self.is_voter(i))
        return granted, rejected, joint_vote_result(self.voters, self.votes)

    def quorum_active(self) -> bool:
        """Was a quorum of voters heard from since the last check (CheckQuorum)?"""
        votes = {i: pr.recent_active for i, pr in self.progress.items()}
        return joint_vote_result(self.voters, votes) == VoteResult.WON

    def _check(self) -> None:
        ids = self.voters[0] | self.voters[1] | self.learners | self.learners_next
        assert set(self.progress) == ids, (sorted(self.progress), sorted(ids))
        assert not (self.learners & (self.voters[0] | self.voters[1])), self.conf_state()
        assert not (self.learners_next & self.voters[0])
        for id_, pr in self.progress.items():
            assert pr.is_learner == (id_ in self.learners), id_
            pr._check()
