"""Server configuration: etcd's flag names and defaults, as one immutable value.

``coord-server`` (server/main.py) builds a :class:`Config` from the command line; tests and
embedders can build one directly. Peer and cluster settings are stored for the Raft node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .auth.tokens import parse_auth_token
from .compactor import DEFAULT_REVISION_INTERVAL, CompactionPolicy, parse_retention
from .lease import min_lease_ttl
from .logconfig import LEVELS, LOGGERS
from .tls import TLSInfo, check_urls
from .urls import parse_url

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_QUOTA_BYTES",
    "EVENT_LOOPS",
    "METRICS_LEVELS",
    "Config",
    "parse_initial_cluster",
]

DEFAULT_MAX_REQUEST_BYTES = 1572864  # 1.5 MiB, etcd's --max-request-bytes
DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024  # 2 GiB, etcd's default backend quota
#: --metrics values: etcd's basic and extensive, and coord's off
METRICS_LEVELS = ("basic", "extensive", "off")
#: the choices of --event-loop
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
#: gRPC receive limit over --max-request-bytes (etcd: grpcOverheadBytes)
GRPC_OVERHEAD_BYTES = 512 * 1024


def parse_initial_cluster(value: str) -> dict[str, list[str]]:
    """``a=http://h:1,b=http://h:2`` -> {"a": [...], "b": [...]}."""
    out: dict[str, list[str]] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"invalid --initial-cluster entry {item!r}: expected name=url")
        parse_url(url)
        out.setdefault(name, []).append(url)
    return out


def _urls(value: str) -> tuple[str, ...]:
    return tuple(u.strip() for u in value.split(",") if u.strip())


