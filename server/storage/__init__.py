"""coord.server.storage: the WAL, snapshot files and durable Raft storage."""

from __future__ import annotations

from .durable import DurableStorage, StorageError
from .wal import WAL, WALCorruptError, WALState

__all__ = ["DurableStorage", "StorageError", "WAL", "WALCorruptError", "WALState"]
