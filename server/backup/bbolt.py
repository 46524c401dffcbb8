"""Read and write bbolt database files (the db inside an etcd snapshot) in pure Python.

Theory of operation
===================

The format is bbolt 1.3.6's, which Debian's etcd 3.4.23 uses (reference:
shared/reference/etcd-snapshot-format.md, §1). All bbolt integers are little-endian.

File layout. A db is ``pgid`` pages of ``page_size`` bytes (an etcd snapshot appends 32 bytes of
SHA-256; that trailer is not bbolt's, and callers strip it). Pages 0 and 1 are meta pages; every
other page ``n`` sits at offset ``n * page_size``. A page starts with a 16-byte header (``id``,
``flags``: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist; ``count`` of elements; ``overflow``,
the number of extra contiguous pages, which have no header of their own). A meta page holds the
magic, version 2, the page size, the root bucket's top page, the freelist page (or
0xFFFF_FFFF_FFFF_FFFF when not synced, as Linux etcd runs), the high-water mark ``pgid``, the
``txid`` and an FNV-1a-64 checksum of those fields; a reader takes the valid one with the higher
txid. A leaf has ``count`` 16-byte element headers (flags, pos, ksize, vsize), a branch ``count``
16-byte headers (pos, ksize, child pgid); ``pos`` is measured from the element's own header and
points at the key (the value follows it). A branch element's key is its child's first key.

Buckets. The tree under ``meta.root`` is the root bucket: each entry, flagged 0x01, maps a bucket
name to a 16-byte bucket header (root pgid, sequence). Root 0 means an inline bucket: the page
image of one leaf (header id 0) follows the 16 bytes, inside the parent's value.

Writer. Pages are written once, in ascending pgid order, as the items stream in: a bucket's
items fill a leaf until the next one would pass the page size, then the leaf goes to disk at the
next pgid (a leaf of one big element spans overflow pages) and only its first key and pgid are
kept. When the bucket ends, the kept (first key, pgid) pairs are packed into branch pages, level
by level (at least two elements per branch page, so each level shrinks), up to a single top
page. A bucket that never filled a leaf and whose leaf is at most page_size/4 becomes inline
(bbolt's ``inlineable`` rule). ``close`` writes the root bucket the same way, pads the db to
4096 bytes (bbolt 1.3.6 reads a 4096-byte header block), then seeks back and fills the two
reserved meta pages as ``tx.WriteTo`` does: txid T in page 0, T-1 in page 1, no freelist.

Reader. The file is mmapped (read-only, only the db's bytes); nothing is loaded whole. Lookups
binary-search branch pages and leaves; iteration walks the tree depth first, in element order,
following ``pos``, overflow extents and inline page images. Every page reference and element
extent is bounds-checked, so a corrupt file raises :class:`BoltError` rather than reading beyond
a page. ``check`` is bbolt's ``tx.Check()`` (with 1.3.7's key-order checks): pages reached twice,
out of bounds, of the wrong type, freed yet reachable, or (with a freelist page) neither.

Why here: nothing maintained on PyPI reads or writes bbolt in pure Python. A search of package
docs found one port, ``boltdb`` 0.0.2 (one 2020 release, unmaintained), nothing else.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple, Self

import google_crc32c

__all__ = ["PAGE_SIZE", "BoltError", "Reader", "Writer", "content_hash"]

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2
BRANCH, LEAF, META, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF = 0x01  # leaf element flag: the value is a bucket header
NO_FREELIST = 0xFFFF_FFFF_FFFF_FFFF
MAX_KEY_SIZE = 32768
MAX_VALUE_SIZE = (1 << 31) - 2
MAX_ELEMENTS = 0xFFFE  # bbolt's node.write panics at 0xFFFF
MIN_DB_SIZE = 4096  # bbolt 1.3.6 Open reads this many bytes first
TXID = 2  # the txid of page 0 in a written file (page 1 gets TXID - 1)
_MAX_DEPTH = 64  # no sane tree is this deep; a cyclic corrupt one would be infinitely deep

_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
# meta: magic, version, page size, flags, root, sequence, freelist, pgid, txid
_META = struct.Struct("<IIIIQQQQQ")
_U64 = struct.Struct("<Q")
_BRANCH_ELEM = struct.Struct("<IIQ")  # pos, ksize, child pgid
_LEAF_ELEM = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BUCKET = struct.Struct("<QQ")  # root pgid (0: inline), sequence
_HSIZE = _HEADER.size  # 16, as are both element headers
_META_END = _HSIZE + _META.size  # 72: where the checksum sits


class BoltError(ValueError):
    """A file that is not a valid bbolt database; the message names the problem."""


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFF_FFFF_FFFF_FFFF
    return h


def _show(key: bytes) -> str:
    return repr(key) if len(key) <= 40 else f"{key[:40]!r}... ({len(key)} bytes)"


def _valid_page_size(n: int) -> bool:
    return 512 <= n <= 1 << 16 and n & (n - 1) == 0


class _Meta(NamedTuple):
    page_size: int
    root: int
    freelist: int
    pgid: int
    txid: int


def _parse_meta(buf: mmap.mmap, off: int) -> _Meta | str:
    """The meta page at ``off``, or why it is invalid."""
    if off + _META_END + 8 > len(buf):
        return f"file too short: {len(buf)} bytes"
    magic, version, psize, _flags, root, _seq, freelist, pgid, txid = _META.unpack_from(
        buf, off + _HSIZE
    )
    if magic != MAGIC:
        return "invalid database: bad magic"
    if version != VERSION:
        return f"version mismatch: {version}"
    if _U64.unpack_from(buf, off + _META_END)[0] != _fnv1a64(buf[off + _HSIZE : off + _META_END]):
        return "meta checksum error"
    return _Meta(psize, root, freelist, pgid, txid)


def _meta_page(pgid: int, page_size: int, root: int, pages: int, txid: int) -> bytes:
    fields = _META.pack(MAGIC, VERSION, page_size, 0, root, 0, NO_FREELIST, pages, txid)
    page = _HEADER.pack(pgid, META, 0, 0) + fields + _U64.pack(_fnv1a64(fields))
    return page + bytes(page_size - len(page))


class _Node(NamedTuple):
    """A branch or leaf: a page of the file, or an inline bucket's page image."""

    buf: mmap.mmap | bytes
    off: int  # where its page header starts in buf
    end: int  # where its extent (page plus overflow) ends
    flags: int
    n: int  # its element count
    where: str  # "page 12" or "inline bucket b'meta'", for messages


