"""Exceptions raised by the Raft core and its storage."""

from __future__ import annotations

__all__ = [
    "CompactedError",
    "ProposalDropped",
    "RaftError",
    "SnapshotOutOfDateError",
    "SnapshotTemporarilyUnavailable",
    "UnavailableError",
]


class RaftError(Exception):
    """Base class of every Raft error."""


class ProposalDropped(RaftError):
    """The proposal was not appended: no leader, a leadership transfer is pending, this node
    is not the leader and forwarding is disabled, or a conf change is already pending."""


class CompactedError(RaftError):
    """The requested index is older than the storage's first index (log was compacted)."""


class UnavailableError(RaftError):
    """The requested index is newer than the storage's last index."""


class SnapshotOutOfDateError(RaftError):
    """The snapshot being applied or created is older than the existing one."""


class SnapshotTemporarilyUnavailable(RaftError):
    """The storage cannot produce a snapshot right now; Raft will retry later."""
