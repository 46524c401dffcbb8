"""Write-ahead log: the durable Raft log, hard state and snapshot markers.

Theory of operation
-------------------
The WAL is a directory of *segment* files named ``<seq:016x>-<first_index:016x>.wal``.  Every
segment starts with the 8-byte :data:`SEGMENT_MAGIC` (``CWAL`` and a u32 format version) and
continues with a sequence of records::

    u32 length | u8 type | u32 crc32(payload) | u32 crc32(length + type + payload crc) | payload

(big-endian).  The header has its own checksum, so a damaged length field is detected before
the length is trusted (architecture rule 10: checksums cover lengths too).  Record
types: METADATA (msgpack map with member and cluster id; the first record of every segment),
ENTRY (one msgpack :class:`Entry`), HARD_STATE, SNAPSHOT (msgpack ``[index, term, replace]``
marker written when a snapshot file has been saved).

Writes are batched: :meth:`WAL.save` encodes a whole Ready (entries then hard state) into one
buffer, issues one ``write`` and, when asked to sync, one ``fsync`` (group commit).  When the
active segment grows past ``segment_bytes`` a new one is cut (its first records repeat the
metadata and the last hard state so every segment is self-describing); a segment is written
under a temporary name, fsynced and renamed, so it never exists without its header.  An fsync
slower than :data:`WARN_SYNC_DURATION` (100 ms) is logged as etcd's ``slow fdatasync``
WARNING (``took``, ``expected-duration``); a ``walBeforeSync`` sleep failpoint counts as part
of the fsync, so the warning can be provoked on purpose.

Recovery (:meth:`WAL.open`) reads the segments in order and replays them: an ENTRY with index
``i`` discards every earlier-read entry ``>= i`` (Raft overwrote a conflicting suffix), the last
HARD_STATE wins.  Only a *torn tail* -- the end of the last segment, where a crash cut the last
write short -- is cut off (the file is truncated and fsynced, and the cut logged).  A tail is
torn when the bytes after the last good record are absent or zero: an incomplete header; a
header whose checksum verifies but whose payload runs past the end of the file; or a record
that fails its checksum because it ends in unwritten (zero) disk sectors -- a zero run that
starts at a 512-byte sector boundary inside the record, as etcd's ``isTornEntry`` tests -- with
nothing but zeros after it.  Anything else -- a checksum mismatch with data after it, a damaged
header anywhere, an undecodable record, any damage in a segment that is not the last, or a
segment without the magic (an older format, which is refused rather than misread) -- means
acknowledged data may be lost, so :class:`WALCorruptError` is raised naming the file and byte
offset and the server refuses to start.

:meth:`WAL.release_before` deletes whole segments whose entries all precede a snapshot's
compaction point; the active segment is never deleted.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from coord.server import failpoints, raftcodec
from coord.server.raft.types import Entry, HardState

from .diskstats import DiskStats
from .fileutil import fsync_dir, make_dirs

__all__ = [
    "HEADER_SIZE",
    "SEGMENT_MAGIC",
    "WAL",
    "WALCorruptError",
    "WALState",
    "RecordType",
    "fsync_dir",
    "list_segments",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
SEGMENT_MAGIC = b"CWAL" + FORMAT_VERSION.to_bytes(4, "big")
_HEADER = struct.Struct(">IBII")
_CHECKED = 9  # header bytes covered by the header checksum (length, type, payload crc)
HEADER_SIZE = _HEADER.size
MAX_RECORD = 512 * 1024 * 1024
#: An fsync slower than this is a WARNING (etcd's warnSyncDuration).
WARN_SYNC_DURATION = 0.1
SECTOR = 512  # the unit a crash can leave unwritten (etcd's minSectorSize)
_OLD_HEADER = struct.Struct(">IBI")  # format 1: length | type | crc32(type + payload)


class RecordType:
    """Record type bytes."""

    METADATA = 1
    ENTRY = 2
    HARD_STATE = 3
    SNAPSHOT = 4


_VALID_TYPES = {RecordType.METADATA, RecordType.ENTRY, RecordType.HARD_STATE, RecordType.SNAPSHOT}


class WALCorruptError(Exception):
    """A WAL record before the tail is damaged; the message names the file and offset."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(
            f"WAL corrupt: {path} at offset {offset}: {reason}; refusing to start "
            f"(acknowledged data could be lost; restore this member from a peer, or a lone "
            f"member from a backup with coord-server snapshot restore)"
        )
        self.path = path
        self.offset = offset