@dataclass(frozen=True)
class Config:
    """All server settings (see ``coord-server --help`` for each one)."""

    name: str = "default"
    data_dir: str = ""
    listen_client_urls: tuple[str, ...] = ("http://127.0.0.1:2379",)
    advertise_client_urls: tuple[str, ...] = ("http://127.0.0.1:2379",)
    listen_peer_urls: tuple[str, ...] = ("http://127.0.0.1:2380",)
    initial_advertise_peer_urls: tuple[str, ...] = ("http://127.0.0.1:2380",)
    initial_cluster: str = ""
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "etcd-cluster"
    quota_backend_bytes: int = 0
    max_txn_ops: int = 128
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    heartbeat_interval: int = 100
    election_timeout: int = 1000
    snapshot_count: int = 100000
    watch_progress_notify_interval: float = 600.0
    #: etcd's --experimental-enable-lease-checkpoint (etcd's default is off; coord's is on)
    enable_lease_checkpoint: bool = True
    #: etcd's --experimental-lease-checkpoint-interval (seconds; etcd's default 5m)
    lease_checkpoint_interval: float = 300.0
    #: etcd's --logger: "capnslog" (text) or "zap" (JSON lines)
    logger: str = "capnslog"
    #: etcd's --log-outputs: "default" (stderr), "stderr", "stdout" or file paths
    log_outputs: tuple[str, ...] = ("default",)
    #: etcd's --auto-compaction-mode (periodic or revision)
    auto_compaction_mode: str = "periodic"
    #: etcd's --auto-compaction-retention ("0" = off; see server/compactor.py)
    auto_compaction_retention: str = "0"
    #: revision mode's interval in seconds (etcd: fixed 5 minutes; coord-only flag)
    auto_compaction_revision_interval: float = DEFAULT_REVISION_INTERVAL
    #: etcd's --force-new-cluster: restart as a one-member cluster from this data directory
    force_new_cluster: bool = False
    log_level: str = "info"
    #: etcd's --listen-metrics-urls: more URLs serving only /metrics and the health probes
    listen_metrics_urls: tuple[str, ...] = ()
    #: etcd's --metrics: "basic", or "extensive" (adds grpc_server_handling_seconds); coord
    #: also takes "off": no per-request counting, no /metrics
    metrics: str = "basic"
    #: etcd's --auth-token: "simple" or "jwt,pub-key=…,priv-key=…,sign-method=…[,ttl=…]"
    auth_token: str = "simple"
    #: etcd's --auth-token-ttl (seconds a simple token lives after its last use)
    auth_token_ttl: int = 300
    #: etcd's --bcrypt-cost
    bcrypt_cost: int = 10
    #: --event-loop (coord only): "auto" (uvloop when installed), "uvloop" or "asyncio"
    event_loop: str = "auto"
    #: --listen-port-file: where to write the bound client and peer URLs (JSON) once serving
    listen_port_file: str = ""
    client_tls: TLSInfo = field(default_factory=TLSInfo)
    peer_tls: TLSInfo = field(default_factory=lambda: TLSInfo(prefix="peer-"))
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.data_dir:
            object.__setattr__(self, "data_dir", f"{self.name}.coord")
        for attr in (
            "listen_client_urls",
            "advertise_client_urls",
            "listen_peer_urls",
            "initial_advertise_peer_urls",
            "listen_metrics_urls",
            "log_outputs",
        ):
            value = getattr(self, attr)
            if isinstance(value, str):
                object.__setattr__(self, attr, _urls(value))
        for url in (
            *self.listen_client_urls,
            *self.advertise_client_urls,
            *self.listen_peer_urls,
            *self.initial_advertise_peer_urls,
            *self.listen_metrics_urls,
        ):
            parse_url(url)
        if not self.initial_cluster:
            cluster = ",".join(f"{self.name}={u}" for u in self.initial_advertise_peer_urls)
            object.__setattr__(self, "initial_cluster", cluster)
        parse_initial_cluster(self.initial_cluster)
        # TLS: every named file must load now (error names the flag and file), https URLs
        # need a certificate (server/tls.py).
        self.client_tls.validate()
        self.peer_tls.validate()
        check_urls("--listen-client-urls", self.listen_client_urls, self.client_tls)
        check_urls("--listen-peer-urls", self.listen_peer_urls, self.peer_tls)
        check_urls("--listen-metrics-urls", self.listen_metrics_urls, self.client_tls)
        if self.metrics not in METRICS_LEVELS:
            raise ValueError(
                f"invalid --metrics {self.metrics!r}: expected basic, extensive or off"
            )
        if not 4 <= self.bcrypt_cost <= 31:
            raise ValueError(f"invalid --bcrypt-cost {self.bcrypt_cost}: expected 4 to 31")
        if self.auth_token_ttl <= 0:
            raise ValueError(f"invalid --auth-token-ttl {self.auth_token_ttl}: expected > 0")
        parse_auth_token(self.auth_token, self.auth_token_ttl)  # ValueError names the problem
        if self.logger not in LOGGERS:
            raise ValueError(f"invalid --logger {self.logger!r}: expected capnslog or zap")
        if self.log_level not in LEVELS:
            raise ValueError(
                f"invalid --log-level {self.log_level!r}: expected one of " + ", ".join(LEVELS)
            )
        if not self.log_outputs:
            raise ValueError("--log-outputs must name at least one output")
        if self.initial_cluster_state not in ("new", "existing"):
            raise ValueError("--initial-cluster-state must be 'new' or 'existing'")
        if self.max_txn_ops < 1 or self.max_request_bytes < 1 or self.quota_backend_bytes < 0:
            raise ValueError(
                "--max-txn-ops, --max-request-bytes must be positive, "
                "--quota-backend-bytes non-negative"
            )
        parse_retention(self.auto_compaction_mode, self.auto_compaction_retention)  # validate
        if self.auto_compaction_revision_interval <= 0:
            raise ValueError("--experimental-auto-compaction-revision-interval must be positive")
        if self.election_timeout < 5 * self.heartbeat_interval // 5 or self.heartbeat_interval < 1:
            raise ValueError("--election-timeout must be at least --heartbeat-interval")

    @property
    def compaction_policy(self) -> CompactionPolicy:
        """The parsed --auto-compaction-mode and --auto-compaction-retention."""
        return parse_retention(self.auto_compaction_mode, self.auto_compaction_retention)

    @property
    def quota_bytes(self) -> int:
        """Effective backend quota (0 means etcd's default, 2 GiB)."""
        return self.quota_backend_bytes or DEFAULT_QUOTA_BYTES

    @property
    def max_recv_bytes(self) -> int:
        """Largest gRPC message accepted at all (larger ones: RESOURCE_EXHAUSTED)."""
        return self.max_request_bytes + GRPC_OVERHEAD_BYTES

    @property
    def request_timeout(self) -> float:
        """Seconds a request waits for its outcome (etcd's ReqTimeout: 5 s + 2 x election
        timeout)."""
        return 5.0 + 2 * self.election_timeout / 1000.0

    @property
    def min_lease_ttl(self) -> int:
        """ceil(1.5 x election timeout) seconds."""
        return min_lease_ttl(self.election_timeout)
