"""coord.server.raft: a pure (sans-IO) Raft consensus core in the style of etcd-io/raft."""

from __future__ import annotations

from .confchange import ConfChangeError
from .confchange_codec import decode_conf_change, encode_conf_change
from .config import RaftConfig
from .errors import (
    CompactedError,
    ProposalDropped,
    RaftError,
    SnapshotOutOfDateError,
    SnapshotTemporarilyUnavailable,
    UnavailableError,
)
from .progress import Progress, ProgressState
from .rawnode import RawNode, Ready, Status
from .storage import MemoryStorage, Storage
from .types import (
    ConfChange,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateType,
)

__all__ = [
    "CompactedError",
    "ConfChange",
    "ConfChangeError",
    "ConfChangeType",
    "ConfChangeV2",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "Progress",
    "ProgressState",
    "ProposalDropped",
    "RaftConfig",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotOutOfDateError",
    "SnapshotTemporarilyUnavailable",
    "SoftState",
    "StateType",
    "Status",
    "Storage",
    "UnavailableError",
    "decode_conf_change",
    "encode_conf_change",
]
