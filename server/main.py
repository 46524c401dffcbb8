"""``coord-server``: the command line, with etcd's flag names and defaults.

Parses flags into a :class:`coord.server.config.Config`, configures logging, runs
:class:`coord.server.app.CoordServer` on asyncio and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence

import anyio

from . import failpoints
from .app import CoordServer
from .config import DEFAULT_MAX_REQUEST_BYTES, Config
from .tls import TLSInfo

__all__ = ["build_parser", "config_from_args", "main", "parse_duration"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every flag documented; names as etcd's)."""
    p = argparse.ArgumentParser(
        prog="coord-server",
        description="coord: an etcd-v3-compatible coordination server (gRPC and the JSON "
                    "gateway on every client URL). Each member keeps its Raft log and "
                    "snapshots in --data-dir; flags and defaults follow etcd's.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--name", default="default", help="human-readable name for this member")
    a("--data-dir", default=None, help="path to the data directory (default: <name>.coord)")
    a("--listen-client-urls", default="http://127.0.0.1:2379",
      help="comma-separated URLs to listen on for client traffic (all are bound)")
    a("--advertise-client-urls", default="http://127.0.0.1:2379",
      help="comma-separated client URLs of this member advertised to the cluster")
    a("--listen-peer-urls", default="http://127.0.0.1:2380",
      help="comma-separated URLs to listen on for peer traffic (Raft node)")
    a("--initial-advertise-peer-urls", default="http://127.0.0.1:2380",
      help="comma-separated peer URLs of this member advertised to the cluster")
    a("--initial-cluster", default="",
      help="initial cluster configuration for bootstrapping, name=peerURL,... "
           "(default: <name>=<initial-advertise-peer-urls>)")
    a("--initial-cluster-state", default="new", choices=["new", "existing"],
      help="'new' when all members are bootstrapped together, 'existing' to join")
    a("--initial-cluster-token", default="etcd-cluster",
      help="initial cluster token, part of member and cluster IDs")
    a("--quota-backend-bytes", type=int, default=0,
      help="raise the NOSPACE alarm when the store exceeds this size (0 = 2 GiB)")
    a("--max-txn-ops", type=int, default=128,
      help="maximum number of operations permitted in a transaction branch")
    a("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
      help="maximum client request size in bytes the server will accept")
    a("--heartbeat-interval", type=int, default=100, help="time (ms) of a heartbeat interval")
    a("--election-timeout", type=int, default=1000,
      help="time (ms) for an election to timeout; minimum lease TTL is 1.5x this")
    a("--snapshot-count", type=int, default=10000,
      help="number of committed entries that trigger a snapshot")
    a("--experimental-watch-progress-notify-interval", type=_duration_arg, default=600.0,
      dest="watch_progress_notify_interval",
      help="interval between progress notifications to idle progress_notify watchers: a "
           "Go duration (200ms, 10s, 1m30s) or a number of seconds")
    a("--experimental-enable-lease-checkpoint", nargs="?", const=True, default=True,
      type=_flag_bool, dest="enable_lease_checkpoint",
      help="the leader replicates leases' remaining TTLs, so a leader change does not restart "
           "them (etcd #9888; on by default, unlike etcd)")
    a("--experimental-lease-checkpoint-interval", type=_duration_arg, default=300.0,
      dest="lease_checkpoint_interval",
      help="how often the leader checkpoints remaining lease TTLs: a Go duration or seconds")
    a("--auto-compaction-mode", default="periodic",
      help="interpret --auto-compaction-retention as: 'periodic' (a duration, a bare number "
           "meaning hours) or 'revision' (a number of revisions)")
    a("--auto-compaction-retention", default="0",
      help="auto compaction retention for the key-value store's history (0 disables it); "
           "only the leader compacts, through Raft")
    a("--experimental-auto-compaction-revision-interval", type=_duration_arg, default=300.0,
      dest="auto_compaction_revision_interval",
      help="coord only: how often revision-mode auto-compaction runs (etcd: fixed 5m); a Go "
           "duration or seconds")
    a("--force-new-cluster", nargs="?", const=True, default=False, type=_flag_bool,
      help="restart this member as a one-member cluster from its data directory (disaster "
           "recovery: every other member is removed from the membership)")
    a("--log-level", default="info", choices=sorted(_LEVELS),
      help="log level")
    for side, what in (("", "client"), ("peer-", "peer")):
        a(f"--{side}cert-file", default="", help=f"path to the {what} server TLS cert file")
        a(f"--{side}key-file", default="", help=f"path to the {what} server TLS key file")
        a(f"--{side}trusted-ca-file", default="",
          help=f"path to the {what} TLS trusted CA file (verifies {what} certificates)")
        a(f"--{side}client-cert-auth", nargs="?", const=True, default=False, type=_flag_bool,
          help=f"require {what} certificates signed by --{side}trusted-ca-file")
    return p


