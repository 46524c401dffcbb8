"""WAL, snapshot-file and DurableStorage tests: round trips, torn tails, corruption, compaction."""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

import anyio
import msgspec
import pytest

from coord.server.raft.errors import CompactedError
from coord.server.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from coord.server.storage import WAL, DurableStorage, StorageError, WALCorruptError, snapfile
from coord.server.storage import wal as walmod
from coord.server.storage.fileutil import lock_data_dir
from coord.server.storage.wal import HEADER_SIZE, list_segments

MD = {"member_id": 7, "cluster_id": 9}


def ents(lo: int, hi: int, term: int = 1, size: int = 10) -> list[Entry]:
    return [Entry(term=term, index=i, data=bytes([i % 256]) * size) for i in range(lo, hi + 1)]


def test_round_trip_and_overwrite(tmp_path: Path) -> None:
    wal = WAL.create(tmp_path, MD)
    wal.save(HardState(1, 1, 0), ents(1, 5))
    wal.save(HardState(2, 2, 3), ents(4, 6, term=2))  # conflicting suffix 4..5 replaced
    wal.close()
    wal2, st = WAL.open(tmp_path)
    wal2.close()
    assert st.metadata == MD
    assert st.hard_state == HardState(2, 2, 3)
    assert [(e.index, e.term) for e in st.entries] == [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 2),
        (5, 2),
        (6, 2),
    ]
    assert st.truncated_tail == 0


def _last_segment(dir_: Path) -> Path:
    return list_segments(dir_)[-1][2]


@pytest.mark.parametrize("cut", [1, HEADER_SIZE - 1, HEADER_SIZE + 3])
def test_torn_tail_is_truncated(tmp_path: Path, cut: int) -> None:
    wal = WAL.create(tmp_path, MD)
    wal.save(HardState(1, 1, 2), ents(1, 3))
    before = _last_segment(tmp_path).stat().st_size
    wal.save(None, ents(4, 4))
    wal.close()
    seg = _last_segment(tmp_path)
    assert seg.stat().st_size > before + cut
    with open(seg, "r+b") as f:  # cut the last record somewhere inside it
        f.truncate(before + cut)
    _, st = WAL.open(tmp_path)
    assert [e.index for e in st.entries] == [1, 2, 3]
    assert st.truncated_tail > 0
    # the file was truncated: a second open is clean
    _, st2 = WAL.open(tmp_path)
    assert st2.truncated_tail == 0
    assert [e.index for e in st2.entries] == [1, 2, 3]


def test_torn_tail_zero_filled(tmp_path: Path) -> None:
    wal = WAL.create(tmp_path, MD)
    wal.save(HardState(1, 1, 2), ents(1, 3))
    wal.close()
    seg = _last_segment(tmp_path)
    with open(seg, "ab") as f:
        f.write(b"\0" * 4096)
    _, st = WAL.open(tmp_path)
    assert [e.index for e in st.entries] == [1, 2, 3]
    assert st.truncated_tail == 4096


def test_damaged_last_record_refuses(tmp_path: Path) -> None:
    """A flipped byte in the last record is damage, not a torn write: nothing is cut."""
    wal = WAL.create(tmp_path, MD)
    wal.save(HardState(1, 1, 2), ents(1, 3))
    wal.close()
    seg = _last_segment(tmp_path)
    data = bytearray(seg.read_bytes())
    data[-2] ^= 0xFF  # inside the last record's payload
    seg.write_bytes(bytes(data))
    with pytest.raises(WALCorruptError, match="CRC mismatch"):
        WAL.open(tmp_path)
    assert seg.read_bytes() == bytes(data)


