"""``coord-server``: the command line, with etcd's flag names and defaults.

:func:`build_parser` defines every flag; :func:`coord.server.configsource.resolve` reads them
from the command line and ``ETCD_*`` variables, or from a ``--config-file`` (etcd's YAML
format), so each flag defined here has its variable and file key with no code of its own.
The result becomes a :class:`coord.server.config.Config`; logging is configured from it
(server/logconfig.py), then :class:`coord.server.app.CoordServer` runs on asyncio and stops
cleanly on SIGTERM/SIGINT. Any bad value, variable or file is one usage line, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import logging
import os
import platform
import re
import signal
import sys
from collections.abc import Callable, Sequence

import anyio

from coord import __version__

from . import configsource, failpoints, logconfig
from .backup.etcddb import CLUSTER_VERSION as ETCD_VERSION
from .config import DEFAULT_MAX_REQUEST_BYTES, EVENT_LOOPS, METRICS_LEVELS, Config
from .tls import TLSInfo

__all__ = [
    "build_parser",
    "config_from_args",
    "loop_factory",
    "main",
    "parse_duration",
    "version_text",
]

_EPILOG = """\
configuration sources (as etcd):
  Every flag --some-flag can also be set with the environment variable ETCD_SOME_FLAG
  (e.g. ETCD_NAME, ETCD_INITIAL_CLUSTER, ETCD_INITIAL_CLUSTER_STATE, the lines that
  'etcdctl member add' prints). A variable for a flag also given on the command line is an
  error; unrecognized ETCD_* variables are logged and ignored.
  --config-file PATH (or ETCD_CONFIG_FILE) reads etcd's YAML configuration file: keys are the
  flag names (name:, data-dir:, initial-cluster:, ...), TLS settings go under
  client-transport-security: and peer-transport-security: (cert-file, key-file,
  trusted-ca-file, client-cert-auth). When a config file is given, all other command-line
  flags and environment variables are ignored. Unknown keys are an error.

