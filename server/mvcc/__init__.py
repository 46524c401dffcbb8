"""The MVCC key-value store: revisions, history, compaction, and pre-encoded responses."""

from .index import KeyVersion
from .opcounts import OpCounts
from .store import KVStore

__all__ = ["KVStore", "KeyVersion", "OpCounts"]
