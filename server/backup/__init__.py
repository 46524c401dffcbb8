"""Backups: etcd-format (bbolt) snapshots, restore and status."""

__all__: list[str] = []
