"""File-system helpers for the storage layer: durable directories and the data-directory lock.

Theory of operation
-------------------
A file's creation, rename or deletion is durable only once the directory holding it has been
fsynced (a crash may otherwise forget the directory entry even though the file's data was
fsynced).  :func:`fsync_dir` does that; :func:`make_dirs` creates missing directories one level
at a time and fsyncs the parent of each one it creates, so a new ``a/b/c`` survives a crash.

:func:`lock_data_dir` takes an exclusive, non-blocking ``flock`` on ``<data-dir>/coord.lock``
(etcd locks its WAL files the same way: ``pkg/fileutil.TryLockFile``, ``LOCK_EX|LOCK_NB``) and
writes the holder's pid into it.  A second process finds the lock taken and gets a
:class:`StorageError` naming the directory and that pid.  The lock belongs to the open file
description, so it lasts until :meth:`DataDirLock.release` or until the process dies in any
way, kill -9 included; no stale lock survives its holder.  It is taken before anything else in
the directory is read or written.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_FILE", "DataDirLock", "StorageError", "fsync_dir", "lock_data_dir", "make_dirs"]

LOCK_FILE = "coord.lock"


class StorageError(OSError):
    """The on-disk state is unusable (the message says which file and why).

    An OSError so the server's entry point reports it as a startup failure ("cannot serve")
    without a traceback.
    """


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


class DataDirLock:
    """An exclusive lock on a data directory (see the module docstring)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = -1


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Create ``data_dir`` if needed and lock it for this process.

    Raises:
        StorageError: another process holds the lock (the message names it by pid).
    """
    make_dirs(data_dir)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise StorageError(
            f"data directory {data_dir} is in use by another coord-server (pid {holder}); "
            f"{path} is locked"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(path, fd)
