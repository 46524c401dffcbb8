"""The operations a store has done, counted for ``/metrics`` (server/metrics.py)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OpCounts"]


@dataclass
class OpCounts:
    """Operations this member's store has done: etcd's ``etcd_mvcc_range_total``, ``_put_``,
    ``_delete_`` and ``_txn_total`` (a txn counts when it did more than one operation, as etcd's
    metricsTxnWrite.End counts it). The state machine carries them over when a snapshot replaces
    the store."""

    ranges: int = 0
    puts: int = 0
    deletes: int = 0
    txns: int = 0

    def total(self) -> int:
        return self.ranges + self.puts + self.deletes
