"""The MVCC key-value store: revisions, history, compaction, and pre-encoded responses."""

from .store import KeyVersion, KVStore

__all__ = ["KVStore", "KeyVersion"]
