"""Prometheus metrics with etcd's names (``/metrics``), drawn with prometheus-client.

Theory of operation: every server owns one :class:`ServerMetrics`, which owns a
``CollectorRegistry`` of its own (several in-process servers never share samples).  The
registry holds the standard ``process_*`` collector and :class:`_StateCollector`, which reads
the node's and the state machine's current state *when scraped*: a request pays nothing for
these metrics.  Names, types, labels and help texts are etcd's (etcd's server/etcdserver/
metrics.go and server/storage/mvcc/metrics.go), so dashboards and alerts written for etcd read
coord unchanged; a test compares them with a real etcd's.  etcd reports some totals as gauges
(``etcd_server_proposals_committed_total`` is the committed index); so does this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from coord.server.api.callstats import CODE_NAMES, CallStats
from coord.server.api.maintenance import VERSION, disk_usage
from coord.server.config import Config
from coord.server.histogram import Histogram
from coord.server.lease import LeaseTimer
from coord.server.node.protocol import Node
from coord.server.statemachine import StateMachine
from coord.server.watch import WatchHub

__all__ = ["ServerMetrics"]


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    """A counter family; ``name`` without ``_total`` (prometheus-client appends it)."""
    return CounterMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, h: Histogram, labels: Sequence[str] = ()) -> Metric:
    return HistogramMetricFamily(
        name, doc, buckets=h.cumulative(), sum_value=h.total, labels=list(labels) or None
    )


def _info(name: str, doc: str, label: str, value: str) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=[label])
    g.add_metric([value], 1)
    return g


class _StateCollector(Collector):
    """The node's and the store's state, read at scrape time."""

    def __init__(
        self, config: Config, node: Node, sm: StateMachine, timer: LeaseTimer, hub: WatchHub
    ) -> None:
        self.config = config
        self.node = node
        self.sm = sm
        self.timer = timer
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        node, kv = self.node, self.sm.kv
        learner = any(m.is_learner for m in node.members() if m.id == node.member_id)
        yield _gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            1 if node.leader_id() else 0,
        )
        yield _gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            1 if node.is_leader() else 0,
        )
        yield _gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            1 if learner else 0,
        )
        yield _counter(
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen.",
            node.stats.leader_changes,
        )
        yield _gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            node.pending_proposals(),
        )
        yield _counter(
            "etcd_server_slow_apply",
            "The total number of slow apply requests (likely overloaded from slow disk).",
            node.stats.slow_applies,
        )
        yield _counter(
            "etcd_server_proposals_failed",
            "The total number of failed proposals seen.",
            node.stats.proposals_failed,
        )
        yield _counter(
            "etcd_server_slow_read_indexes",
            "The total number of pending read indexes not in sync with leader's or timed out "
            "read index requests.",
            node.stats.slow_read_indexes,
        )
        yield _counter(
            "etcd_server_read_indexes_failed",
            "The total number of failed read indexes seen.",
            node.stats.read_indexes_failed,
        )
        peers = node.peer_stats()
        yield _counter(
            "etcd_server_heartbeat_send_failures",
            "The total number of leader heartbeat send failures (likely overloaded from slow "
            "disk).",
            sum(p.heartbeat_failures for p in peers.values()),
        )
        yield _gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            node.commit_index(),
        )
        yield _gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            node.applied_index(),
        )
        yield _gauge(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            self.config.quota_bytes,
        )
        yield _info(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            "server_id",
            f"{node.member_id:x}",
        )
        yield _info(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
            VERSION,
        )
        yield _info(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            "cluster_version",
            ".".join(VERSION.split(".")[:2]),
        )
        yield _gauge(
            "etcd_debugging_mvcc_current_revision", "The current revision of store.", kv.rev
        )
        yield _gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            kv.compact_rev or -1,  # etcd's: -1 before the first compaction
        )
        ops = kv.counts
        yield _counter("etcd_mvcc_range", "Total number of ranges seen by this member.", ops.ranges)
        yield _counter("etcd_mvcc_put", "Total number of puts seen by this member.", ops.puts)
        yield _counter(
            "etcd_mvcc_delete", "Total number of deletes seen by this member.", ops.deletes
        )
        yield _counter("etcd_mvcc_txn", "Total number of txns seen by this member.", ops.txns)
        yield _gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", kv.key_count())
        watchers, slow = self.hub.counts()
        yield _gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", watchers)
        yield _gauge(
            "etcd_debugging_mvcc_slow_watcher_total",
            "Total number of unsynced slow watchers.",
            slow,
        )
        yield _counter(
            "etcd_debugging_lease_granted",
            "The total number of granted leases.",
            self.sm.leases_granted,
        )
        yield _counter(
            "etcd_debugging_lease_revoked",
            "The total number of revoked leases.",
            self.sm.leases_revoked,
        )
        yield _counter(
            "etcd_debugging_lease_renewed",
            "The number of renewed leases seen by the leader.",
            self.timer.renewed,
        )
        yield _counter(
            "etcd_debugging_server_lease_expired",
            "The total number of expired leases.",
            self.timer.revoked_expired,
        )
        disk = node.disk_stats()
        yield _histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            disk.fsync,
        )
        yield _histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            node.stats.apply,
        )
        yield _histogram(
            "etcd_disk_backend_snapshot_duration_seconds",
            "The latency distribution of backend snapshots.",
            node.stats.snapshot,
        )
        yield _gauge(
            "etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.", disk.written
        )
        in_use = kv.db_size()  # as Status reports them (server/api/maintenance.py)
        yield _gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            max(disk_usage(self.config.data_dir), in_use),
        )
        yield _gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            in_use,
        )


class _NetworkCollector(Collector):
    """etcd's etcd_network_* metrics: per peer (the transport's counts) and for clients."""

    def __init__(self, node: Node, calls: CallStats) -> None:
        self.node = node
        self.calls = calls

    def collect(self) -> Iterator[Metric]:
        peers = sorted(self.node.peer_stats().items())
        rtt = HistogramMetricFamily(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
            labels=["To"],
        )
        sent = CounterMetricFamily(
            "etcd_network_peer_sent_bytes",
            "The total number of bytes sent to peers.",
            labels=["To"],
        )
        received = CounterMetricFamily(
            "etcd_network_peer_received_bytes",
            "The total number of bytes received from peers.",
            labels=["From"],
        )
        failures = CounterMetricFamily(
            "etcd_network_peer_sent_failures",
            "The total number of send failures from peers.",
            labels=["To"],
        )
        for pid, p in peers:
            label = [f"{pid:x}"]
            rtt.add_metric(label, buckets=p.rtt.cumulative(), sum_value=p.rtt.total)
            sent.add_metric(label, p.sent_bytes)
            received.add_metric(label, p.received_bytes)
            failures.add_metric(label, p.sent_failures)
        yield from (rtt, sent, received, failures)
        methods = self.calls.methods.values()
        yield _counter(
            "etcd_network_client_grpc_sent_bytes",
            "The total number of bytes sent to grpc clients.",
            sum(m.sent_bytes for m in methods),
        )
        yield _counter(
            "etcd_network_client_grpc_received_bytes",
            "The total number of bytes received from grpc clients.",
            sum(m.received_bytes for m in methods),
        )


class _GrpcCollector(Collector):
    """go-grpc-prometheus's grpc_server_* metrics, every method and code pre-initialized as
    etcd's grpc_prometheus.Register does (zeros included)."""

    def __init__(self, calls: CallStats) -> None:
        self.calls = calls

    def collect(self) -> Iterator[Metric]:
        names = ["grpc_type", "grpc_service", "grpc_method"]
        started = CounterMetricFamily(
            "grpc_server_started", "Total number of RPCs started on the server.", labels=names
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=[*names, "grpc_code"],
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            labels=names,
        )
        sent = CounterMetricFamily(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            labels=names,
        )
        seconds = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            labels=names,
        )
        for m in sorted(self.calls.methods.values(), key=lambda m: (m.service, m.method)):
            labels = [m.type, m.service, m.method]
            started.add_metric(labels, m.started)
            for code in CODE_NAMES.values():
                handled.add_metric([*labels, code], m.handled.get(code, 0))
            received.add_metric(labels, m.received)
            sent.add_metric(labels, m.sent)
            if m.seconds is not None:
                seconds.add_metric(
                    labels, buckets=m.seconds.cumulative(), sum_value=m.seconds.total
                )
        yield from (started, handled, received, sent)
        if self.calls.handling_time:
            yield seconds


class ServerMetrics:
    """One server's registry: ``process_*``, the state, network and gRPC collectors (module
    docstring); ``calls`` counts the gRPC calls of the services it instruments."""

    def __init__(
        self, config: Config, node: Node, sm: StateMachine, timer: LeaseTimer, hub: WatchHub
    ) -> None:
        self.calls = CallStats(handling_time=config.metrics == "extensive")
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(_StateCollector(config, node, sm, timer, hub))
        self.registry.register(_NetworkCollector(node, self.calls))
        self.registry.register(_GrpcCollector(self.calls))

    def render(self) -> tuple[bytes, str]:
        """The current samples and their content type: Prometheus text format 0.0.4, as etcd
        serves it."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
