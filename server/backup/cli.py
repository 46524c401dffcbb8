"""``coord-server snapshot save|restore|status``: etcdctl/etcdutl's snapshot commands.

Theory of operation: each command is a thin layer over :mod:`.snapshotfile`, :mod:`.etcddb`
and :mod:`.restore`, with etcdctl's flag names and defaults (etcd v3.4.23
``etcdctl/ctlv3/command/snapshot_command.go``). ``save --data-dir D FILE`` is the offline
backup of a stopped member (etcdutl's); an online backup is ``etcdctl snapshot save``, which
works against coord unchanged. ``status`` prints etcdctl's four numbers as a table, or with
``-w simple|json|fields``. On a terminal, save and restore show progress (bytes and keys, with
a rate and an ETA; Rich); elsewhere they print only their result. Errors are one line,
``Error: ...``, exit code 1; bad usage exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from coord.server.storage import StorageError

from . import bbolt, etcddb, restore, snapshotfile

__all__ = ["build_parser", "human_bytes", "main"]


def human_bytes(n: int) -> str:
    """go-humanize's ``Bytes`` (SI units), as etcdctl prints sizes: ``61 kB``, ``1.2 MB``."""
    if n < 10:
        return f"{n} B"
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    e = min(math.floor(math.log(n, 1000)), len(units) - 1)
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{val:.0f} {units[e]}" if val >= 10 else f"{val:.1f} {units[e]}"


class _Meter:
    """Progress on a terminal (bytes and keys, each with its rate), nothing elsewhere."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress

    def counter(self, what: str, total: int | None) -> Callable[[int], None] | None:
        """A callback adding to the bar ``what`` ("bytes" or "keys"), or None when quiet."""
        p = self._progress
        if p is None:
            return None
        show = human_bytes if what == "bytes" else (lambda n: f"{n:,} keys")
        task = p.add_task(what, total=total, shown=show(0), rate="")
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            speed = p.tasks[task].speed if task < len(p.tasks) else None
            rate = f"{show(int(speed))}/s" if speed else ""
            p.update(task, advance=n, shown=show(done), rate=rate)

        return advance


@contextmanager
def _meter(enabled: bool) -> Iterator[_Meter]:
    if not enabled:
        yield _Meter(None)
        return
    progress = Progress(
        TextColumn("{task.description:>5}"),
        BarColumn(),
        TextColumn("{task.fields[shown]}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with progress:
        yield _Meter(progress)


def build_parser() -> argparse.ArgumentParser:
    """``coord-server snapshot`` and its three commands."""
    ap = argparse.ArgumentParser(
        prog="coord-server snapshot",
        description="Save, restore and check etcd-format snapshot files.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="write a snapshot of a stopped member's data directory")
    save.add_argument("--data-dir", required=True, type=Path, help="the member's data directory")
    save.add_argument("file", type=Path, help="snapshot file to write")
    rs = sub.add_parser("restore", help="build a new member's data directory from a snapshot")
    rs.add_argument("file", type=Path, help="snapshot file (from coord or etcd 3.4/3.5)")
    rs.add_argument("--name", default="default", help="this member's name")
    rs.add_argument("--data-dir", type=Path, help="directory to create (default: <name>.etcd)")
    rs.add_argument(
        "--initial-cluster",
        default="default=http://localhost:2380",
        help="the new cluster's members, name=peer-url,...",
    )
    rs.add_argument("--initial-cluster-token", default="etcd-cluster")
    rs.add_argument(
        "--initial-advertise-peer-urls",
        default="http://localhost:2380",
        help="this member's peer URLs, comma separated",
    )
    rs.add_argument(
        "--skip-hash-check",
        action="store_true",
        help="accept a file without (or with a wrong) SHA-256 trailer (a copied member/snap/db)",
    )
    st = sub.add_parser("status", help="hash, revision, total keys and size of a snapshot file")
    st.add_argument("file", type=Path)
    st.add_argument(
        "-w", "--write-out", choices=["table", "simple", "json", "fields"], default="table"
    )
    return ap


def _save(args: argparse.Namespace, meter: _Meter) -> str:
    sm, membership = restore.load_member(args.data_dir)
    members = [m.info() for m in membership.members.values()]
    cap = etcddb.capture(sm, members, membership.removed, etcddb.CLUSTER_VERSION)
    keys = meter.counter("keys", sum(len(c) for _, c in sm.kv.history()))
    size = snapshotfile.save(
        args.file,
        lambda f: etcddb.write_backend(f, cap, keys),
        meter.counter("bytes", None),
    )
    return (
        f"Snapshot saved at {args.file} ({human_bytes(size)}, revision {sm.kv.rev}, "
        f"{sm.kv.key_count()} keys)"
    )


def _restore(args: argparse.Namespace, meter: _Meter) -> str:
    data_dir = args.data_dir or Path(f"{args.name}.etcd")
    done = restore.restore(
        args.file,
        data_dir,
        args.name,
        args.initial_cluster,
        [u.strip() for u in args.initial_advertise_peer_urls.split(",") if u.strip()],
        args.initial_cluster_token,
        args.skip_hash_check,
        meter.counter("bytes", args.file.stat().st_size),
        meter.counter("keys", None),
    )
    return (
        f"Restored {args.file} into {data_dir}: member {done.member_id:x} of cluster "
        f"{done.cluster_id:x}, revision {done.revision}, {done.keys} keys"
    )


def _status(args: argparse.Namespace) -> str:
    s = snapshotfile.status(args.file)
    if args.write_out == "json":
        return json.dumps(s.json(), separators=(",", ":"))
    if args.write_out == "simple":
        return f"{s.hash:x}, {s.revision}, {s.total_key}, {human_bytes(s.total_size)}"
    if args.write_out == "fields":
        return "\n".join(
            [
                f'"Hash" : {s.hash}',
                f'"Revision" : {s.revision}',
                f'"Keys" : {s.total_key}',
                f'"Size" : {s.total_size}',
            ]
        )
    head = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"]
    row = [f"{s.hash:x}", str(s.revision), str(s.total_key), human_bytes(s.total_size)]
    widths = [max(len(h), len(c)) + 2 for h, c in zip(head, row, strict=True)]
    rule = "+" + "+".join("-" * w for w in widths) + "+"
    return "\n".join(
        [
            rule,
            "|" + "|".join(h.center(w) for h, w in zip(head, widths, strict=True)) + "|",
            rule,
            "|" + "|".join(f" {c.rjust(w - 2)} " for c, w in zip(row, widths, strict=True)) + "|",
            rule,
        ]
    )


def main(argv: Sequence[str]) -> int:
    """Run one snapshot command; returns the exit code."""
    args = build_parser().parse_args(list(argv))
    try:
        if args.command == "status":
            out = _status(args)
        else:
            with _meter(sys.stderr.isatty()) as meter:
                out = (_save if args.command == "save" else _restore)(args, meter)
    except (
        snapshotfile.SnapshotFileError,
        bbolt.BoltError,
        etcddb.SnapshotFormatError,
        restore.RestoreError,
        StorageError,
        OSError,
    ) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0