def test_torn_last_record_with_unwritten_sector(tmp_path: Path) -> None:
    """A crash can leave a record's last sector unwritten (zeros): that is a torn tail."""
    wal = WAL.create(tmp_path, MD)
    wal.save(HardState(1, 1, 2), ents(1, 3))
    before = _last_segment(tmp_path).stat().st_size
    wal.save(None, ents(4, 4, size=2000))
    wal.close()
    seg = _last_segment(tmp_path)
    data = bytearray(seg.read_bytes())
    sector = (before // 512 + 2) * 512  # a sector boundary inside the last record
    assert before < sector < len(data)
    data[sector:] = bytes(len(data) - sector)
    seg.write_bytes(bytes(data))
    _, st = WAL.open(tmp_path)
    assert [e.index for e in st.entries] == [1, 2, 3]
    assert st.truncated_tail == len(data) - before
    assert seg.stat().st_size == before


def test_torn_header_across_a_sector_boundary(tmp_path: Path) -> None:
    """A header cut by an unwritten sector (zeros from the boundary on) is a torn tail; the
    same damage with data written after it is corruption."""
    wal = WAL.create(tmp_path, MD)
    wal.save(HardState(1, 1, 1), ents(1, 1))
    seg = _last_segment(tmp_path)
    start = seg.stat().st_size
    boundary = (start // 512 + 2) * 512
    size = next(
        n
        for n in range(600, 1200)  # entry 2 ends 5 bytes before the boundary
        if start + HEADER_SIZE + len(msgspec.msgpack.encode(ents(2, 2, size=n)[0])) == boundary - 5
    )
    wal.save(None, ents(2, 2, size=size))
    wal.save(None, ents(3, 4, size=700))
    wal.close()
    good = bytearray(seg.read_bytes())
    torn = good[:boundary] + bytes(len(good) - boundary)
    seg.write_bytes(bytes(torn))
    _, st = WAL.open(tmp_path)
    assert [e.index for e in st.entries] == [1, 2]
    assert seg.stat().st_size == boundary - 5
    damaged = good[:boundary] + bytes(200) + good[boundary + 200 :]  # later bytes written
    seg.write_bytes(bytes(damaged))
    with pytest.raises(WALCorruptError, match="header checksum") as ei:
        WAL.open(tmp_path)
    assert ei.value.offset == boundary - 5


def record_offsets(seg: Path) -> list[int]:
    """Byte offsets of the records in a segment (the length is the first u32 of a header)."""
    data = seg.read_bytes()
    off = len(getattr(walmod, "SEGMENT_MAGIC", b""))
    out = []
    while off < len(data):
        out.append(off)
        (length,) = struct.unpack_from(">I", data, off)
        off += HEADER_SIZE + length
    return out


@pytest.mark.parametrize("bit", [16, 2, 0], ids=["past-eof", "inside-file", "shorter"])
def test_flipped_length_bit_refuses(tmp_path: Path, bit: int) -> None:
    """Bug 5: a flipped bit in a record's length field is corruption, never a torn tail."""
    wal = WAL.create(tmp_path, MD)
    for i in range(1, 21):
        wal.save(HardState(1, 1, i), ents(i, i, size=100))
    wal.close()
    seg = _last_segment(tmp_path)
    offsets = record_offsets(seg)
    victim = offsets[len(offsets) // 2]
    data = bytearray(seg.read_bytes())
    (length,) = struct.unpack_from(">I", data, victim)
    struct.pack_into(">I", data, victim, length ^ (1 << bit))
    seg.write_bytes(bytes(data))
    with pytest.raises(WALCorruptError) as ei:
        WAL.open(tmp_path)
    assert ei.value.path == seg
    assert ei.value.offset == victim
    assert f"{seg} at offset {victim}" in str(ei.value)
    assert seg.read_bytes() == bytes(data)  # nothing truncated


def test_old_format_wal_is_refused(tmp_path: Path) -> None:
    """A segment in the format before the length was checksummed is refused, not truncated."""
    old = struct.Struct(">IBI")

    def rec(rtype: int, payload: bytes) -> bytes:
        return (
            old.pack(len(payload), rtype, zlib.crc32(payload, zlib.crc32(bytes((rtype,)))))
            + payload
        )

    enc = msgspec.msgpack.encode
    body = (
        rec(1, enc(MD))
        + b"".join(rec(2, enc(e)) for e in ents(1, 3))
        + rec(3, enc(HardState(1, 1, 3)))
    )
    seg = tmp_path / "0000000000000000-0000000000000001.wal"
    seg.write_bytes(body)
    with pytest.raises(WALCorruptError, match="older WAL format") as ei:
        WAL.open(tmp_path)
    assert ei.value.offset == 0
    assert str(seg) in str(ei.value)
    assert seg.read_bytes() == body


def test_corruption_before_tail_refuses(tmp_path: Path) -> None:
    wal = WAL.create(tmp_path, MD)
    wal.save(HardState(1, 1, 2), ents(1, 10))
    wal.close()
    seg = _last_segment(tmp_path)
    data = bytearray(seg.read_bytes())
    off = len(data) // 2
    data[off] ^= 0x55
    seg.write_bytes(bytes(data))
    with pytest.raises(WALCorruptError) as ei:
        WAL.open(tmp_path)
    msg = str(ei.value)
    assert str(seg) in msg
    assert "offset" in msg
    assert ei.value.offset <= off


def test_segments_cut_and_released(tmp_path: Path) -> None:
    wal = WAL.create(tmp_path, MD, segment_bytes=500)
    for i in range(1, 101, 5):
        wal.save(HardState(1, 1, i), ents(i, i + 4))
    assert wal.segment_count() > 3
    n = wal.segment_count()
    wal.release_before(50)
    assert wal.segment_count() < n
    wal.close()
    _, st = WAL.open(tmp_path, segment_bytes=500)
    assert st.entries[-1].index == 100
    assert st.entries[0].index <= 50
    assert st.hard_state.commit == 96


def test_snapshot_files(tmp_path: Path) -> None:
    assert snapfile.load_newest(tmp_path) is None
    s1 = Snapshot(b"one", SnapshotMetadata(ConfState(voters=[1]), index=10, term=1))
    s2 = Snapshot(b"two", SnapshotMetadata(ConfState(voters=[1, 2]), index=20, term=2))
    snapfile.save(tmp_path, s1)
    p2 = snapfile.save(tmp_path, s2)
    assert snapfile.load_newest(tmp_path) == s2
    p2.write_bytes(p2.read_bytes()[:-3])  # damaged newest: fall back to the older one
    assert snapfile.load_newest(tmp_path) == s1
    snapfile.purge(tmp_path, keep=1)
    assert len(snapfile.list_snapshots(tmp_path)) == 1


def test_durable_storage_recovery_with_snapshot(tmp_path: Path) -> None:
    st = DurableStorage.create(tmp_path, MD, segment_bytes=400)
    for i in range(1, 61, 3):
        st.save(HardState(1, 1, i + 2), ents(i, i + 2))
    anyio.run(st.snapshot_and_compact, 50, ConfState(voters=[1, 2, 3]), b"state@50", 10)
    assert st.first_index() == 41
    with pytest.raises(CompactedError):
        st.entries(30, 45)
    st.save(HardState(1, 1, 62), ents(61, 62))
    st.close()
    st2 = DurableStorage.open(tmp_path, segment_bytes=400)
    hs, cs = st2.initial_state()
    assert hs == HardState(1, 1, 62)
    assert cs.voters == [1, 2, 3]
    assert st2.snapshot().data == b"state@50"
    assert st2.first_index() == 51
    assert st2.last_index() == 62
    assert [e.index for e in st2.entries(51, 63)] == list(range(51, 63))
    assert st2.term(50) == 1
    assert st2.metadata == MD
    st2.close()


def test_durable_storage_received_snapshot_replaces_log(tmp_path: Path) -> None:
    st = DurableStorage.create(tmp_path, MD)
    st.save(HardState(1, 1, 3), ents(1, 5))
    snap = Snapshot(b"leader", SnapshotMetadata(ConfState(voters=[1, 2, 3]), index=100, term=3))
    st.save(HardState(3, 0, 100), [], snap)
    st.save(HardState(3, 0, 101), ents(101, 101, term=3))
    st.close()
    st2 = DurableStorage.open(tmp_path)
    assert st2.first_index() == 101
    assert st2.last_index() == 101
    assert st2.initial_state()[0] == HardState(3, 0, 101)
    st2.close()


def test_durable_storage_open_reports_corruption(tmp_path: Path) -> None:
    st = DurableStorage.create(tmp_path, MD)
    st.save(HardState(1, 1, 3), ents(1, 20))
    st.close()
    seg = _last_segment(DurableStorage.wal_dir(tmp_path))
    data = bytearray(seg.read_bytes())
    data[60] ^= 1
    seg.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=r"\.wal at offset \d+"):
        DurableStorage.open(tmp_path)


def test_fsync_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal = WAL.create(tmp_path, MD)
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    wal.save(HardState(1, 1, 50), ents(1, 50))
    assert len(calls) == 1
    wal.save(HardState(1, 1, 50), ents(51, 52), sync=False)
    assert len(calls) == 1
    wal.close()


def test_commit_beyond_last_entry_refuses(tmp_path: Path) -> None:
    """A hard state committing entries the log does not have is impossible: refuse to start."""
    st = DurableStorage.create(tmp_path, MD)
    st.save(HardState(1, 1, 3), ents(1, 5))
    st.save(HardState(1, 1, 9), [])
    st.close()
    with pytest.raises(StorageError) as ei:
        DurableStorage.open(tmp_path)
    msg = str(ei.value)
    assert str(tmp_path) in msg
    assert "commit 9" in msg
    assert "last index 5" in msg


def _dir_fsyncs(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Record the inode of every directory fsynced from now on."""
    inodes: set[int] = set()
    real = os.fsync

    def spy(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            inodes.add(st.st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return inodes


def test_create_fsyncs_every_new_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "a" / "data"
    synced = _dir_fsyncs(monkeypatch)
    DurableStorage.create(data_dir, MD).close()
    for d in (
        tmp_path,
        tmp_path / "a",
        data_dir,
        data_dir / "member",
        data_dir / "member" / "wal",
        data_dir / "member" / "snap",
    ):
        assert d.stat().st_ino in synced, f"{d} was not fsynced"


def test_snapshot_purge_fsyncs_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in (1, 2, 3):
        snapfile.save(tmp_path, Snapshot(b"x", SnapshotMetadata(ConfState(voters=[1]), i, 1)))
    synced = _dir_fsyncs(monkeypatch)
    snapfile.purge(tmp_path, keep=1)
    assert tmp_path.stat().st_ino in synced


def test_create_with_bootstrap_entries_and_leftover_temp(tmp_path: Path) -> None:
    """create() prepares member/ in a temporary folder (a leftover one is replaced)."""
    leftover = tmp_path / "member.tmp"
    (leftover / "wal").mkdir(parents=True)
    (leftover / "wal" / "0000000000000000-0000000000000001.wal").write_bytes(b"half")
    st = DurableStorage.create(tmp_path, MD, HardState(1, 0, 3), ents(1, 3))
    assert st.last_index() == 3
    assert st.initial_state()[0] == HardState(1, 0, 3)
    st.save(HardState(1, 0, 4), ents(4, 4))
    st.close()
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member"]
    st2 = DurableStorage.open(tmp_path)
    assert st2.last_index() == 4
    assert st2.metadata == MD
    st2.close()
    with pytest.raises(FileExistsError):
        DurableStorage.create(tmp_path, MD)


def test_member_dir_without_wal_refuses(tmp_path: Path) -> None:
    (tmp_path / "member" / "wal").mkdir(parents=True)
    assert DurableStorage.exists(tmp_path)
    with pytest.raises(StorageError, match="no WAL"):
        DurableStorage.open(tmp_path)


def test_data_dir_lock(tmp_path: Path) -> None:
    lock = lock_data_dir(tmp_path / "d")
    try:
        assert (tmp_path / "d" / "coord.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(StorageError) as ei:
            lock_data_dir(tmp_path / "d")
        assert str(tmp_path / "d") in str(ei.value)
        assert f"pid {os.getpid()}" in str(ei.value)
    finally:
        lock.release()
    lock_data_dir(tmp_path / "d").release()  # free again