@dataclass
class WALState:
    """What :meth:`WAL.open` recovered."""

    metadata: dict[str, int] = field(default_factory=dict)
    hard_state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)
    snapshot_index: int = 0
    snapshot_term: int = 0
    truncated_tail: int = 0  # bytes cut off the last segment (0 when clean)


def _record(rtype: int, payload: bytes) -> bytes:
    head = _HEADER.pack(len(payload), rtype, zlib.crc32(payload), 0)[:_CHECKED]
    return head + zlib.crc32(head).to_bytes(4, "big") + payload


def _looks_like_format_1(data: bytes) -> bool:
    """True when ``data`` starts with a valid format-1 METADATA record."""
    if len(data) < _OLD_HEADER.size:
        return False
    length, rtype, crc = _OLD_HEADER.unpack_from(data)
    length, rtype, crc = int(length), int(rtype), int(crc)
    body = data[_OLD_HEADER.size : _OLD_HEADER.size + length]
    return (
        rtype == RecordType.METADATA
        and len(body) == length
        and zlib.crc32(body, zlib.crc32(bytes((rtype,)))) == crc
    )


def _segment_name(seq: int, index: int) -> str:
    return f"{seq:016x}-{index:016x}.wal"


def _parse_name(name: str) -> tuple[int, int] | None:
    if not name.endswith(".wal"):
        return None
    try:
        seq_s, idx_s = name[:-4].split("-")
        return int(seq_s, 16), int(idx_s, 16)
    except ValueError:
        return None


def list_segments(dir_: Path) -> list[tuple[int, int, Path]]:
    """Segments in ``dir_`` as ``(seq, first_index, path)`` sorted by seq."""
    out = []
    for p in dir_.iterdir():
        parsed = _parse_name(p.name)
        if parsed is not None:
            out.append((parsed[0], parsed[1], p))
    out.sort()
    return out


