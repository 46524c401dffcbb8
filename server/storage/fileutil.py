"""File-system helpers for the storage layer: durable directories.

Theory of operation
-------------------
A file's creation, rename or deletion is durable only once the directory holding it has been
fsynced (a crash may otherwise forget the directory entry even though the file's data was
fsynced).  :func:`fsync_dir` does that; :func:`make_dirs` creates missing directories one level
at a time and fsyncs the parent of each one it creates, so a new ``a/b/c`` survives a crash.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "make_dirs"]


def fsync_dir(path: Path) -> None:
    """fsync a directory so renames/creations/deletions in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents, fsyncing the parent of each one created."""
    missing: list[Path] = []
    p = path.absolute()
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise
        fsync_dir(d.parent)
