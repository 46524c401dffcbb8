"""Durable Raft storage: the raft Storage protocol backed by the WAL and snapshot files.

Theory of operation
-------------------
Raft reads its stable log through the :class:`~coord.server.raft.storage.Storage` protocol; the
read side here *is* a :class:`MemoryStorage` (entries since the last compaction point are kept
in memory, which ``--snapshot-count`` bounds).  Every mutation goes to disk first:

* :meth:`DurableStorage.write` appends a Ready's entries and hard state to the WAL with one
  write and (when ``sync``) one fsync, and for an incoming snapshot saves the snapshot file and a
  WAL marker.  It touches no in-memory state, so the node driver runs it in a worker thread
  while the event loop keeps serving.
* :meth:`DurableStorage.commit` then applies the same changes to the in-memory view (in the
  event-loop thread) before the driver calls ``RawNode.advance``.
* :meth:`snapshot_and_compact` records a snapshot of the applied state machine (snapshot file
  + WAL marker, written in a worker thread; failpoints ``raftBeforeSaveSnap`` and
  ``raftAfterSaveSnap`` around them), then compacts the in-memory log and deletes WAL
  segments that lie entirely behind ``index - catch_up_entries`` (entries kept so slow
  followers can catch up from the log instead of a snapshot).

Creation (:meth:`DurableStorage.create`, used for a new cluster's bootstrap and for a member
joining an existing one) is atomic: the whole member directory -- the WAL with its metadata,
the bootstrap entries and hard state, the empty snapshot directory -- is prepared in
``<data-dir>/member.tmp``, every file and directory in it is fsynced, it is renamed to
``<data-dir>/member`` and the data directory is fsynced.  A crash at any point leaves either a
complete ``member/`` or none (a leftover ``member.tmp`` is deleted by the next creation), so
"``member/`` exists" is what tells a restart from a bootstrap (:meth:`exists`).  Failpoints
``bootstrapBeforeSave`` (WAL created, entries not yet saved) and ``bootstrapBeforeRename``
(everything prepared, not yet renamed) sit inside this preparation.

Recovery (:meth:`DurableStorage.open`) loads the newest valid snapshot file, replays the WAL
(torn tail truncated, corruption refused: see :mod:`.wal`) and rebuilds the in-memory view.  A
state that cannot have been written by a correct member -- the WAL missing, entries missing
between the snapshot and the WAL, a hard state committing entries the log does not have -- is
a :class:`StorageError` (the server refuses to start), never repaired silently.
The directory layout is etcd's: ``<data-dir>/member/wal`` and ``<data-dir>/member/snap``.
The caller locks the data directory first (:func:`.fileutil.lock_data_dir`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import anyio.to_thread

from coord.server import failpoints
from coord.server.raft.errors import CompactedError, SnapshotOutOfDateError
from coord.server.raft.storage import MemoryStorage
from coord.server.raft.types import ConfState, Entry, HardState, Snapshot

from . import snapfile
from .fileutil import StorageError, fsync_dir, make_dirs
from .wal import WAL, WALCorruptError, WALState

__all__ = ["DurableStorage", "StorageError"]

log = logging.getLogger(__name__)


class DurableStorage(MemoryStorage):
    """WAL + snapshot-file backed Raft storage (see the module docstring)."""

    def __init__(self, data_dir: Path, wal: WAL) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.wal = wal
        self.snap_dir = data_dir / "member" / "snap"

    # -- construction --------------------------------------------------------------------------

    @staticmethod
    def wal_dir(data_dir: Path) -> Path:
        """Where the WAL segments of ``data_dir`` live."""
        return data_dir / "member" / "wal"

    @classmethod
    def exists(cls, data_dir: Path) -> bool:
        """True when ``data_dir`` holds a member directory (a restart, not a bootstrap)."""
        return (data_dir / "member").exists()

    @classmethod
    def create(
        cls,
        data_dir: Path,
        metadata: dict[str, int],
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        segment_bytes: int = 64 * 1024 * 1024,
        snapshot: Snapshot | None = None,
    ) -> DurableStorage:
        """Atomically create the member directory in ``data_dir`` (see the module docstring)
        with WAL ``metadata`` (member/cluster id), ``entries`` and ``hard_state``, and open it.
        ``snapshot`` (a restored backup) starts the log: its file and WAL marker come first.

        Raises:
            FileExistsError: ``data_dir`` already holds a member directory.
        """
        member = data_dir / "member"
        if member.exists():
            raise FileExistsError(f"{member} already exists")
        make_dirs(data_dir)
        tmp = data_dir / "member.tmp"
        if tmp.exists():
            log.warning("removing %s left by an interrupted bootstrap", tmp)
            shutil.rmtree(tmp)
        tmp.mkdir()
        wal = WAL.create(tmp / "wal", metadata, segment_bytes)  # fsyncs tmp/wal and tmp
        try:
            if snapshot is not None:
                snapfile.save(tmp / "snap", snapshot)  # creates tmp/snap durably
                wal.save_snapshot(snapshot.metadata.index, snapshot.metadata.term, sync=False)
            else:
                (tmp / "snap").mkdir()
                fsync_dir(tmp / "snap")
            if failpoints.ACTIVE:
                failpoints.hit("bootstrapBeforeSave")
            wal.save(hard_state, list(entries), sync=True)
        finally:
            wal.close()
        fsync_dir(tmp)
        if failpoints.ACTIVE:
            failpoints.hit("bootstrapBeforeRename")
        os.rename(tmp, member)
        fsync_dir(data_dir)
        return cls.open(data_dir, segment_bytes)

    @classmethod
    def open(cls, data_dir: Path, segment_bytes: int = 64 * 1024 * 1024) -> DurableStorage:
        """Recover storage from ``data_dir``.

        Raises:
            StorageError: there is no WAL, the WAL is corrupt before its tail, entries are
                missing between the newest snapshot and the WAL, or the hard state commits
                entries the log does not have.
        """
        snap = snapfile.load_newest(data_dir / "member" / "snap")
        if not WAL.exists(cls.wal_dir(data_dir)):
            raise StorageError(f"{cls.wal_dir(data_dir)}: no WAL in the member directory")
        try:
            wal, state = WAL.open(cls.wal_dir(data_dir), segment_bytes)
        except WALCorruptError as e:
            raise StorageError(str(e)) from e
        st = cls(data_dir, wal)
        try:
            hs = st._recover(snap, state)
        except StorageError:
            wal.close()
            raise
        st.set_hard_state(hs)
        log.info(
            "recovered storage from %s: snapshot %d, entries %d..%d, %s%s",
            data_dir,
            st.snapshot().metadata.index,
            st.first_index(),
            st.last_index(),
            hs,
            f", truncated torn WAL tail of {state.truncated_tail} bytes"
            if state.truncated_tail
            else "",
        )
        return st

    def _recover(self, snap: Snapshot | None, state: WALState) -> HardState:
        """Rebuild the in-memory view from ``snap`` and the WAL ``state``; return the hard
        state to use (StorageError when the two cannot belong to one correct member)."""
        snap_index = snap.metadata.index if snap is not None else 0
        if state.snapshot_index > snap_index:
            raise StorageError(
                f"{self.snap_dir}: the WAL references snapshot {state.snapshot_index} but the "
                f"newest readable snapshot file is at index {snap_index}"
            )
        ents = [e for e in state.entries if e.index > snap_index]
        if ents and ents[0].index != snap_index + 1:
            raise StorageError(
                f"{self.wal_dir(self.data_dir)}: entries {snap_index + 1}..{ents[0].index - 1} are "
                f"missing (snapshot at {snap_index})"
            )
        hs = replace(state.hard_state)
        if snap is not None:
            self.apply_snapshot(snap)
            if hs.commit < snap_index:
                hs.commit = snap_index
            if hs.term < snap.metadata.term:
                hs = HardState(term=snap.metadata.term, vote=0, commit=hs.commit)
        self.append(ents)
        if hs.commit > self.last_index():
            raise StorageError(
                f"{self.data_dir}: impossible state: hard state commit {hs.commit} is beyond "
                f"the last index {self.last_index()} of the log (snapshot {snap_index}); refusing "
                f"to start (restore this member from a peer, or a lone member from a backup with "
                f"coord-server snapshot restore)"
            )
        return hs

    @property
    def metadata(self) -> dict[str, int]:
        """The WAL metadata (``member_id``, ``cluster_id``)."""
        return self.wal.metadata

    # -- persistence -----------------------------------------------------------------------

    def write(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None = None,
        sync: bool = True,
    ) -> None:
        """Make a Ready durable (disk only; safe to run in a worker thread)."""
        if snapshot is not None and not snapshot.is_empty():
            snapfile.save(self.snap_dir, snapshot)
            self.wal.save_snapshot(
                snapshot.metadata.index, snapshot.metadata.term, replace_log=True, sync=False
            )
        self.wal.save(hard_state, entries, sync=sync or snapshot is not None)

    def commit(
        self, hard_state: HardState | None, entries: list[Entry], snapshot: Snapshot | None = None
    ) -> None:
        """Apply a Ready already made durable by :meth:`write` to the in-memory view."""
        if snapshot is not None and not snapshot.is_empty():
            try:
                self.apply_snapshot(snapshot)
            except SnapshotOutOfDateError:
                log.warning("ignoring out-of-date snapshot %d", snapshot.metadata.index)
        if entries:
            self.append(entries)
        if hard_state is not None:
            self.set_hard_state(hard_state)

    def save(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None = None,
        sync: bool = True,
    ) -> None:
        """:meth:`write` then :meth:`commit` (single-threaded callers and tests)."""
        self.write(hard_state, entries, snapshot, sync)
        self.commit(hard_state, entries, snapshot)

    async def snapshot_and_compact(
        self, index: int, conf_state: ConfState, data: bytes, catch_up_entries: int
    ) -> Snapshot:
        """Save a snapshot of the applied state at ``index`` and compact the log behind it.

        The in-memory view (snapshot record, compaction) changes in the caller's thread, the
        event loop's, where Raft reads it; the files are written in a worker thread."""
        snap = self.create_snapshot(index, conf_state, data)
        await anyio.to_thread.run_sync(self._save_snapshot, snap)
        compact_index = index - catch_up_entries
        if compact_index > self.first_index():
            try:
                self.compact(compact_index)
            except CompactedError:
                pass
            await anyio.to_thread.run_sync(self.wal.release_before, self.first_index())
        return snap

    def _save_snapshot(self, snap: Snapshot) -> None:
        """Snapshot file + WAL marker, then old snapshot files purged (no in-memory state)."""
        if failpoints.ACTIVE:
            failpoints.hit("raftBeforeSaveSnap")
        snapfile.save(self.snap_dir, snap)
        self.wal.save_snapshot(snap.metadata.index, snap.metadata.term)
        if failpoints.ACTIVE:
            failpoints.hit("raftAfterSaveSnap")
        snapfile.purge(self.snap_dir, keep=2)

    def close(self) -> None:
        """Close the WAL."""
        self.wal.close()
