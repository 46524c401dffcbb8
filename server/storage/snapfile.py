"""Snapshot files: the applied state at a Raft index, written atomically.

Theory of operation
-------------------
A snapshot file ``<term:016x>-<index:016x>.snap`` holds ``u32 crc32(body) | body`` where body is
a msgpack :class:`~coord.server.raft.types.Snapshot` (its ``data`` is opaque here: the node puts
the state machine's bytes and the membership in it; its metadata carries index, term and
ConfState).  :func:`save` writes a temporary file, fsyncs it, renames it into place and fsyncs
the directory (creating the directory, if needed, durably too), so a crash leaves either the old
set of snapshots or the new one, never a partial file under a ``.snap`` name.
:func:`load_newest` returns the newest snapshot whose CRC checks out (a damaged file is logged
and skipped, as etcd does); :func:`purge` keeps the newest few (and fsyncs the directory after
deleting).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import msgspec

from coord.server import raftcodec
from coord.server.raft.types import Snapshot

from .fileutil import fsync_dir, make_dirs

__all__ = ["list_snapshots", "load_newest", "purge", "save"]

log = logging.getLogger(__name__)
_CRC = struct.Struct(">I")


def _name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}.snap"


def list_snapshots(dir_: Path) -> list[tuple[int, int, Path]]:
    """``(index, term, path)`` of every snapshot file, oldest first."""
    if not dir_.is_dir():
        return []
    out = []
    for p in dir_.iterdir():
        if not p.name.endswith(".snap"):
            continue
        try:
            term_s, index_s = p.name[:-5].split("-")
            out.append((int(index_s, 16), int(term_s, 16), p))
        except ValueError:
            continue
    out.sort()
    return out


def save(dir_: Path, snap: Snapshot) -> Path:
    """Write ``snap`` atomically into ``dir_`` and return its path."""
    make_dirs(dir_)
    body = msgspec.msgpack.encode(snap)
    path = dir_ / _name(snap.metadata.term, snap.metadata.index)
    tmp = path.with_suffix(".snap.tmp")
    with open(tmp, "wb") as f:
        f.write(_CRC.pack(zlib.crc32(body)))
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    fsync_dir(dir_)
    return path


def read(path: Path) -> Snapshot:
    """Read one snapshot file.

    Raises:
        ValueError: the file is truncated or its CRC does not match.
    """
    raw = path.read_bytes()
    if len(raw) < _CRC.size:
        raise ValueError(f"{path}: truncated snapshot file")
    (crc,) = _CRC.unpack_from(raw)
    body = raw[_CRC.size :]
    if zlib.crc32(body) != crc:
        raise ValueError(f"{path}: snapshot CRC mismatch")
    try:
        return raftcodec.decode_snapshot(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ValueError(f"{path}: undecodable snapshot: {e}") from e


def load_newest(dir_: Path) -> Snapshot | None:
    """The newest valid snapshot in ``dir_`` (damaged files are skipped and logged)."""
    for _index, _term, path in reversed(list_snapshots(dir_)):
        try:
            return read(path)
        except (ValueError, OSError) as e:
            log.error("skipping damaged snapshot %s: %s", path, e)
    return None


def purge(dir_: Path, keep: int = 2) -> None:
    """Delete all but the newest ``keep`` snapshot files (and stale temporaries)."""
    snaps = list_snapshots(dir_)
    doomed = [path for _index, _term, path in (snaps[:-keep] if keep else snaps)]
    doomed += dir_.glob("*.snap.tmp")
    for path in doomed:
        path.unlink(missing_ok=True)
    if doomed:
        fsync_dir(dir_)  # make the deletions durable