class Reader:
    """Read-only view of a bbolt file (mmap; never loads the whole file)."""

    page_size: int
    txid: int
    root: int
    pgid: int
    freelist: int

    def __init__(self, path: str | os.PathLike[str], size: int | None = None) -> None:
        """Open ``path``; ``size`` is how many of its bytes are the db (default: all)."""
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            size = file_size if size is None else size
            if not 0 <= size <= file_size:
                raise BoltError(f"size {size} out of range: the file is {file_size} bytes")
            if size < MIN_DB_SIZE:
                raise BoltError(f"file too short: {size} bytes")
            self._mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        try:
            self._open_meta(size)
        except BaseException:
            self._mm.close()
            raise

    def _open_meta(self, size: int) -> None:
        m0 = _parse_meta(self._mm, 0)
        if isinstance(m0, _Meta) and not _valid_page_size(m0.page_size):
            m0 = f"bad page size {m0.page_size}"
        if isinstance(m0, _Meta):
            ps = m0.page_size
        else:  # as bbolt >= 1.3.7: look for meta 1 where each page size would put it
            sizes = [1024 << i for i in range(7)]
            found = (p for p in sizes if getattr(_parse_meta(self._mm, p), "page_size", 0) == p)
            ps = next(found, PAGE_SIZE)
        m1 = _parse_meta(self._mm, ps)
        if isinstance(m1, _Meta) and m1.page_size != ps:
            m1 = f"page size {m1.page_size} differs from meta 0's {ps}"
        valid = [m for m in (m0, m1) if isinstance(m, _Meta)]
        if not valid:
            raise BoltError(str(m0) if m0 == m1 else f"meta 0: {m0}; meta 1: {m1}")
        meta = max(valid, key=lambda m: m.txid)  # a tie goes to meta 0, as in bbolt
        if meta.pgid * ps > size:
            raise BoltError(f"file too short: {size} bytes for {meta.pgid} pages of {ps}")
        if not 2 <= meta.root < meta.pgid:
            raise BoltError(f"meta root page {meta.root} out of bounds (pgid {meta.pgid})")
        if meta.freelist != NO_FREELIST and not 2 <= meta.freelist < meta.pgid:
            raise BoltError(f"meta freelist page {meta.freelist} out of bounds (pgid {meta.pgid})")
        self.page_size, self.txid, self.root = ps, meta.txid, meta.root
        self.pgid, self.freelist = meta.pgid, meta.freelist

    @property
    def size(self) -> int:
        """The db's size in bytes: pgid * page_size (etcdctl's totalSize)."""
        return self.pgid * self.page_size

    def close(self) -> None:
        self._mm.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- pages and elements ----

    def _page(self, pgid: int) -> _Node:
        if pgid < 2:
            raise BoltError(f"page {pgid}: reference to a meta page")
        if pgid >= self.pgid:
            raise BoltError(f"page {pgid}: out of bounds (pgid {self.pgid})")
        off = pgid * self.page_size
        hid, flags, count, overflow = _HEADER.unpack_from(self._mm, off)
        if hid != pgid:
            raise BoltError(f"page {pgid}: header has id {hid}")
        if pgid + overflow >= self.pgid:
            raise BoltError(f"page {pgid}: overflow {overflow} out of bounds (pgid {self.pgid})")
        return _node(self._mm, off, off + (overflow + 1) * self.page_size, flags, count, pgid)

    def _bucket_node(self, name: bytes, value: bytes) -> _Node:
        """The top node of the bucket whose header is ``value``."""
        if len(value) < _BUCKET.size:
            raise BoltError(f"bucket {_show(name)}: header of {len(value)} bytes")
        root = _BUCKET.unpack_from(value)[0]
        if root:
            return self._page(root)
        if len(value) < _BUCKET.size + _HSIZE:
            raise BoltError(f"inline bucket {_show(name)}: {len(value)} bytes")
        _id, flags, count, _overflow = _HEADER.unpack_from(value, _BUCKET.size)
        node = _node(value, _BUCKET.size, len(value), flags, count, f"inline bucket {_show(name)}")
        if flags != LEAF:
            raise BoltError(f"{node.where}: invalid type {flags:#x}")
        return node

    def _leaves(self, node: _Node, depth: int = 0) -> Iterator[_Node]:
        """The leaves under ``node``, in key order."""
        if node.flags == LEAF:
            yield node
            return
        _expect_branch(node, depth)
        for i in range(node.n):
            yield from self._leaves(self._page(_branch_elem(node, i)[1]), depth + 1)

    def _lookup(self, node: _Node, key: bytes) -> tuple[int, bytes] | None:
        """(element flags, value) of ``key`` in the tree under ``node``."""
        for depth in range(_MAX_DEPTH + 1):
            if node.flags == LEAF:
                i = _bisect(node, key, after=False)
                if i < node.n:
                    flags, k, v = _leaf_elem(node, i)
                    if k == key:
                        return flags, v
                return None
            _expect_branch(node, depth)
            lo = _bisect(node, key, after=True)  # the child whose range holds key
            node = self._page(_branch_elem(node, max(lo - 1, 0))[1])
        raise AssertionError("unreachable: _expect_branch limits the depth")

    def _bucket(self, name: bytes) -> _Node:
        found = self._lookup(self._page(self.root), name)
        if found is None or not found[0] & BUCKET_LEAF:
            raise KeyError(name)
        return self._bucket_node(name, found[1])

    # ---- the public reads (check() included) ----

    def buckets(self) -> list[bytes]:
        """The top-level bucket names, in key order."""
        names = []
        for leaf in self._leaves(self._page(self.root)):
            for i in range(leaf.n):
                flags, key, _value = _leaf_elem(leaf, i)
                if not flags & BUCKET_LEAF:
                    raise BoltError(f"not a bucket: {_show(key)}")
                names.append(key)
        return names

    def items(self, bucket: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The (key, value) pairs of ``bucket`` in key order; a nested bucket's value is b"".

        Raises KeyError if there is no such top-level bucket."""
        return self._items(self._bucket(bucket))

    def _items(self, top: _Node) -> Iterator[tuple[bytes, bytes]]:
        for leaf in self._leaves(top):
            for i in range(leaf.n):
                flags, key, value = _leaf_elem(leaf, i)
                yield key, b"" if flags & BUCKET_LEAF else value

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        """The value of ``key`` in ``bucket`` (b"" for a nested bucket), or None."""
        found = self._lookup(self._bucket(bucket), key)
        if found is None:
            return None
        return b"" if found[0] & BUCKET_LEAF else found[1]

    def count(self, bucket: bytes) -> int:
        """The number of entries in ``bucket`` (nested buckets count as one each)."""
        return sum(leaf.n for leaf in self._leaves(self._bucket(bucket)))

    def check(self) -> list[str]:
        """The problems bbolt's ``tx.Check()`` (1.3.7's, with key order) would report; [] if none.

        "unreachable unfreed" is only possible with a freelist page: without one, bbolt
        counts every unreached page as free."""
        st = _CheckState({0, 1}, set(), [])
        if self.freelist != NO_FREELIST:
            try:
                ids, pages = self._freelist_ids()
            except BoltError as e:
                st.out.append(str(e))
            else:
                st.reached.update(range(self.freelist, self.freelist + pages))
                for pgid in ids:
                    if pgid in st.freed:
                        st.out.append(f"page {pgid}: already freed")
                    st.freed.add(pgid)
        self._check_page(st, self.root, None, None, 0)
        if self.freelist != NO_FREELIST:
            st.out.extend(
                f"page {pgid}: unreachable unfreed"
                for pgid in range(2, self.pgid)
                if pgid not in st.reached and pgid not in st.freed
            )
        return st.out

    def _freelist_ids(self) -> tuple[list[int], int]:
        """The ids the freelist page lists, and how many pages it spans."""
        pgid = self.freelist
        off = pgid * self.page_size
        hid, flags, count, overflow = _HEADER.unpack_from(self._mm, off)
        if hid != pgid or flags != FREELIST:
            raise BoltError(f"page {pgid}: not a freelist page (id {hid}, flags {flags:#x})")
        if pgid + overflow >= self.pgid:
            raise BoltError(f"page {pgid}: overflow {overflow} out of bounds (pgid {self.pgid})")
        start = off + _HSIZE
        if count == 0xFFFF:  # the real count is the first u64
            count = _U64.unpack_from(self._mm, start)[0]
            start += 8
        if start + 8 * count > off + (overflow + 1) * self.page_size:
            raise BoltError(f"page {pgid}: freelist of {count} ids overflows the page")
        return list(struct.unpack_from(f"<{count}Q", self._mm, start)), overflow + 1

    def _check_page(
        self, st: _CheckState, pgid: int, lo: bytes | None, hi: bytes | None, depth: int
    ) -> None:
        try:
            node = self._page(pgid)
        except BoltError as e:
            st.out.append(str(e))
            return
        pages = range(pgid, pgid + (node.end - node.off) // self.page_size)
        again = [p for p in pages if p in st.reached]
        st.out.extend(f"page {p}: multiple references" for p in again)
        st.reached.update(pages)
        if pgid in again:  # its subtree was checked where it was first reached
            return
        if pgid in st.freed:
            st.out.append(f"page {pgid}: reachable freed")
        if node.flags not in (BRANCH, LEAF):
            st.out.append(f"page {pgid}: invalid type {node.flags:#x}")
        elif depth > _MAX_DEPTH:
            st.out.append(f"page {pgid}: tree deeper than {_MAX_DEPTH} levels")
        else:
            self._check_node(st, node, lo, hi, depth)

    def _check_node(
        self, st: _CheckState, node: _Node, lo: bytes | None, hi: bytes | None, depth: int
    ) -> None:
        """Key order in ``node`` (within [lo, hi) from its parent), then its children."""
        elems: list[tuple[bytes, bytes | int, int]]
        try:
            if node.flags == BRANCH:
                elems = [(k, c, 0) for k, c in (_branch_elem(node, i) for i in range(node.n))]
            else:
                elems = [(k, v, f) for f, k, v in (_leaf_elem(node, i) for i in range(node.n))]
        except BoltError as e:
            st.out.append(str(e))
            return
        if node.flags == BRANCH and not elems:
            st.out.append(f"{node.where}: empty branch")
        for i, (key, ref, flags) in enumerate(elems):
            if i and key <= elems[i - 1][0]:
                prev = _show(elems[i - 1][0])
                st.out.append(f"{node.where}: key {i} {_show(key)} not after {prev}")
            elif (lo is not None and key < lo) or (hi is not None and key >= hi):
                st.out.append(f"{node.where}: key {i} {_show(key)} outside its branch's range")
            if isinstance(ref, int):  # a branch's child: its keys lie in [key, next key)
                upper = elems[i + 1][0] if i + 1 < len(elems) else hi
                self._check_page(st, ref, key, upper, depth + 1)
            elif flags & BUCKET_LEAF and len(ref) >= _BUCKET.size and _BUCKET.unpack_from(ref)[0]:
                self._check_page(st, _BUCKET.unpack_from(ref)[0], None, None, depth + 1)
            elif flags & BUCKET_LEAF:  # inline: no pages (bbolt skips it); we check its keys
                try:
                    self._check_node(st, self._bucket_node(key, ref), None, None, depth + 1)
                except BoltError as e:
                    st.out.append(str(e))


class _CheckState(NamedTuple):
    reached: set[int]  # pages reached so far (the metas and the freelist included)
    freed: set[int]  # pages the freelist page lists
    out: list[str]  # the problems found


def _node(
    buf: mmap.mmap | bytes, off: int, end: int, flags: int, count: int, where: object
) -> _Node:
    name = where if isinstance(where, str) else f"page {where}"
    if flags in (BRANCH, LEAF) and off + _HSIZE * (count + 1) > end:
        raise BoltError(f"{name}: {count} elements do not fit")
    return _Node(buf, off, end, flags, count, name)


def _expect_branch(node: _Node, depth: int) -> None:
    if node.flags != BRANCH:
        raise BoltError(f"{node.where}: invalid type {node.flags:#x}")
    if node.n == 0:
        raise BoltError(f"{node.where}: empty branch")
    if depth >= _MAX_DEPTH:
        raise BoltError(f"{node.where}: tree deeper than {_MAX_DEPTH} levels")


def _leaf_elem(node: _Node, i: int) -> tuple[int, bytes, bytes]:
    at = node.off + _HSIZE * (i + 1)
    flags, pos, ksize, vsize = _LEAF_ELEM.unpack_from(node.buf, at)
    k = at + pos
    if k + ksize + vsize > node.end:
        raise BoltError(f"{node.where}: element {i} out of bounds")
    return flags, node.buf[k : k + ksize], node.buf[k + ksize : k + ksize + vsize]


def _branch_elem(node: _Node, i: int) -> tuple[bytes, int]:
    at = node.off + _HSIZE * (i + 1)
    pos, ksize, child = _BRANCH_ELEM.unpack_from(node.buf, at)
    if at + pos + ksize > node.end:
        raise BoltError(f"{node.where}: element {i} out of bounds")
    return node.buf[at + pos : at + pos + ksize], child


def _bisect(node: _Node, key: bytes, after: bool) -> int:
    """The first element whose key is >= ``key`` (> ``key`` if ``after``)."""
    lo, hi = 0, node.n
    while lo < hi:
        mid = (lo + hi) // 2
        k = _leaf_elem(node, mid)[1] if node.flags == LEAF else _branch_elem(node, mid)[0]
        if k < key or (after and k == key):
            lo = mid + 1
        else:
            hi = mid
    return lo


def content_hash(reader: Reader) -> int:
    """etcdctl snapshot status's hash: CRC-32C of each bucket's name, then its keys and values."""
    crc, buf = 0, bytearray()
    for name in reader.buckets():
        buf += name
        for key, value in reader.items(name):
            buf += key
            buf += value
            if len(buf) >= 1 << 16:
                crc = google_crc32c.extend(crc, bytes(buf))
                buf.clear()
    return int(google_crc32c.extend(crc, bytes(buf)))


def _leaf_body(elems: list[tuple[bytes, bytes]], flag: int) -> bytes:
    """A leaf's element headers and data (what follows its page header)."""
    headers, data = bytearray(), [b""]
    at = _HSIZE * (len(elems) + 1)  # where the next key goes, from the page start
    for i, (key, value) in enumerate(elems):
        headers += _LEAF_ELEM.pack(flag, at - _HSIZE * (i + 1), len(key), len(value))
        data += (key, value)
        at += len(key) + len(value)
    data[0] = bytes(headers)
    return b"".join(data)


