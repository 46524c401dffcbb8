"""Quorum arithmetic for majority and joint configurations (etcd's ``quorum`` package).

A configuration is a set of voter ids; a joint configuration is a pair (incoming, outgoing) and
needs a majority of *both* halves.  An empty half always agrees (so a non-joint config is
``(voters, set())``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

__all__ = [
    "JointConfig",
    "VoteResult",
    "joint_committed_index",
    "joint_vote_result",
    "majority_committed_index",
    "majority_vote_result",
]

JointConfig = tuple[set[int], set[int]]


class VoteResult(enum.IntEnum):
    PENDING = 0
    LOST = 1
    WON = 2


def majority_committed_index(voters: set[int], acked: Callable[[int], int]) -> int:
    """Largest index acknowledged by a majority of ``voters``; "infinite" for an empty set."""
    if not voters:
        return 2**63 - 1  # an empty config commits everything (joint: the other half decides)
    idx = sorted((acked(v) for v in voters), reverse=True)
    return idx[len(idx) // 2]


def joint_committed_index(cfg: JointConfig, acked: Callable[[int], int]) -> int:
    return min(majority_committed_index(cfg[0], acked), majority_committed_index(cfg[1], acked))


def majority_vote_result(voters: set[int], votes: Mapping[int, bool]) -> VoteResult:
    if not voters:
        return VoteResult.WON
    granted = sum(1 for v in voters if votes.get(v) is True)
    missing = sum(1 for v in voters if v not in votes)
    q = len(voters) // 2 + 1
    if granted >= q:
        return VoteResult.WON
    if granted + missing >= q:
        return VoteResult.PENDING
    return VoteResult.LOST


def joint_vote_result(cfg: JointConfig, votes: Mapping[int, bool]) -> VoteResult:
    r1 = majority_vote_result(cfg[0], votes)
    r2 = majority_vote_result(cfg[1], votes)
    if r1 == r2:
        return r1
    if VoteResult.LOST in (r1, r2):
        return VoteResult.LOST
    return VoteResult.PENDING
