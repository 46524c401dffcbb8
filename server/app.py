"""Assembly of a coord server: config -> state machine -> node -> gRPC services -> listeners.

Theory of operation: :class:`CoordServer` owns every long-lived piece. The state machine is
built first, then the consensus node over it (:func:`build_node`: the Raft node, also for a
single member), then the API context, lease timer, watch hub and
services. One grpclib server (behind ``http.ClientListener``, which also serves the JSON
gateway) handles every ``--listen-client-urls`` entry with the pass-through codec. Three
background tasks run while serving, lease expiry, lease checkpoints and auto-compaction
(server/compactor.py), all acting only on the leader; they live in a task group that
:meth:`CoordServer.serve` owns, so stopping cancels them and closes listeners. The node runs
in its own task group there (``await tg.start(node.run)``), stopped after the listeners close.

Lease expiry follows architecture rules 4 and 9 (etcd's revokeExpiredLeases with ensureLeadership,
#15247 / PR #16822). The timer lists expired leases only while the Raft core says this member
leads term T *now* and has applied an entry of T (``Node.leader_term``). Before revoking, a
quorum must confirm that this member still leads T (a ReadIndex round, which a leader stalled
on its disk cannot complete); each revoke is then proposed with ``propose_as_leader(.., T)``,
which re-checks leadership of T right before appending to this member's own log, so it is
never forwarded to another leader. That suffices, without tagging revokes with a term: a
revoke appended in T can still commit after T ends, but only before the next leader's own
first entry (log matching), and that leader renews nothing until it has applied its own entry
(``leader_term``), so no keep-alive answered by a later leader can be undone by it.

Every client and peer URL is bound (and listening) first, in :meth:`CoordServer.open`, before
the node locks, creates or reads the data directory (:mod:`coord.server.listen`): a busy port
fails the start with one line naming the URL, and nothing was bootstrapped or written. Clients are
*served* only once this member's attributes (name, client URLs) are applied
(:meth:`CoordServer.wait_ready`, etcd's ReadyNotify): a client never sees this member in
MemberList without its client URLs; until then its connections wait in the kernel's backlog,
as with etcd. Publishing needs a quorum, so a member started before its peers serves clients
only when enough of them are up; its peer port is served from the start, and a stop request
while waiting is honoured.

A client URL with port 0 listens on an ephemeral port; an advertised client URL equal to it
(same scheme, host and port 0) is advertised with the bound port. Once clients are served,
``--listen-port-file`` receives the bound URLs as JSON (written to a temporary file and
renamed, so a reader never sees half of it): a supervisor or test starts the server on port 0
and reads where it listens, with no race for a free port.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from typing import Any

import anyio
from grpclib.config import Configuration
from grpclib.server import Server

from coord._pb import etcdserverpb as pb
from coord.errors import CoordError, LeaseNotFoundError

from .api import (
    ApiContext,
    AuthService,
    ClusterService,
    ForwardingLeaseService,
    KVService,
    LeaseService,
    MaintenanceService,
    RawCodec,
    WatchService,
)
from .api.maintenance import disk_usage
from .command import Kind, encode
from .compactor import Compactor
from .config import Config
from .http import ClientListener, Gateway
from .http.ops import OpsRoutes
from .lease import LeaseTimer
from .listen import bind_all, bound_url, close_all
from .membership import MemberInfo, compute_member_id
from .metrics import ServerMetrics
from .node import Node, RaftNode
from .overview import Overview
from .statemachine import StateMachine
from .tls import is_tls_url
from .watch import WatchHub

__all__ = ["CoordServer", "build_node", "local_member"]

log = logging.getLogger("coord.server")

#: How often the leader looks for expired leases (etcd: 500 ms).
LEASE_CHECK_INTERVAL = 0.1
#: Checkpoints per proposal (etcd's maxLeaseCheckpointBatchSize).
MAX_CHECKPOINT_BATCH = 1000
#: Inbound HTTP/2 window per stream: bounds what a client can push before we read it.
STREAM_WINDOW = 256 * 1024


def local_member(config: Config) -> MemberInfo:
    """This member as configured (ID from peer URLs and cluster token, like etcd)."""
    member_id = compute_member_id(config.initial_advertise_peer_urls, config.initial_cluster_token)
    return MemberInfo(
        id=member_id,
        name=config.name,
        peer_urls=tuple(config.initial_advertise_peer_urls),
        client_urls=tuple(config.advertise_client_urls),
    )


async def build_node(config: Config, sm: StateMachine) -> Node:
    """The consensus node: a durable RaftNode (also for a single member, with one voter)."""
    return await RaftNode.open(config, sm)


class CoordServer:
    """A whole server process's state and lifecycle (built by :meth:`open`)."""

    @classmethod
    async def open(cls, config: Config) -> CoordServer:
        """Bind the client ports, then open the node (which binds its peer ports, then locks,
        recovers or creates the data directory), then assemble the services."""
        # Every port before anything else: a busy port is one error line, with nothing
        # bootstrapped or written.
        client_sockets = bind_all(config.listen_client_urls, "client requests")
        try:
            metrics_sockets = bind_all(config.listen_metrics_urls, "metrics")
        except BaseException:
            close_all(s for socks in client_sockets.values() for s in socks)
            raise
        client_sockets_all = {**client_sockets, **metrics_sockets}
        client_urls = [bound_url(url, socks) for url, socks in client_sockets.items()]
        config = _advertise_bound(config, dict(zip(client_sockets, client_urls, strict=True)))
        sm = StateMachine()
        try:
            node = await build_node(config, sm)
        except BaseException:
            close_all(s for socks in client_sockets_all.values() for s in socks)
            raise
        return cls(config, sm, node, client_sockets, client_urls, metrics_sockets)

    def __init__(
        self,
        config: Config,
        sm: StateMachine,
        node: Node,
        client_sockets: dict[str, list[socket.socket]],
        client_urls: list[str],
        metrics_sockets: dict[str, list[socket.socket]] | None = None,
    ) -> None:
        self.config = config
        self._client_sockets = client_sockets
        self._metrics_sockets = metrics_sockets or {}
        #: the --listen-metrics-urls as bound (once serving)
        self.metrics_urls: list[str] = []
        #: the client URLs as bound (port 0 replaced by the port the kernel chose)
        self.client_urls = client_urls
        self.sm = sm
        self.node = node
        self.ctx = ApiContext(config, self.node, self.sm)
        self.timer = LeaseTimer(
            self.sm.lessor, time.monotonic, self.node.leader_term, config.election_timeout / 1000.0
        )
        self.services: list[Any] = [
            KVService(self.ctx),
            self._lease_service(),
            MaintenanceService(self.ctx),
            ClusterService(self.ctx),
            AuthService(self.ctx, self.ctx.tokens),
        ]
        self.hub = WatchHub(self.sm.kv, self.ctx.header)
        self.sm.add_restore_listener(self.hub.set_store)
        self.services.append(WatchService(self.ctx, self.hub))
        self.compactor = Compactor(
            config.compaction_policy, self.node, self.sm, config.auto_compaction_revision_interval
        )
        self.metrics = ServerMetrics(config, self.node, self.sm, self.timer, self.hub)
        self.overview = Overview(
            config, self.node, self.sm, self.hub, self.metrics.calls, self._db_size
        )
        self._listener: ClientListener | None = None
        self._metrics_listener: ClientListener | None = None

    def _lease_service(self) -> LeaseService:
        """Keep-alives and TTL queries reaching a follower go to the leader."""
        return ForwardingLeaseService(self.ctx, self.timer, self.node)

    async def wait_ready(self) -> None:
        """Wait until this member's attributes are applied."""
        log.info(
            "waiting for this member's attributes to be published (needs a leader) "
            "before serving clients"
        )
        await self.node.wait_published()

    async def _listen(self) -> None:
        # One grpclib server (not started itself) behind a ClientListener per process: each
        # client URL serves gRPC (HTTP/2) and etcd's JSON gateway (HTTP/1.1) on one port,
        # with TLS for https:// URLs (server/http/mux.py, server/tls.py). The sockets were
        # bound in __init__; the listener owns them from here on.
        grpc_config = Configuration(http2_stream_window_size=STREAM_WINDOW)
        metrics = self.config.metrics != "off"
        services = self.metrics.calls.instrument(self.services) if metrics else self.services
        server = Server(services, codec=RawCodec(), config=grpc_config)
        render = self.metrics.render if metrics else None
        ops = OpsRoutes(render, self.overview)
        self._listener = ClientListener(server, Gateway(server, ops=ops))
        bound, self._client_sockets = self._client_sockets, {}
        for (url, socks), where in zip(bound.items(), self.client_urls, strict=True):
            tls = self.config.client_tls.server_context() if is_tls_url(url) else None
            for sock in socks:
                await self._listener.start(sock, tls)
            log.info("listening for client requests (gRPC and HTTP/JSON) on %s", where)
        if self._metrics_sockets:
            # --listen-metrics-urls: /metrics and the health probes, over HTTP/1.1 only
            gateway = Gateway(server, ops=OpsRoutes(render), api=False)
            self._metrics_listener = ClientListener(server, gateway, serves_grpc=False)
            bound, self._metrics_sockets = self._metrics_sockets, {}
            for url, socks in bound.items():
                tls = self.config.client_tls.server_context() if is_tls_url(url) else None
                for sock in socks:
                    await self._metrics_listener.start(sock, tls)
                self.metrics_urls.append(bound_url(url, socks))
                log.info("listening for metrics on %s", self.metrics_urls[-1])
        if self.config.listen_port_file:
            self._write_port_file(self.config.listen_port_file)

    def _db_size(self) -> int:
        """The database size as Status reports it (server/api/maintenance.py)."""
        return max(disk_usage(self.config.data_dir), self.sm.kv.db_size())

    def _write_port_file(self, path: str) -> None:
        """``--listen-port-file``: the bound client URLs and the peer URLs, as JSON."""
        data = {
            "name": self.config.name,
            "client": self.client_urls,
            "peer": list(self.config.listen_peer_urls),
            "metrics": self.metrics_urls,
        }
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    def _close_client_sockets(self) -> None:
        """Close the client and metrics sockets not handed to a listener (stopped before
        serving)."""
        for sockets in (self._client_sockets, self._metrics_sockets):
            close_all(s for socks in sockets.values() for s in socks)
        self._client_sockets, self._metrics_sockets = {}, {}

    async def expire_leases(self) -> None:
        """Forever: revoke every lease the timer says has expired, as a confirmed leader
        (see the module docstring)."""
        confirm_timeout = self.config.request_timeout  # etcd's ensureLeadership: ReqTimeout
        while True:
            await anyio.sleep(LEASE_CHECK_INTERVAL)
            expired = self.timer.expired()
            if not expired:
                continue
            term = self.timer.term
            if not await self.node.confirm_leadership(term, confirm_timeout):
                log.warning(
                    "not revoking %d expired lease(s): could not confirm leadership "
                    "of term %d with a quorum",
                    len(expired),
                    term,
                )
                continue
            for lease_id in expired:
                if not self.timer.is_expired(lease_id) or self.timer.term != term:
                    continue  # renewed meanwhile, or no longer the leader of term
                command = encode(Kind.LEASE_REVOKE, bytes(pb.LeaseRevokeRequest(id=lease_id)))
                try:
                    await self.node.propose_as_leader(command, term)
                    self.timer.revoked_expired += 1
                    log.debug("lease %x expired and was revoked", lease_id)
                except LeaseNotFoundError:
                    pass
                except CoordError as e:
                    log.warning("revoking expired lease %x failed: %s", lease_id, e.message)

    async def checkpoint_leases(self) -> None:
        """Forever, with --experimental-enable-lease-checkpoint: every
        --experimental-lease-checkpoint-interval the leader replicates the remaining TTL of
        every lease below its granted TTL (etcd's lessor checkpointScheduledLeases, #9888;
        remaining TTLs rounded up to whole seconds as etcd does), so a new leader starts it
        from there, not from its full TTL. Unlike etcd, which checkpoints only leases with
        more than one interval left, every such lease is included: with etcd's 5-minute
        default, leases of shorter TTL would otherwise never keep their remaining TTL. As in
        etcd, a lease costs at most two entries per interval (its checkpoint, and the clear
        of its next renew)."""
        if not self.config.enable_lease_checkpoint:
            return
        while True:
            await anyio.sleep(self.config.lease_checkpoint_interval)
            term = self.timer.term
            points = self.timer.checkpoints()
            for i in range(0, len(points), MAX_CHECKPOINT_BATCH):
                batch = pb.LeaseCheckpointRequest(
                    checkpoints=[
                        pb.LeaseCheckpoint(id=lease_id, remaining_TTL=left)
                        for lease_id, left in points[i : i + MAX_CHECKPOINT_BATCH]
                    ]
                )
                try:
                    await self.node.propose_as_leader(
                        encode(Kind.LEASE_CHECKPOINT, bytes(batch)), term
                    )
                except CoordError as e:
                    log.info("lease checkpoint not replicated: %s", e.message)
                    break

    async def _close_listener(self) -> None:
        """Close the client listener (and the sockets it never got)."""
        log.info("stopping coord-server %r", self.config.name)
        for listener in (self._listener, self._metrics_listener):
            if listener is not None:
                listener.close()
                with anyio.move_on_after(5):
                    await listener.wait_closed()
        self._listener = self._metrics_listener = None
        self._close_client_sockets()

    async def serve(self, stop: anyio.Event) -> None:
        """Run the node, serve until ``stop`` is set (also while waiting to publish), then close
        the listeners and stop the node (raising its FatalError, if any, unwrapped)."""
        try:
            await self._serve(stop)
        except BaseExceptionGroup as group:
            raise _single(group) from None
        finally:
            self._close_client_sockets()
        log.info("stopped")

    async def _serve(self, stop: anyio.Event) -> None:
        log.info(
            "starting coord-server %r (member %x, cluster %x), data dir %s",
            self.config.name,
            self.node.member_id,
            self.node.cluster_id,
            self.config.data_dir,
        )
        async with anyio.create_task_group() as node_tg:  # the node lives in here
            await node_tg.start(self.node.run)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self.expire_leases)
                    tg.start_soon(self.checkpoint_leases)
                    tg.start_soon(self.compactor.run)
                    async with anyio.create_task_group() as waiting:
                        waiting.start_soon(_cancel_on, stop, waiting.cancel_scope)
                        await self.wait_ready()
                        waiting.cancel_scope.cancel()
                    if not stop.is_set():
                        await self._listen()
                        await stop.wait()
                    tg.cancel_scope.cancel()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._close_listener()  # listeners first, then the node
                node_tg.cancel_scope.cancel()


def _single(group: BaseExceptionGroup) -> BaseException:
    """The only exception in ``group`` (nested groups flattened), else the group itself."""
    leaves: list[BaseException] = []
    todo: list[BaseException] = [group]
    while todo:
        e = todo.pop()
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        else:
            leaves.append(e)
    return leaves[0] if len(leaves) == 1 else group


def _advertise_bound(config: Config, bound: dict[str, str]) -> Config:
    """``config`` advertising the bound URL for every advertised client URL with port 0 that
    is also a listen URL (``--listen-client-urls http://127.0.0.1:0`` and the same advertised)."""
    urls = tuple(bound.get(u, u) for u in config.advertise_client_urls)
    if urls == config.advertise_client_urls:
        return config
    return dataclasses.replace(config, advertise_client_urls=urls)


async def _cancel_on(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