def _branch_body(elems: list[tuple[bytes, int]]) -> bytes:
    headers, data = bytearray(), [b""]
    at = _HSIZE * (len(elems) + 1)
    for i, (key, child) in enumerate(elems):
        headers += _BRANCH_ELEM.pack(at - _HSIZE * (i + 1), len(key), child)
        data.append(key)
        at += len(key)
    data[0] = bytes(headers)
    return b"".join(data)


def _check_key(key: bytes, prev: bytes | None, what: str) -> None:
    if not key:
        raise ValueError(f"empty {what}")
    if len(key) > MAX_KEY_SIZE:
        raise ValueError(f"{what} of {len(key)} bytes is longer than {MAX_KEY_SIZE}")
    if prev is not None and key <= prev:
        adj = "duplicate" if key == prev else "out-of-order"
        raise ValueError(f"{adj} {what} {_show(key)} after {_show(prev)}")


class Writer:
    """Writes a bbolt file in one pass to a seekable binary file: buckets in ascending name order,
    each bucket's items in ascending key order, streamed (memory holds one page of items plus the
    first key of every page written so far).

    The file is written from its current position. A ValueError leaves a partial file."""

    def __init__(self, f: BinaryIO, page_size: int = PAGE_SIZE) -> None:
        if not _valid_page_size(page_size):
            raise ValueError(f"page size {page_size}: not a power of two in [512, 65536]")
        self._f, self._ps, self._start = f, page_size, f.tell()
        self._next = 2  # the next free pgid; pages 0 and 1 are the metas, written by close()
        self._roots: list[tuple[bytes, bytes]] = []  # bucket name -> bucket value
        self._closed = False
        self._f.write(bytes(2 * page_size))

    @property
    def bytes_written(self) -> int:
        """Bytes of the db written so far (the metas' reserved pages included)."""
        return self._next * self._ps

    def bucket(self, name: bytes, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Write a top-level bucket; names must ascend, and so must each bucket's keys."""
        if self._closed:
            raise ValueError("writer is closed")
        _check_key(name, self._roots[-1][0] if self._roots else None, "bucket name")
        root, image = self._tree(items, 0, inline=True)
        self._roots.append((name, _BUCKET.pack(root, 0) + image))

    def close(self) -> int:
        """Write the root bucket and the metas; return the db's size (pgid * page size)."""
        if self._closed:
            return self.bytes_written
        self._closed = True
        root, _ = self._tree(self._roots, BUCKET_LEAF, inline=False)
        while self.bytes_written < MIN_DB_SIZE:  # unreachable, unfreed: fine without a freelist
            self._f.write(bytes(self._ps))
            self._next += 1
        pages = self._next
        self._f.seek(self._start)
        self._f.write(_meta_page(0, self._ps, root, pages, TXID))
        self._f.write(_meta_page(1, self._ps, root, pages, TXID - 1))
        self._f.seek(self._start + pages * self._ps)
        self._f.flush()
        return pages * self._ps

    def _emit(self, flags: int, count: int, body: bytes) -> int:
        """Write one node at the next pgid, padded to whole pages; return its pgid."""
        pgid, total = self._next, _HSIZE + len(body)
        pages = -(-total // self._ps)
        self._f.write(_HEADER.pack(pgid, flags, count, pages - 1))
        self._f.write(body)
        self._f.write(bytes(pages * self._ps - total))
        self._next += pages
        return pgid

    def _tree(
        self, items: Iterable[tuple[bytes, bytes]], flag: int, inline: bool
    ) -> tuple[int, bytes]:
        """Write a bucket's tree: (top pgid, b"") or, inline, (0, its leaf's page image)."""
        leaf: list[tuple[bytes, bytes]] = []
        size = _HSIZE  # of the leaf being filled
        level: list[tuple[bytes, int]] = []  # (first key, pgid) of each leaf written
        prev: bytes | None = None
        for key, value in items:
            _check_key(key, prev, "key")
            if len(value) > MAX_VALUE_SIZE:
                raise ValueError(f"value of {len(value)} bytes for key {_show(key)}: too long")
            prev = key
            elem = _HSIZE + len(key) + len(value)
            if leaf and (size + elem > self._ps or len(leaf) == MAX_ELEMENTS):
                level.append((leaf[0][0], self._emit(LEAF, len(leaf), _leaf_body(leaf, flag))))
                leaf, size = [], _HSIZE
            leaf.append((key, value))
            size += elem
        if inline and not level and size <= self._ps // 4:
            return 0, _HEADER.pack(0, LEAF, len(leaf), 0) + _leaf_body(leaf, flag)
        if leaf or not level:
            level.append(
                (leaf[0][0] if leaf else b"", self._emit(LEAF, len(leaf), _leaf_body(leaf, flag)))
            )
        while len(level) > 1:  # pack each level into branch pages, two elements at least each
            upper: list[tuple[bytes, int]] = []
            page: list[tuple[bytes, int]] = []
            size = _HSIZE
            for key, child in level:
                elem = _HSIZE + len(key)
                if len(page) >= 2 and (size + elem > self._ps or len(page) == MAX_ELEMENTS):
                    upper.append((page[0][0], self._emit(BRANCH, len(page), _branch_body(page))))
                    page, size = [], _HSIZE
                page.append((key, child))
                size += elem
            upper.append((page[0][0], self._emit(BRANCH, len(page), _branch_body(page))))
            level = upper
        return level[0][1], b""
