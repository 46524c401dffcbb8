"""RaftConfig: the parameters of one Raft node (etcd's ``raft.Config``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["RaftConfig", "RandomLike", "XorShift", "rng_callable"]


class RandomLike(Protocol):
    """Anything with ``randrange(n)`` (e.g. a ``random.Random`` owned by the caller)."""

    def randrange(self, n: int, /) -> int: ...


def rng_callable(rng: Callable[[int], int] | RandomLike | None, seed: int) -> Callable[[int], int]:
    """Normalize ``RaftConfig.rng`` to a function returning an int in ``[0, n)``."""
    if rng is None:
        return XorShift(seed)
    if callable(rng):
        return rng
    return rng.randrange


class XorShift:
    """Deterministic fallback RNG (production drivers inject a real one via RaftConfig.rng)."""

    def __init__(self, seed: int) -> None:
        self.s = (seed * 0x9E3779B97F4A7C15 + 1) & 0xFFFFFFFFFFFFFFFF or 1

    def __call__(self, n: int) -> int:
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFFFFFFFFFF
        s ^= s >> 7
        s ^= (s << 17) & 0xFFFFFFFFFFFFFFFF
        self.s = s
        return s % n


@dataclass(slots=True)
class RaftConfig:
    """Parameters of one Raft node (etcd's ``raft.Config``)."""

    # This node's id; non-zero and never reused.
    id: int
    # Ticks a follower waits without hearing a leader before campaigning (randomized up to 2x).
    election_tick: int = 10
    # Ticks between leader heartbeats.  Must be < election_tick.
    heartbeat_tick: int = 1
    # Last applied index, on restart (entries up to it are not re-delivered).
    applied: int = 0
    # Max bytes of entries per append message (at least one entry is always sent).
    max_size_per_msg: int = 1 << 20
    # Max unacknowledged append messages per follower in REPLICATE state.
    max_inflight_msgs: int = 256
    # Max unacknowledged append bytes per follower (0: unlimited).
    max_inflight_bytes: int = 0
    # Max bytes of committed entries in one Ready (None: unlimited).
    max_committed_size_per_ready: int | None = None
    check_quorum: bool = True
    pre_vote: bool = True
    # Refuse to forward proposals from followers to the leader (raise ProposalDropped instead).
    disable_proposal_forwarding: bool = False
    # A leader that applies its own removal steps down (otherwise it would lead without voting).
    step_down_on_removal: bool = True
    # Randomness: rng(n) returns an int in [0, n) (e.g. ``random.Random(seed).randrange``), or
    # a ``random.Random``-like object.  None: a deterministic generator seeded by the id.
    rng: Callable[[int], int] | RandomLike | None = None
    logger: logging.Logger | None = None

    def validate(self) -> None:
        if self.id == 0:
            raise ValueError("cannot use 0 as id")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")
