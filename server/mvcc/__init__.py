"""The MVCC key-value store: revisions, history, compaction, and pre-encoded responses."""

from .index import KeyVersion
from .store import KVStore

__all__ = ["KVStore", "KeyVersion"]
