"""coord.server.backup.bbolt: round trips, refusals of corrupt files, and real etcd interop."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
from functools import partial
from pathlib import Path

import pytest
from support import EtcdProc, Proc, etcdctl, free_port, lost_port_race, require_binary, wait_for

from coord import Client
from coord._pb import mvccpb
from coord._protowire import int_field
from coord.server.backup import bbolt
from coord.server.backup.bbolt import BoltError, Reader, Writer, content_hash
from coord.server.backup.etcddb import BUCKETS

Content = dict[bytes, list[tuple[bytes, bytes]]]

ETCD_BUCKETS = list(BUCKETS)  # etcd 3.4's ten, in bbolt's order


def write_db(path: Path, content: Content, page_size: int = bbolt.PAGE_SIZE) -> int:
    with open(path, "wb") as f:
        w = Writer(f, page_size)
        for name in sorted(content):
            w.bucket(name, iter(content[name]))
        size = w.close()
        assert w.bytes_written == size
    return size


def assert_reads_back(path: Path, content: Content, size: int | None = None) -> None:
    with Reader(path, size) as r:
        assert r.buckets() == sorted(content)
        for name, items in content.items():
            assert list(r.items(name)) == items
            assert r.count(name) == len(items)
            for key, value in items[:: max(1, len(items) // 300)]:
                assert r.get(name, key) == value
            assert r.get(name, b"\x00" * 50) is None or (b"\x00" * 50, b"") in items
        assert r.check() == []
        assert r.size == (size if size is not None else path.stat().st_size)
        with pytest.raises(KeyError):
            r.count(b"no such bucket \xff")


def random_key(rng: random.Random, hi: int = 40) -> bytes:
    return bytes(rng.choice(b"\x00\x01az\xfe\xff") for _ in range(rng.randint(1, hi)))


def random_content(rng: random.Random) -> Content:
    content: Content = {}
    for _ in range(rng.randint(1, 9)):
        n = rng.choice([0, rng.randint(1, 4), rng.randint(20, 400), rng.randint(1000, 3000)])
        keys = sorted({random_key(rng) for _ in range(n)})
        sizes = [0, 0, 1, 8, 100, 1500, 5000] + [10_000] * (n > 1000)
        content[random_key(rng, 12)] = [(k, rng.randbytes(rng.choice(sizes))) for k in keys]
    return content


@pytest.mark.parametrize("seed", range(8))
def test_random_round_trips(tmp_path: Path, seed: int) -> None:
    """Random buckets (empty, inline, multi-page; 0x00/0xFF keys, 0-byte and overflowing
    values) read back exactly, pass check(), and the file is exactly the size returned."""
    rng = random.Random(seed)
    content = random_content(rng)
    page_size = rng.choice([512, 1024, 4096, 4096, 16384])
    size = write_db(tmp_path / "db", content, page_size)
    assert size == (tmp_path / "db").stat().st_size >= 4096
    assert size % page_size == 0
    assert_reads_back(tmp_path / "db", content)


def big_content() -> Content:
    rng = random.Random(7)
    many = sorted({rng.randbytes(rng.randint(1, 24)) for _ in range(20_000)})
    return {
        b"\x00first": [(b"\x00", b""), (b"\xff", b"")],
        b"big values": [(b"a", b"x" * 10_000), (b"b", b""), (b"c", rng.randbytes(100_000))],
        b"empty": [],
        b"long keys": [(bytes([i]) * 3000 + b"\x00", bytes([i]) * (i % 3)) for i in range(1, 60)],
        b"many": [(k, rng.randbytes(rng.randint(0, 30))) for k in many],
        b"\xff\xff": [(b"k" * i, b"v" * i) for i in range(1, 20)],
    }


def test_big_round_trip_shapes(tmp_path: Path) -> None:
    """20,000 keys make a two-level branch; 100 KB values spill to overflow pages; 3,000-byte
    keys make branch pages overflow; small buckets are inline."""
    content = big_content()
    size = write_db(tmp_path / "db", content)
    assert_reads_back(tmp_path / "db", content)
    with Reader(tmp_path / "db") as r:
        assert size == r.pgid * 4096
        top = r._bucket(b"many")
        child = r._page(bbolt._branch_elem(top, 0)[1])
        assert (top.flags, child.flags) == (bbolt.BRANCH, bbolt.BRANCH)
        long_top = r._bucket(b"long keys")
        assert long_top.flags == bbolt.BRANCH
        assert long_top.end - long_top.off > 4096  # the branch page overflows
        big_leaf = r._page(bbolt._branch_elem(r._bucket(b"big values"), 2)[1])
        assert big_leaf.end - big_leaf.off == 25 * 4096  # 100,000 bytes + headers: 25 pages
        for tiny in (b"\x00first", b"empty", b"\xff\xff"):
            assert r._bucket(tiny).where.startswith("inline")


def test_only_inline_buckets_take_no_pages(tmp_path: Path) -> None:
    content: Content = {b"a": [], b"b": [(b"k", b"v")], b"c": [(b"x" * 400, b"y" * 592)]}
    assert write_db(tmp_path / "db", content) == 3 * 4096  # two metas and the root leaf
    assert_reads_back(tmp_path / "db", content)
    # bucket c's leaf is 16 + 16 + 400 + 592 bytes = page_size/4: inline; one byte more is not
    content[b"c"] = [(b"x" * 400, b"y" * 593)]
    assert write_db(tmp_path / "db", content) == 4 * 4096
    assert_reads_back(tmp_path / "db", content)


def test_small_page_size_is_padded_to_4096(tmp_path: Path) -> None:
    assert write_db(tmp_path / "db", {}, page_size=1024) == 4096
    with Reader(tmp_path / "db") as r:
        assert (r.page_size, r.pgid, r.buckets(), r.check()) == (1024, 4, [], [])
        assert (r.txid, r.freelist) == (2, bbolt.NO_FREELIST)


@pytest.mark.parametrize(
    ("names", "items", "message"),
    [
        ([b"b", b"a"], [], "out-of-order bucket name b'a' after b'b'"),
        ([b"a", b"a"], [], "duplicate bucket name b'a'"),
        ([b""], [], "empty bucket name"),
        ([b"a"], [(b"2", b""), (b"1", b"")], "out-of-order key b'1' after b'2'"),
        ([b"a"], [(b"1", b""), (b"1", b"x")], "duplicate key b'1'"),
        ([b"a"], [(b"", b"x")], "empty key"),
        ([b"a"], [(b"k" * 32769, b"")], "key of 32769 bytes is longer than 32768"),
    ],
)
def test_writer_rejects(
    tmp_path: Path, names: list[bytes], items: list[tuple[bytes, bytes]], message: str
) -> None:
    with open(tmp_path / "db", "wb") as f:
        w = Writer(f)
        for name in names[:-1]:
            w.bucket(name, [])
        with pytest.raises(ValueError, match=message):
            w.bucket(names[-1], items)


# ---- corrupt input ----


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % 2**64
    return h


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def flip(path: Path, offset: int) -> None:
    """Flip the lowest bit of the byte at ``offset``."""
    patch(path, offset, bytes([path.read_bytes()[offset] ^ 1]))


def patch_meta(path: Path, page: int, page_size: int, field_offset: int, data: bytes) -> None:
    """Overwrite bytes of a meta page and recompute its checksum."""
    raw = bytearray(path.read_bytes()[page * page_size : page * page_size + 80])
    raw[field_offset : field_offset + len(data)] = data
    raw[72:80] = struct.pack("<Q", fnv1a64(bytes(raw[16:72])))
    patch(path, page * page_size, bytes(raw))


def test_refuses_short_and_corrupt_metas(tmp_path: Path) -> None:
    db = tmp_path / "db"
    (tmp_path / "short").write_bytes(bytes(3072))
    with pytest.raises(BoltError, match=r"^file too short: 3072 bytes$"):
        Reader(tmp_path / "short")
    write_db(db, {b"k": [(b"a", b"1")]})
    with pytest.raises(BoltError, match="file too short"):
        Reader(db, size=4096)  # the metas say 3 pages
    good = db.read_bytes()
    flip(db, 64)  # in meta 0's txid
    with Reader(db) as r:
        assert r.txid == 1  # meta 1's
    flip(db, 4096 + 40)  # in meta 1's root.sequence
    with pytest.raises(BoltError, match=r"^meta checksum error$"):
        Reader(db)
    db.write_bytes(good)
    patch(db, 4096 + 20, b"\x03")  # version of meta 1
    with Reader(db) as r:
        assert r.txid == 2  # meta 0
    patch(db, 16, b"\x00")  # magic of meta 0
    with pytest.raises(BoltError, match="meta 0: invalid database: bad magic; meta 1: version"):
        Reader(db)
    patch(db, 4096 + 16, b"\x00")
    with pytest.raises(BoltError, match=r"^invalid database: bad magic$"):
        Reader(db)


def test_probes_meta_1_when_meta_0_is_bad(tmp_path: Path) -> None:
    db = tmp_path / "db"
    content: Content = {b"b": [(b"k%03d" % i, b"v" * i) for i in range(100)]}
    write_db(db, content, page_size=1024)
    patch(db, 16, b"\xff\xff\xff\xff")
    assert_reads_back(db, content)
    with Reader(db) as r:
        assert (r.page_size, r.txid) == (1024, 1)


def test_bad_page_references(tmp_path: Path) -> None:
    db = tmp_path / "db"
    content: Content = {b"b": [(b"%06d" % i, b"v" * 20) for i in range(2000)]}
    write_db(db, content)
    with Reader(db) as r:
        top = r._bucket(b"b")
        first = bbolt._branch_elem(top, 0)[1]
        first_leaf = r._page(first)
        in_child1 = bbolt._branch_elem(top, 1)[0]
        pgid = r.pgid
    child1 = top.off + 32 + 8  # element 1's child pgid
    patch(db, child1, struct.pack("<Q", 9999))
    with Reader(db) as r:
        with pytest.raises(BoltError, match=rf"^page 9999: out of bounds \(pgid {pgid}\)$"):
            list(r.items(b"b"))
        with pytest.raises(BoltError, match="page 9999: out of bounds"):
            r.get(b"b", in_child1)
        assert r.get(b"b", b"000000") == b"v" * 20  # element 0's subtree is intact
        assert f"page 9999: out of bounds (pgid {pgid})" in r.check()
    patch(db, child1, struct.pack("<Q", first))
    with Reader(db) as r:
        assert f"page {first}: multiple references" in r.check()
    patch(db, child1, struct.pack("<Q", 0))
    with Reader(db) as r:
        assert "page 0: reference to a meta page" in r.check()
    # a duplicate key inside a leaf (element 1 gets element 0's key)
    patch(db, child1, struct.pack("<Q", first + 1))
    key1 = first_leaf.off + 32 + struct.unpack_from("<I", db.read_bytes(), first_leaf.off + 36)[0]
    patch(db, key1, b"000000")
    with Reader(db) as r:
        problems = r.check()
    assert problems == [f"page {first}: key 1 b'000000' not after b'000000'"]
    patch(db, first_leaf.off + 8, b"\x10")  # the leaf's type becomes freelist
    with Reader(db) as r:
        assert r.check() == [f"page {first}: invalid type 0x10"]
        with pytest.raises(BoltError, match=f"page {first}: invalid type 0x10"):
            r.count(b"b")


def freelist_db(path: Path, free: list[int]) -> None:
    """A 512-byte-page db of 8 pages (2 metas, the root leaf, 5 padding pages), page 3 turned
    into a freelist page listing ``free``."""
    assert write_db(path, {b"b": [(b"k", b"v")]}, page_size=512) == 4096
    patch(path, 3 * 512, struct.pack("<QHHI", 3, 0x10, len(free), 0))
    patch(path, 3 * 512 + 16, struct.pack(f"<{len(free)}Q", *free))
    for page in (0, 1):
        patch_meta(path, page, 512, 48, struct.pack("<Q", 3))


FREELISTS = [
    ([4, 5, 6, 7], []),
    ([4, 5, 6], ["page 7: unreachable unfreed"]),
    ([4, 5, 6, 7, 2], ["page 2: reachable freed"]),
    ([4, 4, 5, 6, 7], ["page 4: already freed"]),
]


@pytest.mark.parametrize(("free", "problems"), FREELISTS)
def test_check_with_a_freelist_page(tmp_path: Path, free: list[int], problems: list[str]) -> None:
    freelist_db(tmp_path / "db", free)
    with Reader(tmp_path / "db") as r:
        assert r.freelist == 3
        assert r.check() == problems
        assert list(r.items(b"b")) == [(b"k", b"v")]


# ---- real etcd ----


def snapshot_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    """`etcdctl snapshot ...` (no server needed)."""
    return subprocess.run(
        [require_binary("etcdctl"), "snapshot", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=60,
        check=False,
    )


def status(path: Path) -> dict[str, int]:
    proc = snapshot_cmd("status", "-w", "json", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, int] = json.loads(proc.stdout)
    return result


def ours(path: Path, size: int) -> dict[str, int]:
    """What etcdctl snapshot status should say about ``path``'s first ``size`` bytes."""
    with Reader(path, size) as r:
        assert r.check() == []
        last = b""
        if b"key" in r.buckets():
            for last, _ in r.items(b"key"):  # noqa: B007 (the last key is what we want)
                pass
        return {
            "hash": content_hash(r),
            "revision": struct.unpack(">q", last[:8])[0] if last else 0,
            "totalKey": sum(r.count(b) for b in r.buckets()),
            "totalSize": r.size,
        }


