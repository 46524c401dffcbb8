"""etcd's backend layout in and out of coord's state machine, and the snapshot file around it.

A randomized history (puts, deletes, txns mixing both, compactions, leases, alarms, users and
roles) is written as an etcd db and read back: the whole store (history included, so the
hash of every revision), the leases, alarms and auth state must come back equal, and the
invariants must hold. Damaged files must be refused with a message naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import random
import subprocess
import sys
from pathlib import Path

import betterproto2
import pytest

from coord._pb import etcdserverpb as pb
from coord.server.auth.store import Role, User
from coord.server.backup import bbolt, etcddb, restore, snapshotfile
from coord.server.backup.cli import human_bytes
from coord.server.command import Kind, encode
from coord.server.membership import MemberInfo
from coord.server.mvcc import KVStore
from coord.server.statemachine import StateMachine


def _apply(sm: StateMachine, kind: Kind, msg: betterproto2.Message) -> None:
    sm.apply(sm.applied_index + 1, encode(kind, bytes(msg)))


def random_state(seed: int, steps: int = 600) -> StateMachine:
    rnd = random.Random(seed)
    sm = StateMachine()
    keys = [f"/k/{i:03d}".encode() for i in range(40)]
    leases = [101, 102, 103]
    for lease in leases:
        _apply(sm, Kind.LEASE_GRANT, pb.LeaseGrantRequest(id=lease, ttl=rnd.randint(5, 900)))
    for _ in range(steps):
        r = rnd.random()
        key = rnd.choice(keys)
        if r < 0.5:
            value = bytes(rnd.getrandbits(8) for _ in range(rnd.choice([0, 3, 300, 5000])))
            lease = rnd.choice([0, 0, *leases])
            _apply(sm, Kind.PUT, pb.PutRequest(key=key, value=value, lease=lease))
        elif r < 0.65:
            end = rnd.choice([b"", key + b"\xff"])
            _apply(sm, Kind.DELETE_RANGE, pb.DeleteRangeRequest(key=key, range_end=end))
        elif r < 0.85:
            ops = [
                pb.RequestOp(request_put=pb.PutRequest(key=k, value=b"t"))
                if rnd.random() < 0.7
                else pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=k))
                for k in rnd.sample(keys, rnd.randint(1, 6))
            ]
            _apply(sm, Kind.TXN, pb.TxnRequest(success=ops))
        elif r < 0.9 and sm.kv.rev > sm.kv.compact_rev + 1:
            at = rnd.randint(sm.kv.compact_rev + 1, sm.kv.rev)
            _apply(sm, Kind.COMPACT, pb.CompactionRequest(revision=at))
        elif r < 0.92:
            _apply(sm, Kind.LEASE_REVOKE, pb.LeaseRevokeRequest(id=rnd.choice(leases)))
            leases = [x for x in leases if x in {row[0] for row in sm.lessor.snapshot()}]
            new = rnd.randint(200, 10**12)
            _apply(sm, Kind.LEASE_GRANT, pb.LeaseGrantRequest(id=new, ttl=60))
            leases.append(new)
    sm.alarms = {(0x8E9E05C52164694D, 1)} if seed % 2 else set()
    sm.auth.replace(
        seed % 2 == 0,
        seed + 3,
        {
            "root": User(b"$2a$10$" + b"r" * 53, ["root"]),
            "alice": User(b"$2a$10$" + b"a" * 53, ["app", "ro"]),
            "svc": User(b"", ["app"], no_password=True),
        },
        {
            "app": Role([(2, b"/app/", b"/app0"), (0, b"/cfg", b"")]),
            "ro": Role([(0, b"/", b"\x00")]),
        },
    )
    sm._check()
    sm.kv._check()
    return sm


def loaded(backend: etcddb.Backend, applied_index: int = 1) -> StateMachine:
    """A state machine holding what ``backend`` read."""
    sm = StateMachine()
    sm.restore(backend.state(applied_index))
    return sm


MEMBERS = [MemberInfo(0x10ADAFF8A044F92, "m1", ("http://127.0.0.1:1",), ("http://127.0.0.1:2",))]


def write_file(path: Path, sm: StateMachine) -> int:
    return snapshotfile.save(
        path, lambda f: etcddb.write_backend(f, etcddb.capture(sm, MEMBERS, [7], "3.5.0"))
    )


@pytest.mark.parametrize("seed", range(8))
def test_backend_roundtrip(seed: int, tmp_path: Path) -> None:
    sm = random_state(seed)
    path = tmp_path / "s.db"
    size = write_file(path, sm)
    assert size == path.stat().st_size
    assert snapshotfile.has_hash(size)
    with snapshotfile.open_snapshot(path) as db:
        assert db.check() == []
        assert db.buckets() == list(etcddb.BUCKETS)
        back = etcddb.read_backend(db)
        members = dict(db.items(b"members"))
        assert json.loads(members[b"10adaff8a044f92"]) == {
            "id": 0x10ADAFF8A044F92,
            "peerURLs": ["http://127.0.0.1:1"],
            "name": "m1",
            "clientURLs": ["http://127.0.0.1:2"],
        }
        assert dict(db.items(b"members_removed")) == {b"7": b"removed"}
    assert back.consistent_index == sm.applied_index
    assert back.revision == sm.kv.rev
    assert back.keys == sm.kv.key_count()
    got = loaded(back, sm.applied_index)
    assert got.kv.rev == sm.kv.rev
    assert got.kv.compact_rev == sm.kv.compact_rev
    assert got.kv.hash() == sm.kv.hash()  # every retained revision, byte for byte
    assert [(r, [v.kvf for v in c]) for r, c in got.kv.history()] == [
        (r, [v.kvf for v in c]) for r, c in sm.kv.history()
    ]
    assert got.lessor.snapshot() == sm.lessor.snapshot()
    for lease, *_ in sm.lessor.snapshot():
        assert got.kv.keys_for_lease(lease) == sm.kv.keys_for_lease(lease)
    assert got.alarms == sm.alarms
    assert (got.auth.enabled, got.auth.revision) == (sm.auth.enabled, sm.auth.revision)
    assert got.auth.users == sm.auth.users
    assert got.auth.roles == sm.auth.roles
    got._check()
    got.kv._check()
    # the status etcdctl would print: entries of every bucket, last revision of "key"
    st = snapshotfile.status(path)
    assert st.revision == max(r for r, _ in sm.kv.history())
    assert st.total_size == size - 32


def test_unfinished_compaction_is_finished_on_read(tmp_path: Path) -> None:
    """etcd resumes a scheduled compaction at start (mvcc/kvstore.go restore)."""
    sm = random_state(3, steps=200)
    rev = sm.kv.rev
    path = tmp_path / "s.db"
    with open(path, "wb") as f:
        w = bbolt.Writer(f)
        for name in etcddb.BUCKETS:
            if name == b"key":
                with open(tmp_path / "full.db", "w+b") as g:
                    etcddb.write_backend(g, etcddb.capture(sm, [], [], "3.5.0"))
                with bbolt.Reader(tmp_path / "full.db") as full:
                    w.bucket(name, list(full.items(b"key")))
            elif name == b"meta":
                w.bucket(name, [(b"scheduledCompactRev", etcddb._REV.pack(rev, b"_", 0))])
            else:
                w.bucket(name, [])
        w.close()
    with bbolt.Reader(path) as db:
        got = loaded(etcddb.read_backend(db))
    want = KVStore.restore(sm.kv.snapshot())
    want.compact(rev)
    assert got.kv.compact_rev == rev
    assert got.kv.hash() == want.hash()  # the same history as compacting the store itself
    got.kv._check()


def test_bad_entries_are_refused_with_their_key(tmp_path: Path) -> None:
    cases = {
        b"short": (b"key", [(b"\x00" * 5, b"")], "is not a revision"),
        b"proto": (
            b"key",
            [(etcddb._REV.pack(2, b"_", 0), b"\x0a\x05ab")],
            "not a KeyValue: a field runs past the end",
        ),
        b"lease": (b"lease", [(b"\x00" * 7 + b"\x01", b"\x08\x01")], "lease 1 with TTL 0"),
    }
    for label, (bucket, items, message) in cases.items():
        path = tmp_path / f"{label.decode()}.db"
        with open(path, "wb") as f:
            w = bbolt.Writer(f)
            w.bucket(bucket, items)
            w.close()
        with bbolt.Reader(path) as db, pytest.raises(etcddb.SnapshotFormatError, match=message):
            etcddb.read_backend(db)


def test_damaged_files_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    good = tmp_path / "good.db"
    write_file(good, random_state(1, steps=300))
    data = good.read_bytes()
    target = tmp_path / "restored"
    flags = ("m1", "m1=http://127.0.0.1:1", ["http://127.0.0.1:1"])

    def attempt(blob: bytes, skip: bool = False) -> str:
        path = tmp_path / "bad.db"
        path.write_bytes(blob)
        with pytest.raises(ValueError) as err:
            restore.restore(path, target, *flags, skip_hash_check=skip)
        assert not target.exists(), "a refused restore wrote something"
        return str(err.value)

    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    assert "expected sha256 [" in attempt(bytes(flipped))
    assert "snapshot missing hash but --skip-hash-check=false" in attempt(data[:-1000])
    # without the trailer check the pages themselves are checked
    meta_flip = bytearray(data)
    meta_flip[30] ^= 1  # meta 0's page size field: its checksum fails
    meta_flip[4096 + 30] ^= 1
    assert "checksum" in attempt(bytes(meta_flip), skip=True)
    assert "file too short: 3000 bytes" in attempt(data[:3000], skip=True)


def test_restore_refuses_a_nonempty_dir_and_an_unknown_member(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    write_file(path, random_state(2, steps=50))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(restore.RestoreError, match="exists and is not empty"):
        restore.restore(path, tmp_path / "full", "m1", "m1=http://h:1", ["http://h:1"])
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(restore.RestoreError, match="no member 'm2'"):
        restore.restore(path, tmp_path / "new", "m2", "m1=http://h:1", ["http://h:1"])
    assert not (tmp_path / "new").exists()


def _cli(*args: str, tty: bool = False) -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "coord.server", "snapshot", *args]
    if not tty:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            env={**os.environ, "COLUMNS": "120"},
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                b = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not b:
                break
            chunks.append(b)
        out = proc.communicate(timeout=60)[0]
        return proc.wait(), out, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)


def test_cli_status_restore_and_progress(tmp_path: Path) -> None:
    sm = random_state(4, steps=300)
    path = tmp_path / "s.db"
    size = write_file(path, sm)
    st = snapshotfile.status(path)
    code, out, err = _cli("status", str(path), "-w", "json")
    assert code == 0, err
    assert json.loads(out) == st.json(), err
    code, out, _ = _cli("status", str(path), "-w", "simple")
    assert out == f"{st.hash:x}, {st.revision}, {st.total_key}, {human_bytes(size - 32)}\n"
    code, out, _ = _cli("status", str(path))
    lines = out.splitlines()
    assert lines[1].split("|")[1:5] == ["   HASH   ", " REVISION ", " TOTAL KEYS ", " TOTAL SIZE "]
    assert lines[3].split("|")[1].strip() == f"{st.hash:x}"
    # not on a terminal: the result only
    flags = [
        "--name",
        "m1",
        "--initial-cluster",
        "m1=http://127.0.0.1:9",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:9",
    ]
    code, out, err = _cli("restore", str(path), "--data-dir", str(tmp_path / "a"), *flags)
    assert code == 0, err
    assert err == ""
    assert out.startswith(f"Restored {path} into {tmp_path / 'a'}: member ")
    assert f"revision {sm.kv.rev}, {sm.kv.key_count()} keys" in out
    # on a terminal: bars for bytes and keys
    code, out, err = _cli("restore", str(path), "--data-dir", str(tmp_path / "b"), *flags, tty=True)
    assert code == 0, err
    assert "bytes" in err
    assert "keys" in err
    assert human_bytes(size) in err
    # offline save of the restored member: the same state (same status numbers as a save
    # of the original, except the consistent index, which a restore sets to the member count)
    code, out, err = _cli("save", "--data-dir", str(tmp_path / "a"), str(tmp_path / "again.db"))
    assert code == 0, err
    with snapshotfile.open_snapshot(tmp_path / "again.db") as db:
        again = loaded(etcddb.read_backend(db))
    assert again.kv.hash() == sm.kv.hash()
    assert again.lessor.snapshot() == sm.lessor.snapshot()
    # errors: one line, exit 1
    code, out, err = _cli("restore", str(path), "--data-dir", str(tmp_path / "a"), *flags)
    assert code == 1
    assert err.startswith("Error: ")
    assert "not empty" in err
    code, _, err = _cli("status", str(tmp_path / "missing.db"))
    assert code == 1
    assert "No such file" in err


def test_digest_is_over_the_db_bytes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    write_file(path, random_state(5, steps=20))
    data = path.read_bytes()
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "s.db.part").exists()
