"""Durability with real processes: kill -9 and restart, torn WAL tails, corrupted WAL records."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, get, get_prefix, put, run, write_load
from support import CoordProc, free_port, wait_for

from coord.server.storage import wal as walmod
from coord.server.storage.wal import list_segments


def single(tmp_path: Path, peer_port: int) -> CoordProc:
    return CoordProc(
        tmp_path,
        name="solo",
        args=[
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ],
    )


def wal_segment(proc: CoordProc) -> Path:
    return list_segments(proc.data_dir / "member" / "wal")[-1][2]


def test_single_member_kill9_keeps_acknowledged_writes(tmp_path: Path) -> None:
    pp = free_port()
    proc = single(tmp_path, pp)
    acked = run(write_load([proc.endpoint], "/solo/", 200, concurrency=8))
    assert len(acked) == 200
    proc.kill()
    proc.stop()
    proc2 = single(tmp_path, pp)
    try:
        got = get_prefix(proc2.endpoint, "/solo/")
        assert got == acked
    finally:
        proc2.stop()


def test_torn_wal_tail_recovers(tmp_path: Path) -> None:
    pp = free_port()
    proc = single(tmp_path, pp)
    for i in range(20):
        put(proc.endpoint, f"/torn/{i}", str(i))
    proc.stop()
    seg = wal_segment(proc)
    head = struct.pack(">IBI", 256, walmod.RecordType.ENTRY, 0x12345678)
    with open(seg, "ab") as f:  # a record whose (valid) header promises more than was written
        f.write(head + struct.pack(">I", zlib.crc32(head)) + b"partial")
    proc2 = single(tmp_path, pp)
    try:
        assert get(proc2.endpoint, "/torn/19") == "19"
        assert "torn tail" in proc2.output()
        put(proc2.endpoint, "/torn/after", "x")
    finally:
        proc2.stop()


def _refused_start(proc: CoordProc, pp: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "coord.server",
            "--name",
            "solo",
            "--data-dir",
            str(proc.data_dir),
            "--listen-client-urls",
            f"http://127.0.0.1:{free_port()}",
            "--advertise-client-urls",
            "http://127.0.0.1:1",
            "--listen-peer-urls",
            f"http://127.0.0.1:{pp}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{pp}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _written_then_stopped(tmp_path: Path) -> tuple[CoordProc, int, Path]:
    """A stopped single member that wrote 30 keys: (its process, peer port, WAL segment)."""
    pp = free_port()
    proc = single(tmp_path, pp)
    for i in range(30):
        put(proc.endpoint, f"/wal/{i}", "x" * 50)
    proc.stop()
    return proc, pp, wal_segment(proc)


def test_corrupted_wal_record_refuses_to_start(tmp_path: Path) -> None:
    proc, pp, seg = _written_then_stopped(tmp_path)
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x40
    seg.write_bytes(bytes(data))
    out = _refused_start(proc, pp)
    assert out.returncode != 0
    assert str(seg) in out.stderr
    assert "offset" in out.stderr
    assert "Traceback" not in out.stderr


def test_kill9_all_members_under_load(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    try:
        eps = [m.endpoint for m in c.members]
        acked: dict[str, str] = {}
        stop = threading.Event()

        def load() -> None:
            acked.update(
                run(write_load(eps, "/all/", 2000, concurrency=3, timeout=2.0, stop=stop.is_set))
            )

        t = threading.Thread(target=load)
        t.start()
        wait_for(
            lambda: len(get_prefix(eps[0], "/all/", serializable=True)) > 100,
            timeout=30,
            what="writes",
        )
        for m in c.members:  # as close to simultaneous as a test can be
            assert m.proc is not None
            m.proc.kill()
        stop.set()
        t.join(60)
        for m in c.members:
            assert m.proc is not None
            m.proc.stop()
            m.proc = None
        assert len(acked) > 50
        for m in c.members:
            c.start_member(m, wait=False)
        for m in c.members:
            c.wait_member(m)
        c.wait_converged()
        for m in c.members:
            got = get_prefix(m.endpoint, "/all/")
            lost = [k for k, v in acked.items() if got.get(k) != v]
            assert not lost, f"{m.name} lost {len(lost)} acknowledged writes"
    finally:
        c.stop()


def test_flipped_wal_length_bit_refuses_to_start(tmp_path: Path) -> None:
    """Bug 5: a length field pointing past the end of the last segment is not a torn tail."""
    proc, pp, seg = _written_then_stopped(tmp_path)
    data = bytearray(seg.read_bytes())
    off = len(walmod.SEGMENT_MAGIC)
    offsets = []
    while off < len(data):
        offsets.append(off)
        off += walmod.HEADER_SIZE + struct.unpack_from(">I", data, off)[0]
    victim = offsets[len(offsets) // 2]
    data[victim + 1] ^= 0x01  # length += 64 KiB: now it reaches past the end of the file
    seg.write_bytes(bytes(data))
    out = _refused_start(proc, pp)
    assert out.returncode == 1, out.stderr
    assert f"cannot serve: WAL corrupt: {seg} at offset {victim}" in out.stderr
    assert "Traceback" not in out.stderr
    assert seg.read_bytes() == bytes(data)


@pytest.mark.parametrize("failpoint", ["bootstrapBeforeSave", "bootstrapBeforeRename"])
def test_crash_during_bootstrap_then_restart_serves(tmp_path: Path, failpoint: str) -> None:
    """Bug 6: a crash while bootstrapping leaves no member (or a whole one), so a restart
    without the failpoint bootstraps and serves."""
    pp = free_port()
    args = [
        "--listen-peer-urls",
        f"http://127.0.0.1:{pp}",
        "--initial-advertise-peer-urls",
        f"http://127.0.0.1:{pp}",
        "--initial-cluster",
        f"solo=http://127.0.0.1:{pp}",
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
    ]
    crashed = CoordProc(
        tmp_path, name="solo", args=args, wait=False, env={"COORD_FAILPOINTS": f"{failpoint}=crash"}
    )
    try:
        wait_for(lambda: not crashed.alive(), timeout=20, what=f"a crash at {failpoint}")
        assert crashed.popen.returncode == -9
        assert not (crashed.data_dir / "member").exists()  # only the temporary folder
        assert (crashed.data_dir / "member.tmp" / "wal").is_dir()
    finally:
        crashed.stop()
    proc = CoordProc(tmp_path, name="solo", args=args)
    try:
        put(proc.endpoint, "/boot/k", "v")
        assert get(proc.endpoint, "/boot/k") == "v"
        assert sorted(p.name for p in proc.data_dir.iterdir()) == ["coord.lock", "member"]
    finally:
        proc.stop()
    proc2 = CoordProc(tmp_path, name="solo", args=args)
    try:
        assert get(proc2.endpoint, "/boot/k") == "v"
    finally:
        proc2.stop()