@pytest.mark.etcdctl
@pytest.mark.parametrize(("free", "problems"), FREELISTS[:2])
def test_freelist_check_agrees_with_etcdctl(
    tmp_path: Path, free: list[int], problems: list[str]
) -> None:
    freelist_db(tmp_path / "db", free)
    proc = snapshot_cmd("status", str(tmp_path / "db"))
    assert (proc.returncode == 0) == (not problems)
    for problem in problems:
        assert problem in proc.stdout + proc.stderr


@pytest.mark.etcdctl
def test_status_of_written_db_matches_etcdctl(tmp_path: Path) -> None:
    """etcdctl (bbolt's own Check and walk) accepts the odd shapes and agrees on the hash."""
    db = tmp_path / "db"
    content = big_content()
    content[b"key"] = [(struct.pack(">q", 5) + b"_" + struct.pack(">q", 0), b"")]
    size = write_db(db, content)
    assert status(db) == ours(db, size) | {"revision": 5}


@pytest.mark.etcd
@pytest.mark.etcdctl
def test_reads_real_etcd_snapshot_and_live_db(tmp_path: Path) -> None:
    etcd = EtcdProc(tmp_path)
    try:
        ep = etcd.endpoint
        with Client(ep) as c:
            for i in range(3000):
                c.put(f"/k/{i:05d}", ("x" * 20_000) if i % 500 == 7 else f"value {i}")
        etcdctl(ep, "del", "/k/00001")
        lease = etcdctl(ep, "lease", "grant", "600").stdout.split()[1]
        etcdctl(ep, "put", "--lease", lease, "/leased/a", "1")
        etcdctl(ep, "put", "--lease", lease, "/leased/b", "2")
        etcdctl(ep, "put", "/k/00002", "again")
        revision = json.loads(etcdctl(ep, "get", "/k/00002", "-w", "json").stdout)["header"]
        # --physical: the compaction is done before the snapshot (it runs in the background
        # otherwise, and the live db read below could then hold fewer entries)
        etcdctl(ep, "compact", "--physical", str(revision["revision"] - 1))
        snap = tmp_path / "snap.db"
        etcdctl(ep, "snapshot", "save", str(snap))
    finally:
        etcd.stop()
    size = snap.stat().st_size - 32
    data = snap.read_bytes()
    assert hashlib.sha256(data[:size]).digest() == data[size:]
    expected = ours(snap, size)
    assert status(snap) == expected
    assert expected["totalKey"] > 3000
    with Reader(snap, size) as r:
        assert r.buckets() == ETCD_BUCKETS
        assert r.freelist == bbolt.NO_FREELIST
        latest = {}
        for _, value in r.items(b"key"):
            kv = mvccpb.KeyValue.parse(value)
            latest[kv.key] = kv
        assert latest[b"/k/00002"].value == b"again"
        assert latest[b"/k/00507"].value == b"x" * 20_000
        assert latest[b"/leased/a"].lease == int(lease, 16)
        assert r.get(b"lease", struct.pack(">q", int(lease, 16))) is not None
        snap_keys = list(r.items(b"key"))
    with Reader(tmp_path / "etcd0" / "member" / "snap" / "db") as live:
        assert live.buckets() == ETCD_BUCKETS
        assert live.freelist == bbolt.NO_FREELIST
        assert live.check() == []
        st = bbolt._CheckState({0, 1}, set(), [])
        live._check_page(st, live.root, None, None, 0)
        assert len(st.reached) < live.pgid  # stale pages, and no freelist lists them
        assert list(live.items(b"key")) == snap_keys


