"""Snapshot files: a bbolt backend db followed by the SHA-256 of its bytes, as etcd writes them.

Theory of operation
-------------------
``Maintenance.Snapshot`` streams the db and then one last message holding the SHA-256 of
everything before it; ``etcdctl snapshot save`` stores both, so a file is ``db || sha256(db)``
(etcd v3.4.23 ``etcdserver/api/v3rpc/maintenance.go``, ``clientv3/snapshot/v3_snapshot.go``).
A db is a whole number of pages, so a file holds the trailer exactly when ``size % 512 ==
32`` (``hasChecksum``); a raw ``member/snap/db`` has none.

:func:`open_snapshot` checks the trailer first, streaming the file once, with etcd restore's
errors ("snapshot missing hash but --skip-hash-check=false", "expected sha256 [..], got
[..]"), then opens the db (:class:`.bbolt.Reader` validates its pages). :func:`status` is
``etcdctl snapshot status``: the CRC-32C of every bucket name, key and value, the revision of
the last ``key`` entry, the number of entries and the db size; like etcd it does not check the
SHA-256 but does run bbolt's consistency check. :func:`save` writes ``<path>.part`` (mode
0600), appends the digest, fsyncs and renames, so a failed save never leaves a file under the
final name.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import bbolt

__all__ = [
    "CHUNK",
    "HASH_SIZE",
    "SnapshotFileError",
    "Status",
    "has_hash",
    "open_snapshot",
    "read_chunks",
    "save",
    "status",
]

HASH_SIZE = 32
CHUNK = 1 << 20
#: called with the number of bytes read or written since the last call
Progress = Callable[[int], None]


class SnapshotFileError(ValueError):
    """A snapshot file that cannot be used (the message names the problem)."""


@dataclass(frozen=True)
class Status:
    """``etcdctl snapshot status``'s four numbers."""

    hash: int
    revision: int
    total_key: int
    total_size: int

    def json(self) -> dict[str, int]:
        """etcdctl's ``-w json`` keys."""
        return {
            "hash": self.hash,
            "revision": self.revision,
            "totalKey": self.total_key,
            "totalSize": self.total_size,
        }


def has_hash(size: int) -> bool:
    """etcd's ``hasChecksum``: a db is a multiple of 512 bytes, so a trailer leaves 32 over."""
    return size % 512 == HASH_SIZE


def read_chunks(f: BinaryIO, n: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """The next ``n`` bytes of ``f`` in pieces (SnapshotFileError if the file ends first)."""
    while n > 0:
        b = f.read(min(chunk, n))
        if not b:
            raise SnapshotFileError(f"unexpected end of file ({n} bytes missing)")
        n -= len(b)
        yield b


def _digest_list(d: bytes) -> str:
    return "[" + " ".join(str(b) for b in d) + "]"


def open_snapshot(
    path: str | os.PathLike[str], skip_hash_check: bool = False, progress: Progress | None = None
) -> bbolt.Reader:
    """Check the SHA-256 trailer of ``path`` (unless ``skip_hash_check``) and open its db.

    Raises:
        SnapshotFileError: no trailer without ``skip_hash_check``, or a digest mismatch.
        bbolt.BoltError: the db is not a valid bbolt file.
        OSError: the file cannot be read.
    """
    size = os.path.getsize(path)
    hashed = has_hash(size)
    if not hashed and not skip_hash_check:
        raise SnapshotFileError(
            f"{os.fspath(path)}: snapshot missing hash but --skip-hash-check=false"
        )
    db_size = size - HASH_SIZE if hashed else size
    if hashed and not skip_hash_check:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for b in read_chunks(f, db_size):
                digest.update(b)
                if progress is not None:
                    progress(len(b))
            expected = f.read(HASH_SIZE)
        got = digest.digest()
        if got != expected:
            raise SnapshotFileError(
                f"{os.fspath(path)}: expected sha256 {_digest_list(expected)}, "
                f"got {_digest_list(got)}"
            )
    return bbolt.Reader(path, size=db_size)


def status(path: str | os.PathLike[str]) -> Status:
    """``etcdctl snapshot status`` of ``path`` (the trailer, if any, is not checked).

    Raises:
        SnapshotFileError: bbolt's consistency check found problems (they are listed).
        bbolt.BoltError: the db is not a valid bbolt file.
    """
    size = os.path.getsize(path)
    with bbolt.Reader(path, size=size - HASH_SIZE if has_hash(size) else size) as db:
        problems = db.check()
        if problems:
            raise SnapshotFileError(
                f"snapshot file integrity check failed. {len(problems)} errors found.\n"
                + "\n".join(problems)
            )
        names = db.buckets()
        revision = 0
        if b"key" in names:
            last = b""
            for key, _ in db.items(b"key"):
                last = key
            if last:
                if len(last) < 17:
                    raise SnapshotFileError(f"bucket key: {last!r} is not a revision")
                revision = struct.unpack_from(">q", last)[0]
        return Status(
            hash=bbolt.content_hash(db),
            revision=revision,
            total_key=sum(db.count(n) for n in names),
            total_size=db.size,
        )


def save(
    path: str | os.PathLike[str],
    write_db: Callable[[BinaryIO], int],
    progress: Progress | None = None,
) -> int:
    """Write a snapshot file: ``write_db(f)`` writes the db (returns its size), then its
    SHA-256 is appended; the file appears under ``path`` only when complete. Returns the
    file's size."""
    final = Path(path)
    part = final.with_name(final.name + ".part")
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w+b") as f:
            size = write_db(f)
            f.seek(0)
            digest = hashlib.sha256()
            for b in read_chunks(f, size):
                digest.update(b)
                if progress is not None:
                    progress(len(b))
            f.seek(size)
            f.truncate()
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.rename(part, final)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return size + HASH_SIZE