local cluster:
  coord-server cluster [--size 3] [--data-dir coord-cluster.data] [--base-port 2379] [FLAG...]
  starts a local cluster of --size members as child processes on loopback (member i listens
  for clients on base+2i and for peers on base+2i+1), prints their endpoints, passes any
  other FLAG to every member and stops them all on Ctrl-C.
  See 'coord-server cluster --help'.
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends each flag's default once: not where the help text already states it, nor
    for flags without a default value."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "(default" in text
            or "by default" in text
            or action.default in (None, "", argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def version_text() -> str:
    """What ``coord-server --version`` prints (etcd prints its version, Git SHA, Go version)."""
    api = ".".join(ETCD_VERSION.split(".")[:2])
    return f"coord-server {__version__}\netcd API: {api}\nPython: {platform.python_version()}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every flag documented; names as etcd's)."""
    p = argparse.ArgumentParser(
        prog="coord-server",
        description="coord: an etcd-v3-compatible coordination server (gRPC and the JSON\n"
        "gateway on every client URL). Each member keeps its Raft log and\n"
        "snapshots in --data-dir; flags and defaults follow etcd's.",
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    a = p.add_argument
    a(
        "--version",
        action="version",
        version=version_text(),
        help="print coord's version and the etcd API version it speaks, and exit",
    )
    a(
        "--config-file",
        default=None,
        help="path to an etcd YAML configuration file; when given, all other command-line "
        "flags and environment variables are ignored",
    )
    a("--name", default="default", help="human-readable name for this member")
    a("--data-dir", default=None, help="path to the data directory (default: <name>.coord)")
    a(
        "--listen-client-urls",
        default="http://127.0.0.1:2379",
        help="comma-separated URLs to listen on for client traffic (all are bound)",
    )
    a(
        "--advertise-client-urls",
        default="http://127.0.0.1:2379",
        help="comma-separated client URLs of this member advertised to the cluster",
    )
    a(
        "--listen-peer-urls",
        default="http://127.0.0.1:2380",
        help="comma-separated URLs to listen on for peer traffic (Raft node); a socket passed "
        "by systemd socket activation (LISTEN_FDS) on a URL's address is used as it is",
    )
    a(
        "--listen-port-file",
        default="",
        help="coord only: once serving clients, write the bound client, peer and metrics URLs to "
        'this file as JSON ({"client": [...], "peer": [...], "metrics": [...]}); port 0 in '
        "--listen-client-urls binds an ephemeral port, which this file (and the log) names",
    )
    a(
        "--listen-metrics-urls",
        default="",
        help="comma-separated URLs that serve only /metrics, /health, /livez and /readyz "
        "(http, or https with the client --cert-file and --key-file)",
    )
    a(
        "--metrics",
        default="basic",
        choices=list(METRICS_LEVELS),
        help="'basic' metrics, or 'extensive' (adds the grpc_server_handling_seconds "
        "histogram); coord only: 'off' counts nothing per request and serves no /metrics",
    )
    a(
        "--auth-token",
        default="simple",
        help="'simple' (random tokens, replicated with the login) or "
        "'jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256|ES256|...[,ttl=5m]'",
    )
    a(
        "--auth-token-ttl",
        type=int,
        default=300,
        help="seconds a simple token lives after its last use",
    )
    a(
        "--bcrypt-cost",
        type=int,
        default=10,
        help="bcrypt cost of password hashes (4-31)",
    )
    a(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="auto",
        help="coord only: 'auto' (uvloop when installed, else asyncio), 'uvloop' or 'asyncio'",
    )
    a(
        "--initial-advertise-peer-urls",
        default="http://127.0.0.1:2380",
        help="comma-separated peer URLs of this member advertised to the cluster",
    )
    a(
        "--initial-cluster",
        default="",
        help="initial cluster configuration for bootstrapping, name=peerURL,... "
        "(default: <name>=<initial-advertise-peer-urls>)",
    )
    a(
        "--initial-cluster-state",
        default="new",
        choices=["new", "existing"],
        help="'new' when all members are bootstrapped together, 'existing' to join",
    )
    a(
        "--initial-cluster-token",
        default="etcd-cluster",
        help="initial cluster token, part of member and cluster IDs",
    )
    a(
        "--quota-backend-bytes",
        type=int,
        default=0,
        help="raise the NOSPACE alarm when the store exceeds this size (0 = 2 GiB)",
    )
    a(
        "--max-txn-ops",
        type=int,
        default=128,
        help="maximum number of operations permitted in a transaction branch",
    )
    a(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="maximum client request size in bytes the server will accept",
    )
    a("--heartbeat-interval", type=int, default=100, help="time (ms) of a heartbeat interval")
    a(
        "--election-timeout",
        type=int,
        default=1000,
        help="time (ms) for an election to timeout; minimum lease TTL is 1.5x this",
    )
    a(
        "--snapshot-count",
        type=int,
        default=100000,
        help="number of committed entries that trigger a snapshot (etcd 3.4's default)",
    )
    a(
        "--experimental-watch-progress-notify-interval",
        type=_duration_arg,
        default=600.0,
        dest="watch_progress_notify_interval",
        help="interval between progress notifications to idle progress_notify watchers: a "
        "Go duration (200ms, 10s, 1m30s) or a number of seconds",
    )
    a(
        "--experimental-enable-lease-checkpoint",
        nargs="?",
        const=True,
        default=True,
        type=_flag_bool,
        dest="enable_lease_checkpoint",
        help="the leader replicates leases' remaining TTLs, so a leader change does not restart "
        "them (etcd #9888; on by default, unlike etcd)",
    )
    a(
        "--experimental-lease-checkpoint-interval",
        type=_duration_arg,
        default=300.0,
        dest="lease_checkpoint_interval",
        help="how often the leader checkpoints remaining lease TTLs: a Go duration or seconds",
    )
    a(
        "--auto-compaction-mode",
        default="periodic",
        help="interpret --auto-compaction-retention as: 'periodic' (a duration, a bare number "
        "meaning hours) or 'revision' (a number of revisions)",
    )
    a(
        "--auto-compaction-retention",
        default="0",
        help="auto compaction retention for the key-value store's history (0 disables it); "
        "only the leader compacts, through Raft",
    )
    a(
        "--experimental-auto-compaction-revision-interval",
        type=_duration_arg,
        default=300.0,
        dest="auto_compaction_revision_interval",
        help="coord only: how often revision-mode auto-compaction runs (etcd: fixed 5m); a Go "
        "duration or seconds",
    )
    a(
        "--force-new-cluster",
        nargs="?",
        const=True,
        default=False,
        type=_flag_bool,
        help="restart this member as a one-member cluster from its data directory (disaster "
        "recovery: every other member is removed from the membership)",
    )
    a(
        "--logger",
        default="capnslog",
        choices=logconfig.LOGGERS,
        help="'capnslog' (text lines) or 'zap' (one JSON object per line, as etcd's zap)",
    )
    a(
        "--log-outputs",
        default="default",
        help="comma-separated log destinations: 'default' (= stderr), 'stderr', 'stdout' or "
        "file paths",
    )
    a(
        "--log-level",
        default="info",
        choices=list(logconfig.LEVELS),
        help="log level: debug, info, warn, error, panic or fatal",
    )
    for side, what in (("", "client"), ("peer-", "peer")):
        a(f"--{side}cert-file", default="", help=f"path to the {what} server TLS cert file")
        a(f"--{side}key-file", default="", help=f"path to the {what} server TLS key file")
        a(
            f"--{side}trusted-ca-file",
            default="",
            help=f"path to the {what} TLS trusted CA file (verifies {what} certificates)",
        )
        a(
            f"--{side}client-cert-auth",
            nargs="?",
            const=True,
            default=False,
            type=_flag_bool,
            help=f"require {what} certificates signed by --{side}trusted-ca-file",
        )
    return p


_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
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
        name=args.name,
        data_dir=args.data_dir or "",
        listen_client_urls=args.listen_client_urls,
        advertise_client_urls=args.advertise_client_urls,
        listen_peer_urls=args.listen_peer_urls,
        initial_advertise_peer_urls=args.initial_advertise_peer_urls,
        initial_cluster=args.initial_cluster,
        initial_cluster_state=args.initial_cluster_state,
        initial_cluster_token=args.initial_cluster_token,
        quota_backend_bytes=args.quota_backend_bytes,
        max_txn_ops=args.max_txn_ops,
        max_request_bytes=args.max_request_bytes,
        heartbeat_interval=args.heartbeat_interval,
        election_timeout=args.election_timeout,
        snapshot_count=args.snapshot_count,
        watch_progress_notify_interval=args.watch_progress_notify_interval,
        enable_lease_checkpoint=args.enable_lease_checkpoint,
        lease_checkpoint_interval=args.lease_checkpoint_interval,
        auto_compaction_mode=args.auto_compaction_mode,
        auto_compaction_retention=args.auto_compaction_retention,
        auto_compaction_revision_interval=args.auto_compaction_revision_interval,
        force_new_cluster=args.force_new_cluster,
        logger=args.logger,
        log_outputs=args.log_outputs,
        log_level=args.log_level,
        listen_port_file=args.listen_port_file,
        listen_metrics_urls=args.listen_metrics_urls,
        metrics=args.metrics,
        auth_token=args.auth_token,
        auth_token_ttl=args.auth_token_ttl,
        bcrypt_cost=args.bcrypt_cost,
        event_loop=args.event_loop,
        client_tls=TLSInfo(
            args.cert_file, args.key_file, args.trusted_ca_file, args.client_cert_auth
        ),
        peer_tls=TLSInfo(
            args.peer_cert_file,
            args.peer_key_file,
            args.peer_trusted_ca_file,
            args.peer_client_cert_auth,
            prefix="peer-",
        ),
    )


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop ``--event-loop`` asks for: uvloop (libuv's loop, in C: fewer µs per
    request in the transports) when installed and not refused, else asyncio's own."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit(
                    "coord-server: --event-loop uvloop: uvloop is not installed "
                    "(pip install 'coord[uvloop]')"
                ) from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def _loop_name(loop: asyncio.AbstractEventLoop) -> str:
    module = type(loop).__module__.split(".")[0]
    if module == "uvloop":
        return f"uvloop {importlib.metadata.version('uvloop')}"
    return "asyncio"


#: The garbage collector's thresholds while serving (CPython's defaults are 700, 10, 10).
#: The store's history is hundreds of thousands of long-lived objects, which every full
#: collection walks: under a Put load the defaults ran one every 0.5 s, 30-60 ms each, the
#: server's p99 latency (measured). Collecting young objects every 20,000 allocations and old
#: ones far less often keeps cyclic garbage bounded at a fraction of the cost.
GC_THRESHOLDS = (20_000, 50, 1000)


def _tune_gc() -> None:
    """Freeze what startup built (modules, config, the recovered store: never garbage) out of
    the collector's sight, and raise its thresholds (:data:`GC_THRESHOLDS`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _run(config: Config) -> None:
    stop = anyio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from .app import CoordServer  # here: `coord-server snapshot` needs none of the server

    server = await CoordServer.open(config)
    _tune_gc()
    logging.getLogger("coord.server").info("event loop: %s", _loop_name(loop))
    await server.serve(stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``coord-server`` and ``python -m coord.server``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cluster"]:  # coord-server cluster --size 3: a local multi-process cluster
        from .localcluster import main as cluster_main

        return cluster_main(argv[1:])
    if argv[:1] == ["snapshot"]:  # coord-server snapshot save|restore|status
        from .backup.cli import main as snapshot_main

        return snapshot_main(argv[1:])
    parser = build_parser()
    try:
        resolved = configsource.resolve(parser, argv, os.environ)
        config = config_from_args(resolved.args)
        logconfig.configure(config.logger, config.log_outputs, config.log_level)
    except ValueError as e:
        parser.error(str(e))
    log = logging.getLogger("coord.server.config")
    for note in resolved.notes:
        log.log(note.level, "%s", note.message)
    if os.environ.get(failpoints.ENV_HTTP):
        failpoints.serve_http(os.environ[failpoints.ENV_HTTP])
    try:
        with asyncio.Runner(loop_factory=loop_factory(config.event_loop)) as runner:
            runner.run(_run(config))
    except OSError as e:
        logging.getLogger("coord.server").error("cannot serve: %s", e)
        return 1
    return 0