def rev_key(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    return struct.pack(">q", main) + b"_" + struct.pack(">q", sub) + (b"t" if tombstone else b"")


def etcd_content() -> tuple[Content, dict[bytes, mvccpb.KeyValue], int]:
    """Etcd-shaped buckets: 5,000 revisions over 700 keys (puts, deletes, a leased key, big
    values); also the live keys at the end and the last revision."""
    rng = random.Random(3)
    lease_id = 0x1234ABCD
    history: list[tuple[bytes, bytes]] = []
    live: dict[bytes, mvccpb.KeyValue] = {}
    main = 1
    for i in range(5000):
        main += 1
        big = {1000: 20_000, 2000: 100_000}.get(i, 0)
        key = b"/big/%d" % big if big else b"/app/%03d" % rng.randrange(700)
        if key in live and key != b"/app/007" and rng.random() < 0.1:
            history.append((rev_key(main, tombstone=True), bytes(mvccpb.KeyValue(key=key))))
            del live[key]
            continue
        old = live.get(key)
        kv = mvccpb.KeyValue(
            key=key,
            create_revision=old.create_revision if old else main,
            mod_revision=main,
            version=old.version + 1 if old else 1,
            value=rng.randbytes(big) if big else b"v%d" % i,
            lease=lease_id if key == b"/app/007" else 0,
        )
        live[key] = kv
        history.append((rev_key(main), bytes(kv)))
    lease = int_field(1, lease_id) + int_field(2, 600)
    content: Content = {
        b"key": history,
        b"lease": [(struct.pack(">q", lease_id), lease)],
        b"meta": [(b"consistent_index", struct.pack(">Q", 5000))],
    }
    return content, live, main


def healthy(etcd: Proc, endpoint: str) -> bool:
    if not etcd.alive():
        raise AssertionError(f"etcd exited:\n{etcd.output()}")
    return etcdctl(endpoint, "endpoint", "health", check=False).returncode == 0


def restore_and_start(snap: Path, base: Path) -> tuple[Proc, str]:
    """`etcdctl snapshot restore` then a real etcd on the restored dir, both with the same
    member flags; on losing a port race, again on new ports and a new dir."""
    for attempt in range(3):
        peer, client = free_port(), free_port()
        data_dir = base / f"restored{attempt}"
        member = [
            "--name",
            "r0",
            "--initial-cluster",
            f"r0=http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
        ]
        proc = snapshot_cmd("restore", str(snap), "--data-dir", str(data_dir), *member)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        argv = [require_binary("etcd"), "--data-dir", str(data_dir), *member]
        argv += ["--listen-peer-urls", f"http://127.0.0.1:{peer}", "--log-level", "warn"]
        url = f"http://127.0.0.1:{client}"
        argv += ["--listen-client-urls", url, "--advertise-client-urls", url]
        etcd = Proc(argv, base / f"restored{attempt}.log")
        endpoint = f"127.0.0.1:{client}"
        try:
            wait_for(partial(healthy, etcd, endpoint), timeout=30, what="the restored etcd")
            return etcd, endpoint
        except AssertionError:
            etcd.stop()
            if attempt == 2 or not lost_port_race(etcd):
                raise
            shutil.rmtree(data_dir, ignore_errors=True)
    raise AssertionError("unreachable")


@pytest.mark.etcd
@pytest.mark.etcdctl
def test_written_snapshot_restores_into_real_etcd(tmp_path: Path) -> None:
    content, live, last = etcd_content()
    db = tmp_path / "db"
    size = write_db(db, content)
    data = db.read_bytes()
    snap = tmp_path / "snap.db"
    snap.write_bytes(data + hashlib.sha256(data).digest())
    assert status(snap) == ours(snap, size)
    assert ours(snap, size)["revision"] == last
    with Reader(snap, size) as r:
        assert r._bucket(b"key").flags == bbolt.BRANCH
    etcd, endpoint = restore_and_start(snap, tmp_path)
    try:
        for key in (b"/app/007", b"/big/20000", b"/big/100000"):
            got = json.loads(etcdctl(endpoint, "get", key.decode(), "-w", "json").stdout)
            assert got["header"]["revision"] == last
            (kv,) = got["kvs"]
            want = live[key]
            assert base64.b64decode(kv["value"]) == want.value
            assert (kv["create_revision"], kv["mod_revision"], kv["version"]) == (
                want.create_revision,
                want.mod_revision,
                want.version,
            )
            assert kv.get("lease", 0) == want.lease
        gone = next(k for k in (b"/app/%03d" % i for i in range(700)) if k not in live)
        got = json.loads(etcdctl(endpoint, "get", gone.decode(), "-w", "json").stdout)
        assert got.get("kvs", []) == []
        assert "1234abcd" in etcdctl(endpoint, "lease", "list").stdout
    finally:
        etcd.stop()