_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(value: str) -> float:
    """Seconds in a Go duration (``200ms``, ``10s``, ``1m30s``, ``1.5h``) or a plain number of
    seconds; ValueError (``invalid duration ...``) otherwise. Negative durations are refused."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number >= 0 and text.lstrip("+").replace(".", "", 1).isdigit():
            return number
        raise ValueError(f"invalid duration {value!r}")
    total, pos = 0.0, 0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {value!r}: expected e.g. 200ms, 10s, 1m30s")
    return total


def _duration_arg(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _flag_bool(value: str) -> bool:
    """Go-style boolean flag value (``--client-cert-auth=true``)."""
    v = value.strip().lower()
    if v in ("1", "t", "true", "yes"):
        return True
    if v in ("0", "f", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}")


def config_from_args(args: argparse.Namespace) -> Config:
    """A Config from parsed arguments (ValueError on inconsistent values)."""
    return Config(
        name=args.name, data_dir=args.data_dir or "",
        listen_client_urls=args.listen_client_urls,
        advertise_client_urls=args.advertise_client_urls,
        listen_peer_urls=args.listen_peer_urls,
        initial_advertise_peer_urls=args.initial_advertise_peer_urls,
        initial_cluster=args.initial_cluster, initial_cluster_state=args.initial_cluster_state,
        initial_cluster_token=args.initial_cluster_token,
        quota_backend_bytes=args.quota_backend_bytes, max_txn_ops=args.max_txn_ops,
        max_request_bytes=args.max_request_bytes, heartbeat_interval=args.heartbeat_interval,
        election_timeout=args.election_timeout, snapshot_count=args.snapshot_count,
        watch_progress_notify_interval=args.watch_progress_notify_interval,
        enable_lease_checkpoint=args.enable_lease_checkpoint,
        lease_checkpoint_interval=args.lease_checkpoint_interval,
        auto_compaction_mode=args.auto_compaction_mode,
        auto_compaction_retention=args.auto_compaction_retention,
        auto_compaction_revision_interval=args.auto_compaction_revision_interval,
        force_new_cluster=args.force_new_cluster,
        log_level=args.log_level,
        client_tls=TLSInfo(args.cert_file, args.key_file, args.trusted_ca_file,
                           args.client_cert_auth),
        peer_tls=TLSInfo(args.peer_cert_file, args.peer_key_file, args.peer_trusted_ca_file,
                         args.peer_client_cert_auth, prefix="peer-"),
    )


async def _run(config: Config) -> None:
    stop = anyio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await CoordServer(config).serve(stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``coord-server`` and ``python -m coord.server``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cluster"]:  # coord-server cluster --size 3: a local multi-process cluster
        from .localcluster import main as cluster_main

        return cluster_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    logging.basicConfig(level=_LEVELS[config.log_level], stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("grpclib").setLevel(max(logging.WARNING, _LEVELS[config.log_level]))
    if os.environ.get(failpoints.ENV_HTTP):
        failpoints.serve_http(os.environ[failpoints.ENV_HTTP])
    try:
        asyncio.run(_run(config))
    except OSError as e:
        logging.getLogger("coord.server").error("cannot serve: %s", e)
        return 1
    return 0