class WAL:
    """An open write-ahead log (append-only; see the module docstring)."""

    def __init__(self, dir_: Path, metadata: dict[str, int], segment_bytes: int) -> None:
        self.dir = dir_
        self.metadata = dict(metadata)
        self.segment_bytes = segment_bytes
        self._enc = msgspec.msgpack.Encoder()
        self._fd = -1
        self._seq = 0
        self._size = 0
        self._last_index = 0
        self._hard_state = HardState()
        self.stats = DiskStats()  # fsync latencies and bytes written (/metrics)
        # (seq, first_index, path, last_index_written) for every live segment
        self._segments: list[list[object]] = []

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def exists(cls, dir_: Path) -> bool:
        """True when ``dir_`` holds at least one segment."""
        return dir_.is_dir() and bool(list_segments(dir_))

    @classmethod
    def create(
        cls, dir_: Path, metadata: dict[str, int], segment_bytes: int = 64 * 1024 * 1024
    ) -> WAL:
        """Create a new WAL in ``dir_`` (which must not hold segments yet); ``dir_`` and every
        directory created for it are fsynced."""
        make_dirs(dir_)
        if list_segments(dir_):
            raise FileExistsError(f"WAL already exists in {dir_}")
        wal = cls(dir_, metadata, segment_bytes)
        wal._open_segment(seq=0, first_index=1)
        fsync_dir(dir_)
        return wal

    @classmethod
    def open(cls, dir_: Path, segment_bytes: int = 64 * 1024 * 1024) -> tuple[WAL, WALState]:
        """Recover the WAL in ``dir_`` and open it for appending.

        Raises:
            WALCorruptError: a record before the tail is damaged.
            FileNotFoundError: there is no WAL in ``dir_``.
        """
        segs = list_segments(dir_) if dir_.is_dir() else []
        if not segs:
            raise FileNotFoundError(f"no WAL segments in {dir_}")
        state = WALState()
        wal = cls(dir_, {}, segment_bytes)
        for k, (seq, first_index, path) in enumerate(segs):
            last = k == len(segs) - 1
            wal._replay_segment(path, state, is_last=last)
            wal._segments.append(
                [seq, first_index, path, state.entries[-1].index if state.entries else 0]
            )
        wal.metadata = dict(state.metadata)
        wal._hard_state = state.hard_state
        wal._last_index = state.entries[-1].index if state.entries else state.snapshot_index
        seq, _first, path = segs[-1]
        wal._seq = seq
        wal._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        wal._size = os.fstat(wal._fd).st_size
        return wal, state

    def _replay_segment(self, path: Path, state: WALState, is_last: bool) -> None:
        data = path.read_bytes()
        if data[: len(SEGMENT_MAGIC)] != SEGMENT_MAGIC:
            if _looks_like_format_1(data):
                raise WALCorruptError(
                    path,
                    0,
                    "older WAL format (record lengths without a "
                    "checksum), which this version cannot read safely",
                )
            raise WALCorruptError(
                path,
                0,
                f"not a coord WAL segment (magic "
                f"{data[: len(SEGMENT_MAGIC)]!r}, want {SEGMENT_MAGIC!r})",
            )
        off = len(SEGMENT_MAGIC)
        n = len(data)
        while off < n:
            bad, torn_if_zero_from = self._check_record(data, off)
            if bad is not None:
                if not is_last:
                    torn = False
                elif torn_if_zero_from is None:
                    torn = True  # the rest of the record is absent: the file ends inside it
                else:
                    # Unwritten sectors read as zeros: the zero run at the end of the file must
                    # begin at (or before) a sector boundary inside the damaged part.
                    zeros_from = len(data.rstrip(b"\0"))
                    first_zero_sector = -(-zeros_from // SECTOR) * SECTOR
                    torn = zeros_from <= off or first_zero_sector < torn_if_zero_from
                if not torn:
                    raise WALCorruptError(path, off, bad)
                log.warning(
                    "WAL %s: torn tail at offset %d (%s): truncating %d bytes",
                    path,
                    off,
                    bad,
                    n - off,
                )
                state.truncated_tail = n - off
                with open(path, "r+b") as f:
                    f.truncate(off)
                    f.flush()
                    os.fsync(f.fileno())
                return
            length, rtype, _crc, _hcrc = _HEADER.unpack_from(data, off)
            end = off + HEADER_SIZE + length
            try:
                self._apply_record(rtype, data[off + HEADER_SIZE : end], state)
            except WALCorruptError:
                raise
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
                raise WALCorruptError(path, off, f"undecodable record: {e}") from e
            off = end

    @staticmethod
    def _check_record(data: bytes, off: int) -> tuple[str | None, int | None]:
        """Check the record at ``off``: ``(None, None)`` when it is good, else ``(reason,
        limit)``: at the end of the last segment the damage is a torn write when ``limit`` is
        None (the file ends inside the record), or when the file is zero from a sector boundary
        before ``limit`` on."""
        n = len(data)
        if n - off < HEADER_SIZE:
            return "incomplete record header", None
        length, rtype, crc, hcrc = _HEADER.unpack_from(data, off)
        if zlib.crc32(data[off : off + _CHECKED]) != hcrc:
            return "record header checksum mismatch", off + HEADER_SIZE
        if length > MAX_RECORD or rtype not in _VALID_TYPES:
            return f"bad record header (length {length}, type {rtype})", off  # never torn
        end = off + HEADER_SIZE + length
        if end > n:
            return f"incomplete record ({n - off - HEADER_SIZE} of {length} payload bytes)", None
        if zlib.crc32(data[off + HEADER_SIZE : end]) != crc:
            return "CRC mismatch", end
        return None, None

    def _apply_record(self, rtype: int, payload: bytes, state: WALState) -> None:
        if rtype == RecordType.ENTRY:
            e = raftcodec.decode_entry(payload)
            ents = state.entries
            if ents and e.index <= ents[-1].index:
                first = ents[0].index
                del ents[max(0, e.index - first) :]
            if ents and e.index != ents[-1].index + 1:
                raise ValueError(f"entry {e.index} does not follow {ents[-1].index}")
            ents.append(e)
        elif rtype == RecordType.HARD_STATE:
            state.hard_state = raftcodec.decode_hard_state(payload)
        elif rtype == RecordType.SNAPSHOT:
            index, term, replace = msgspec.msgpack.decode(payload, type=tuple[int, int, bool])
            state.snapshot_index, state.snapshot_term = index, term
            # Entries at or before a snapshot are not needed any more; a snapshot received from
            # the leader replaces the whole log.
            state.entries[:] = [] if replace else [e for e in state.entries if e.index > index]
        elif rtype == RecordType.METADATA:
            md = msgspec.msgpack.decode(payload, type=dict[str, int])
            if state.metadata and md != state.metadata:
                raise ValueError(f"metadata {md} differs from {state.metadata}")
            state.metadata = md

    # -- writing -------------------------------------------------------------------------------

    def _open_segment(self, seq: int, first_index: int) -> None:
        path = self.dir / _segment_name(seq, first_index)
        tmp = path.with_suffix(".tmp")
        buf = SEGMENT_MAGIC + _record(RecordType.METADATA, self._enc.encode(self.metadata))
        if self._hard_state != HardState():
            buf += _record(RecordType.HARD_STATE, self._enc.encode(self._hard_state))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, buf)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._seq = seq
        self._size = len(buf)
        self._segments.append([seq, first_index, path, first_index - 1])

    def save(self, hard_state: HardState | None, entries: list[Entry], sync: bool = True) -> None:
        """Append ``entries`` then ``hard_state`` as one write; fsync once when ``sync``."""
        parts = [_record(RecordType.ENTRY, self._enc.encode(e)) for e in entries]
        if hard_state is not None and hard_state != self._hard_state:
            parts.append(_record(RecordType.HARD_STATE, self._enc.encode(hard_state)))
            self._hard_state = HardState(hard_state.term, hard_state.vote, hard_state.commit)
        if not parts:
            return
        buf = b"".join(parts)
        if failpoints.ACTIVE:
            failpoints.hit("walBeforeWrite")
        self._write_all(buf)
        if entries:
            self._last_index = entries[-1].index
            self._segments[-1][3] = self._last_index
        if sync:
            start = time.monotonic()  # a sleep failpoint here counts as a slow disk
            if failpoints.ACTIVE:
                failpoints.hit("walBeforeSync")
            os.fsync(self._fd)
            self._warn_if_slow(start)
            if failpoints.ACTIVE:
                failpoints.hit("walAfterSync")
        if self._size >= self.segment_bytes:
            self._cut()

    def save_snapshot(
        self, index: int, term: int, replace_log: bool = False, sync: bool = True
    ) -> None:
        """Record that a snapshot file for ``index``/``term`` has been saved.

        ``replace_log`` is true for a snapshot received from the leader: it replaces the whole
        log (recovery then forgets every earlier entry, even ones after ``index``).
        """
        payload = self._enc.encode((index, term, replace_log))
        self._write_all(_record(RecordType.SNAPSHOT, payload))
        if sync:
            start = time.monotonic()
            os.fsync(self._fd)
            self._warn_if_slow(start)
        if replace_log or index > self._last_index:
            self._last_index = index

    def _warn_if_slow(self, start: float) -> None:
        """etcd's "slow fdatasync" warning: an fsync that took over WARN_SYNC_DURATION (a disk
        this slow delays every commit, and heartbeats behind it)."""
        took = time.monotonic() - start
        self.stats.fsync.observe(took)
        if took > WARN_SYNC_DURATION:
            log.warning(
                "slow fdatasync: took %.0fms, expected-duration %.0fms (WAL %s)",
                took * 1000,
                WARN_SYNC_DURATION * 1000,
                self.dir,
            )

    def _write_all(self, buf: bytes) -> None:
        view = memoryview(buf)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(buf)
        self.stats.written += len(buf)

    def _cut(self) -> None:
        os.fsync(self._fd)
        self._open_segment(self._seq + 1, self._last_index + 1)
        fsync_dir(self.dir)

    def release_before(self, index: int) -> int:
        """Delete segments whose entries are all ``< index`` (never the active one).

        Returns the number of segments deleted.
        """
        removed = 0
        while len(self._segments) > 1:
            _seq, _first, path, _last = self._segments[0]
            nxt_first = int(self._segments[1][1])  # type: ignore[call-overload]
            if nxt_first - 1 >= index:
                break
            os.unlink(path)  # type: ignore[arg-type]
            self._segments.pop(0)
            removed += 1
        if removed:
            fsync_dir(self.dir)
        return removed

    def segment_count(self) -> int:
        """Number of live segment files."""
        return len(self._segments)

    def close(self) -> None:
        """Close the active segment (data already written stays; unsynced data may be lost)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
