"""Plain data types exchanged by the Raft core, its storage and its transport.

Every type is a ``@dataclass(slots=True)`` whose fields are ints, bytes, bools, IntEnums, lists of
these dataclasses or an optional dataclass, so other layers (the WAL, the peer transport) can
encode them with msgspec or struct without any Raft knowledge.  The Raft package itself never
imports a codec.

Names follow etcd-io/raft's ``raftpb`` package (``MsgApp`` -> ``MessageType.APP`` and so on).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "ConfChange",
    "ConfChangeType",
    "ConfChangeV2",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "ReadState",
    "Snapshot",
    "SnapshotMetadata",
    "SoftState",
    "StateType",
]


class MessageType(enum.IntEnum):
    """Kinds of Raft messages; the local-only ones (HUP, BEAT, ...) never cross the network."""

    HUP = 0
    BEAT = 1
    PROP = 2
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10
    SNAP_STATUS = 11
    CHECK_QUORUM = 12
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


class EntryType(enum.IntEnum):
    NORMAL = 0
    # Entry.data holds encode_conf_change(ConfChange | ConfChangeV2); see confchange_codec.
    CONF_CHANGE = 1


class ConfChangeType(enum.IntEnum):
    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


class StateType(enum.IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


@dataclass(slots=True)
class Entry:
    """One log entry.  ``data`` is opaque to Raft except for conf-change entries."""

    term: int = 0
    index: int = 0
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(slots=True)
class HardState:
    """The state that must be durable before any message depending on it is sent."""

    term: int = 0
    vote: int = 0
    commit: int = 0


@dataclass(slots=True)
class ConfState:
    """Membership.  ``voters_outgoing`` is non-empty only in a joint configuration."""

    voters: list[int] = field(default_factory=list)
    learners: list[int] = field(default_factory=list)
    voters_outgoing: list[int] = field(default_factory=list)
    learners_next: list[int] = field(default_factory=list)
    auto_leave: bool = False


@dataclass(slots=True)
class SnapshotMetadata:
    conf_state: ConfState = field(default_factory=ConfState)
    index: int = 0
    term: int = 0


@dataclass(slots=True)
class Snapshot:
    data: bytes = b""
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)

    def is_empty(self) -> bool:
        return self.metadata.index == 0


@dataclass(slots=True)
class Message:
    """A Raft message.  ``from_`` is spelled with an underscore because ``from`` is a keyword."""

    type: MessageType
    to: int = 0
    from_: int = 0
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


@dataclass(slots=True)
class ConfChange:
    """A single membership change (etcd's ConfChange / ConfChangeSingle)."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""


@dataclass(slots=True)
class ConfChangeV2:
    """Several changes applied atomically.

    ``transition``: 0 auto (simple if one change, else joint with auto-leave), 1 joint implicit
    (auto-leave), 2 joint explicit (the application proposes an empty ConfChangeV2 to leave).
    An empty ``changes`` list means "leave the joint configuration".
    """

    changes: list[ConfChange] = field(default_factory=list)
    transition: int = 0
    context: bytes = b""


@dataclass(slots=True)
class ReadState:
    """A linearizable read may be served once ``applied >= index``; matched by request_ctx."""

    index: int
    request_ctx: bytes


@dataclass(slots=True)
class SoftState:
    """Volatile state, reported in a Ready only when it changed; never persisted."""

    lead: int
    raft_state: StateType
