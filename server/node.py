"""RaftNode: the asyncio driver that runs the Raft core against disk, network and the state machine.

Theory of operation
-------------------
The node owns a :class:`~coord.server.raft.rawnode.RawNode` (pure Raft), a
:class:`~coord.server.storage.DurableStorage` (WAL + snapshots), a
:class:`~coord.server.transport.PeerTransport` and the :class:`Membership`, and drives them from
one anyio task group (started by :meth:`start`, cancelled by :meth:`stop`):

* **ticker** -- calls ``rawnode.tick()`` every ``--heartbeat-interval`` ms; the election timeout
  is ``--election-timeout / --heartbeat-interval`` ticks.
* **ready loop** -- for every Ready, in the RawNode contract's order: send ``messages`` (a
  MsgSnap leaves with a snapshot of the current applied state and configuration, as etcd's
  ``createMergedSnapshotMessage``: see :meth:`RaftNode._send`); write
  entries + hard state (+ received snapshot) to the WAL with one write and, when ``must_sync``,
  one fsync, in a worker thread (group commit: proposals arriving meanwhile form the next
  Ready); only then send ``msgs_after_append`` (votes, append acks); apply the snapshot and the
  committed entries; hand out read states; ``advance``; maybe snapshot + compact.
* **read loop** -- batches linearizable reads: all ``read_index()`` callers waiting at one
  moment share one ReadIndex round (a fresh context per attempt, retried when no answer
  arrives), then wait until applied >= the confirmed index (etcd's linearizableReadLoop).
* **publisher** -- proposes this member's name and client URLs until they are applied (etcd's
  ``publish``), so MemberList shows them on every member; :meth:`RaftNode.wait_published`
  returns after that (the server opens its client listeners only then, as etcd serves clients
  only after ReadyNotify).

Leadership is read from the Raft core, never from the flag the Ready loop updates:
:meth:`RaftNode.is_leader` is the core's state now (it changes as soon as Raft steps a
higher-term message or check-quorum steps it down, even while the Ready loop waits on the
disk); :meth:`RaftNode.leader_term` is non-zero only while leading and after applying an entry
of the current term; :meth:`RaftNode.confirm_leadership` runs a ReadIndex round issued as
leader (callers share rounds that start after they asked; etcd's ensureLeadership), and
:meth:`RaftNode.propose_as_leader` appends only while leading the given term (DESIGN rule 9).

Proposals are wrapped in an envelope ``tag | proposer member id | seq | payload``; a follower's
proposal is forwarded to the leader by Raft (MsgProp), and the proposing member resolves its
waiting future when *it* applies the entry carrying its (member id, seq).  Sequence numbers
start at a random 63-bit value so entries of an earlier incarnation, replayed after a restart,
never match a new proposal.  Conf changes carry the same pair in their context.  A proposal
that Raft drops never reached a log and fails with NoLeaderError (the caller may retry); one
that was appended or forwarded but not applied in time may still commit and fails with a
RequestTimeoutError ("outcome unknown"; etcd's parseProposeCtxErr), see :meth:`_proposal_error`.

Bootstrap (``--initial-cluster-state new``) writes the initial members as ADD_NODE conf-change
entries 1..n of term 1 into every member's log (identical bytes everywhere, IDs derived as
etcd does) with commit = n; the first Ready applies them.  Before that it asks its peers
(:func:`refuse_if_bootstrapped`): a member whose data directory was wiped and that is started
again with its bootstrap flags refuses ("member ... has already been bootstrapped") when a peer
already lists it with published client URLs.  A member that is the only voter
campaigns immediately.  A member joining an existing cluster learns the cluster and its own ID
from a peer (:func:`discover_sync`) and starts with an empty log that the leader fills.  A
restart recovers from the data directory and ignores the ``--initial-*`` flags.  The data
directory is locked before anything in it is read or created, and the member directory is
created atomically (:mod:`coord.server.storage.fileutil`, :meth:`DurableStorage.create`).
Failpoints (:mod:`coord.server.failpoints`) mark the persistence and apply boundaries of the
ready loop; disarmed they cost one dict test.

A member that applies its own removal stops (after a short grace so the commit reaches the
others): it calls ``on_removed`` (default: SIGTERM to its own process, which shuts the
server down cleanly).  If a driver task ever fails unexpectedly, or Raft refuses a peer's message
with an AssertionError (an invariant broke, e.g. this member's log diverged from a committed
entry: "entry i (term t) conflicts with committed entry ..."), the node stops loudly: it logs
the reason at CRITICAL, cancels its driver tasks, calls ``on_fatal`` (same default) and
:meth:`RaftNode.stop` raises :class:`FatalError` (an OSError: the server exits 1 with
"cannot serve: ...").  A member without a working Raft loop must not keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import msgspec

from coord.errors import (
    BadLeaderTransfereeError,
    CoordError,
    LearnerNotReadyError,
    MemberNotFoundError,
    MemberNotLearnerError,
    NoLeaderError,
    NotLeaderError,
    PeerURLExistsError,
    RequestTimeoutError,
    ServerStoppedError,
    TimeoutDueToLeaderFailError,
    UnhealthyClusterError,
)
from coord.server import failpoints
from coord.server.config import Config, parse_initial_cluster
from coord.server.force_new_cluster import force_new_cluster
from coord.server.listen import bind_all, close_all
from coord.server.membership import (
    Attributes,
    ChangeContext,
    Member,
    Membership,
    bootstrap_members,
    decode_attributes,
    decode_context,
    encode_attributes,
    encode_context,
    new_member_id,
)
from coord.server.nodeapi import MemberInfo, compute_member_id
from coord.server.raft.confchange_codec import decode_conf_change, encode_conf_change
from coord.server.raft.errors import ProposalDropped
from coord.server.raft.rawnode import Config as RaftConfig
from coord.server.raft.rawnode import RawNode, Ready
from coord.server.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    StateType,
)
from coord.server.statemachine import StateMachine
from coord.server.storage import DurableStorage, StorageError
from coord.server.storage.fileutil import lock_data_dir
from coord.server.tls import is_tls_url
from coord.server.transport import PeerTransport
from coord.server.transport.frames import FrameType, Hello, encode_frame
from coord.server.transport.peer import parse_url

__all__ = ["BootstrapError", "FatalError", "RaftNode", "discover_sync", "refuse_if_bootstrapped"]

log = logging.getLogger("coord.server.node")

_ENVELOPE = struct.Struct(">BQQ")
#: Forwarded leader call: is this learner in sync (etcd's isLearnerReady)?
LEARNER_READY = "learner-ready"
#: A learner is in sync when its match index is at least this share of the leader's.
LEARNER_READY_PERCENT = 0.9
TAG_COMMAND = 1
TAG_ATTRIBUTES = 2
_VOTE_TYPES = frozenset({MessageType.VOTE, MessageType.VOTE_RESP, MessageType.PRE_VOTE,
                         MessageType.PRE_VOTE_RESP})


class _SnapshotData(msgspec.Struct, array_like=True):
    """What a Raft snapshot's ``data`` holds."""

    sm: bytes
    membership: bytes
    applied: int


_SNAPDATA = msgspec.msgpack.Decoder(_SnapshotData)


def discover_sync(peer_urls: Sequence[str], timeout: float = 2.0,
                  client_ssl: ssl.SSLContext | None = None) -> bytes:
    """Blocking discovery: ask the first reachable peer for its membership document
    (``https://`` peer URLs are dialed with ``client_ssl``)."""
    hello = encode_frame(FrameType.HELLO, msgspec.msgpack.encode(Hello(0, 0, 0, "discover")))
    errors = []
    for url in peer_urls:
        try:
            host, port = parse_url(url)
            with contextlib.ExitStack() as stack:
                s = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
                if is_tls_url(url) and client_ssl is not None:
                    s = stack.enter_context(client_ssl.wrap_socket(s, server_hostname=host))
                s.sendall(hello)
                f = s.makefile("rb")
                head = f.read(5)
                if len(head) < 5:
                    raise OSError("connection closed")
                length, ftype = struct.unpack(">IB", head)
                payload = f.read(length)
                if ftype != FrameType.MEMBERS or len(payload) != length:
                    raise OSError(f"unexpected answer (frame type {ftype})")
                return payload
        except (OSError, ValueError) as e:
            errors.append(f"{url}: {e}")
    raise OSError("could not reach any existing member: " + "; ".join(errors))


class BootstrapError(OSError):
    """The member cannot start with this configuration (the message says why)."""


def refuse_if_bootstrapped(member_id: int, peer_urls: Sequence[str],
                           client_ssl: ssl.SSLContext | None = None) -> None:
    """Before bootstrapping a new cluster, ask the peers whether it already exists.

    A member that finds no data directory (wiped, or a new disk) but is started again with
    ``--initial-cluster-state new`` must not bootstrap a second time under the same member ID:
    its fresh log would contradict entries the cluster has committed.  As etcd does
    (server/etcdserver/bootstrap.go, cluster_util.go ``isMemberBootstrapped``): if a peer
    answers and its member list has this member with published client URLs, refuse; if no peer
    answers, the cluster is being bootstrapped now, so go on.

    Raises:
        BootstrapError: "member <id> has already been bootstrapped".
    """
    if not peer_urls:
        return
    try:
        doc = Membership.from_document(discover_sync(peer_urls, client_ssl=client_ssl))
    except (OSError, ValueError, msgspec.DecodeError):
        return
    me = doc.members.get(member_id)
    if me is not None and me.client_urls:
        raise BootstrapError(f"member {member_id:x} has already been bootstrapped")


class FatalError(OSError):
    """This member stopped because its Raft state cannot go on (the message says why)."""


class _Pending:
    """A proposal waiting for its entry to be applied locally."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future


class RaftNode:
    """The Raft-backed :class:`~coord.server.nodeapi.Node` (see the module docstring)."""

    def __init__(self, config: Config, sm: StateMachine,
                 on_removed: Callable[[], None] | None = None,
                 on_fatal: Callable[[], None] | None = None) -> None:
        self.config = config
        self.sm = sm
        # Default for both: SIGTERM to this process, which shuts the server down cleanly.
        self.on_removed = on_removed or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self.on_fatal = on_fatal or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self.data_dir = Path(config.data_dir)
        self.tick_interval = config.heartbeat_interval / 1000.0
        self.election_ticks = max(2, config.election_timeout // config.heartbeat_interval)
        self.request_timeout = config.request_timeout
        self.snapshot_count = max(1, config.snapshot_count)
        self.catch_up_entries = min(5000, self.snapshot_count)
        self.membership = Membership()
        self._calls: dict[str, Callable[[bytes], bytes | Awaitable[bytes]]] = {}
        self._pending: dict[int, _Pending] = {}
        self._seq = random.getrandbits(62)
        self._lead = 0
        self._raft_state = StateType.FOLLOWER  # as of the last Ready (for the log lines)
        self._is_leader = False
        self._applied = 0
        self._applied_term = 0  # term of the entry at _applied (see leader_term)
        self._snap_index = 0
        self._conf_state = ConfState()
        self._running = False
        self._removed = False
        self._removed_notified = False
        self._fatal: FatalError | None = None
        self._wake = anyio.Event()
        self._read_waiters: list[asyncio.Future[None]] = []
        self._read_requested = anyio.Event()
        self._read_states: dict[bytes, asyncio.Future[int]] = {}
        self._read_ctx = random.getrandbits(48)
        self._confirm_next: asyncio.Future[int] | None = None  # the next leadership round
        self._confirming = False
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._leader_waiters: list[asyncio.Future[None]] = []
        self._published = anyio.Event()
        self._calls[LEARNER_READY] = lambda body: b"\x01" if self._learner_ready(
            int.from_bytes(body, "big")) else b"\x00"
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        # Peer ports first: a busy one fails here, before the data directory is created,
        # locked or read (server/listen.py); then the lock, before anything in the directory
        # is read or created (DESIGN rule 10).
        peer_sockets = bind_all(config.listen_peer_urls, "peers")
        try:
            self._dir_lock = lock_data_dir(self.data_dir)
            try:
                self._open_storage()
            except BaseException:
                self._dir_lock.release()
                raise
        except BaseException:
            close_all(s for socks in peer_sockets.values() for s in socks)
            raise
        self.rawnode = RawNode(self._raft_config(), self.storage)
        peers = self.membership.peer_urls()
        peer_tls = config.peer_tls  # --peer-* TLS flags (server/tls.py)
        self.transport = PeerTransport(self.member_id, self.cluster_id,
                                       list(config.listen_peer_urls), self,
                                       server_ssl=None if peer_tls.empty
                                       else peer_tls.server_context(alpn=()),
                                       client_ssl=peer_tls.client_context(),
                                       sockets=peer_sockets)
        self.transport.set_peers(peers)

    # -- construction --------------------------------------------------------------------------

    def _raft_config(self) -> RaftConfig:
        return RaftConfig(id=self.member_id, election_tick=self.election_ticks, heartbeat_tick=1,
                          applied=self._applied, check_quorum=True, pre_vote=True,
                          max_size_per_msg=1 << 20, max_inflight_msgs=256,
                          rng=random.Random().randrange)

    def _open_storage(self) -> None:
        cfg = self.config
        if DurableStorage.exists(self.data_dir):
            self.storage = DurableStorage.open(self.data_dir)
            md = self.storage.metadata
            self.member_id, self.cluster_id = md["member_id"], md["cluster_id"]
            if cfg.force_new_cluster:
                force_new_cluster(self.storage, Member(
                    id=self.member_id, name=cfg.name,
                    peer_urls=sorted(cfg.initial_advertise_peer_urls)))
            snap = self.storage.snapshot()
            self.membership.cluster_id = self.cluster_id
            if not snap.is_empty():
                self._restore_snapshot(snap)
            else:
                self._conf_state = ConfState()
            log.info("restarting member %x of cluster %x from %s (ignoring --initial-* flags)",
                     self.member_id, self.cluster_id, self.data_dir)
            return
        if cfg.force_new_cluster:
            log.warning("--force-new-cluster has no effect: %s holds no member data, so this "
                        "member bootstraps from its --initial-* flags", self.data_dir)
        token = cfg.initial_cluster_token
        initial = parse_initial_cluster(cfg.initial_cluster)
        my_urls = list(cfg.initial_advertise_peer_urls)
        if cfg.initial_cluster_state == "new":
            members = bootstrap_members(initial, token)
            self.member_id = compute_member_id(my_urls, token)
            if self.member_id not in {m.id for m in members}:
                raise BootstrapError(
                    f"--initial-cluster has no member with this member's peer URLs "
                    f"{my_urls} (--initial-advertise-peer-urls)")
            refuse_if_bootstrapped(self.member_id,
                                   [u for urls in initial.values() for u in urls
                                    if u not in my_urls],
                                   self.config.peer_tls.client_context())
            boot = Membership.bootstrap(members)
            self.cluster_id = boot.cluster_id
            self.membership = Membership(self.cluster_id)
            ents = [Entry(term=1, index=i + 1, type=EntryType.CONF_CHANGE,
                          data=encode_conf_change(ConfChange(
                              ConfChangeType.ADD_NODE, m.id,
                              encode_context(ChangeContext(0, 0, m)))))
                    for i, m in enumerate(members)]
            # atomic: a crash leaves a complete member directory or none (DESIGN rule 10)
            self.storage = DurableStorage.create(
                self.data_dir, {"member_id": self.member_id, "cluster_id": self.cluster_id},
                HardState(term=1, vote=0, commit=len(ents)), ents)
            log.info("bootstrapped member %x of new cluster %x with %d members", self.member_id,
                     self.cluster_id, len(members))
            return
        others = [u for urls in initial.values() for u in urls if u not in my_urls]
        doc = Membership.from_document(
            discover_sync(others, client_ssl=self.config.peer_tls.client_context()))
        me = doc.find_by_peer_urls(my_urls)
        if me is None:
            raise BootstrapError(f"this member ({my_urls}) is not in the existing cluster's member "
                             f"list; add it first (etcdctl member add)")
        self.member_id, self.cluster_id = me.id, doc.cluster_id
        self.membership = doc
        self.storage = DurableStorage.create(
            self.data_dir, {"member_id": self.member_id, "cluster_id": self.cluster_id})
        log.info("joining cluster %x as member %x", self.cluster_id, self.member_id)

    def _restore_snapshot(self, snap: Snapshot) -> None:
        data = _SNAPDATA.decode(snap.data)
        ms = Membership.from_document(data.membership)
        why = ms.conf_state_mismatch(snap.metadata.conf_state)
        if why:
            raise StorageError(f"snapshot at index {snap.metadata.index}: its member list "
                               f"disagrees with its Raft configuration ({why})")
        self.sm.restore(data.sm)
        self.membership.restore(data.membership)
        self._applied = snap.metadata.index
        self._applied_term = snap.metadata.term
        self._snap_index = snap.metadata.index
        self._conf_state = snap.metadata.conf_state
        if hasattr(self, "transport"):
            self.transport.set_peers(self.membership.peer_urls())

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the transport and the driver tasks; returns once the peer port is bound."""
        started = anyio.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            try:
                async with anyio.create_task_group() as tg:
                    self._scope = tg.cancel_scope
                    self._tg = tg
                    await tg.start(self.transport.run)
                    tg.start_soon(self._ticker)
                    tg.start_soon(self._ready_loop)
                    tg.start_soon(self._read_loop)
                    tg.start_soon(self._publish)
                    self._running = True
                    started.set()
            except BaseException as e:
                if not started.is_set():
                    failure.append(e)
                    started.set()
                elif not isinstance(e, asyncio.CancelledError):
                    self._fail(f"raft node failed: {e!r}", e)
                raise
            finally:
                self._shutdown_waiters()

        self._task = asyncio.get_running_loop().create_task(main())
        await started.wait()
        if failure:
            raise failure[0]
        self._maybe_campaign()
        self._wake.set()

    async def stop(self) -> None:
        """Stop the driver; pending proposals fail with ServerStoppedError."""
        was_leader = self._is_leader
        self._running = False
        if self._scope is not None:
            self._scope.cancel()
        if self._task is not None:
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        self.storage.close()
        self._dir_lock.release()
        if was_leader:
            self._set_leader(False)
        if self._fatal is not None:
            raise self._fatal

    def _fail(self, reason: str, exc: BaseException | None = None) -> None:
        """Stop this member loudly (etcd panics): log, stop the driver, call ``on_fatal``."""
        if self._fatal is not None:
            return
        log.critical("%s; stopping this member", reason, exc_info=exc)
        self._fatal = FatalError(reason)
        self._running = False
        if self._scope is not None:
            self._scope.cancel()
        self.on_fatal()

    def _shutdown_waiters(self) -> None:
        self._running = False
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(ServerStoppedError())
        self._pending.clear()
        for f in self._read_waiters:
            if not f.done():
                f.set_exception(ServerStoppedError())
        for _i, f in self._applied_waiters:
            if not f.done():
                f.set_exception(ServerStoppedError())

    # -- PeerHandler ---------------------------------------------------------------------------

    def on_messages(self, msgs: list[Message]) -> None:
        """Step peer messages into Raft; a message Raft refuses with an error stops the member."""
        if self._fatal is not None:
            return
        if log.isEnabledFor(logging.DEBUG):
            self._log_votes(msgs, sent=False)
        for m in msgs:
            try:
                self.rawnode.step(m)
            except Exception as e:  # AssertionError: an invariant broke (see the docstring)
                self._fail(f"raft: {e} (stepping {m.type.name} from {m.from_:x}, "
                           f"term {m.term}, index {m.index}, log term {m.log_term})")
                return
        self._wake.set()

    def on_snapshot(self, m: Message) -> bool:
        """Step a MsgSnap into Raft; True when Raft took it (it is now pending install)."""
        self.on_messages([m])
        pending = self.rawnode.raft.raft_log.unstable.snapshot
        return (pending is not None and m.snapshot is not None
                and pending.metadata.index == m.snapshot.metadata.index)

    def on_unreachable(self, peer_id: int) -> None:
        """The transport dropped messages to ``peer_id``."""
        self.rawnode.report_unreachable(peer_id)

    def on_snapshot_status(self, peer_id: int, failed: bool) -> None:
        """A snapshot send finished."""
        self.rawnode.report_snapshot(peer_id, failed)
        self._wake.set()

    def members_document(self) -> bytes:
        """Served to discovering (joining) members."""
        return self.membership.document()

    def is_removed(self, member_id: int) -> bool:
        """Removed members may not connect."""
        return member_id in self.membership.removed

    def on_removed_by_peer(self, peer_id: int) -> None:
        """A peer says we were removed (we may have missed the commit of our removal)."""
        if self._running and not self._removed_notified:
            log.warning("peer %x reports this member (%x) was removed from the cluster; "
                        "stopping", peer_id, self.member_id)
            self._removed = True
            self._wake.set()

    async def on_call(self, method: str, body: bytes) -> bytes:
        """Answer a request a follower forwarded to us (the leader)."""
        fn = self._calls.get(method)
        if fn is None:
            raise ValueError(f"unknown forwarded method {method!r}")
        if not self.is_leader():
            raise ValueError(NotLeaderError().message)
        result = fn(body)
        return result if isinstance(result, bytes) else await result

    def register_call(self, method: str,
                      fn: Callable[[bytes], bytes | Awaitable[bytes]]) -> None:
        """Let followers forward ``method`` to this member while it leads (see leader_call);
        ``fn`` may be a coroutine function."""
        self._calls[method] = fn

    async def leader_call(self, method: str, body: bytes,
                          timeout: float | None = None) -> bytes:
        """Run a registered leader-only ``method``: here when leading, else on the leader via
        the peer transport (giving up after ``timeout``, default the request timeout).

        Raises:
            NoLeaderError: there is no leader, or it cannot be reached in time.
        """
        if self.is_leader():
            return await self.on_call(method, body)
        lead = self.rawnode.lead  # the Raft state now, not as of the last Ready
        if not lead:
            raise NoLeaderError()
        try:
            return await self.transport.call(lead, method, body,
                                             timeout=timeout or self.request_timeout)
        except (OSError, TimeoutError) as e:
            log.info("forwarding %s to leader %x failed: %s", method, lead, e)
            raise NoLeaderError() from None

    # -- driver tasks --------------------------------------------------------------------------

    async def _ticker(self) -> None:
        nxt = time.monotonic()
        while True:
            nxt += self.tick_interval
            delay = nxt - time.monotonic()
            if delay < -self.tick_interval * 5:
                nxt = time.monotonic()  # we fell far behind (blocked loop): don't burst ticks
            await anyio.sleep(max(0.0, delay))
            self.rawnode.tick()
            self._wake.set()

    async def _ready_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self.rawnode.has_ready():
                rd = self.rawnode.ready()
                await self._handle_ready(rd)
            if self._removed:
                await self._stop_removed()

    async def _handle_ready(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._log_soft_state(rd.soft_state.lead, rd.soft_state.raft_state)
            self._lead = rd.soft_state.lead
            self._set_leader(rd.soft_state.raft_state == StateType.LEADER)
            if self._lead:
                for f in self._leader_waiters:
                    if not f.done():
                        f.set_result(None)
                self._leader_waiters.clear()
        if rd.messages:
            self._send(rd.messages)
        snap = rd.snapshot if rd.snapshot is not None and not rd.snapshot.is_empty() else None
        if rd.entries or snap is not None or rd.hard_state is not None:
            if rd.must_sync or snap is not None:
                await anyio.to_thread.run_sync(self.storage.write, rd.hard_state, rd.entries,
                                               snap, True)
            else:
                self.storage.write(rd.hard_state, rd.entries, None, False)
            self.storage.commit(rd.hard_state, rd.entries, snap)
        if rd.msgs_after_append:
            if failpoints.ACTIVE:
                await failpoints.ahit("raftBeforeFollowerSend")
            self._send(rd.msgs_after_append)
            if failpoints.ACTIVE:
                await failpoints.ahit("raftAfterFollowerSend")
        if snap is not None:
            if failpoints.ACTIVE:
                await failpoints.ahit("raftBeforeApplySnap")
            self._restore_snapshot(snap)
            log.info("applied snapshot at index %d from the leader", snap.metadata.index)
            if failpoints.ACTIVE:
                await failpoints.ahit("raftAfterApplySnap")
        if rd.committed_entries:
            if failpoints.ACTIVE:
                await failpoints.ahit("raftBeforeApply")
            self._apply_entries(rd.committed_entries)
        for rs in rd.read_states:
            rf = self._read_states.pop(rs.request_ctx, None)
            if rf is not None and not rf.done():
                rf.set_result(rs.index)
        self.rawnode.advance(rd)
        if rd.committed_entries:
            self._maybe_campaign()  # after advance: Raft refuses to campaign with unapplied confs
        self._release_applied_waiters()
        if self._applied - self._snap_index >= self.snapshot_count:
            await self._snapshot()

    def _log_soft_state(self, lead: int, state: StateType) -> None:
        """Raft role and leader changes: etcd's raft.node lines (leader changes at INFO)."""
        term = self.rawnode.term
        if state != self._raft_state:
            self._raft_state = state
            what = state.name.lower().replace("_", "-")
            if state in (StateType.CANDIDATE, StateType.PRE_CANDIDATE):
                log.debug("member %x started a campaign: became %s at term %d", self.member_id,
                          what, term)
            else:
                log.debug("member %x became %s at term %d", self.member_id, what, term)
        if lead != self._lead:
            if lead and self._lead:
                log.info("member %x changed leader from %x to %x at term %d", self.member_id,
                         self._lead, lead, term)
            elif lead:
                log.info("member %x elected leader %x at term %d", self.member_id, lead, term)
            else:
                log.info("member %x lost leader %x at term %d", self.member_id, self._lead,
                         term)

    def _log_votes(self, msgs: list[Message], sent: bool) -> None:
        """Vote requests and answers (DEBUG), sent or received."""
        for m in msgs:
            if m.type not in _VOTE_TYPES:
                continue
            kind = m.type.name.lower().replace("_", "-")
            if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
                log.debug("member %x %s %s request %s %x at term %d (log term %d, index %d)",
                          self.member_id, "sent" if sent else "received", kind,
                          "to" if sent else "from", m.to if sent else m.from_, m.term,
                          m.log_term, m.index)
            elif sent:
                log.debug("member %x %s %x's %s at term %d", self.member_id,
                          "rejected" if m.reject else "granted", m.to,
                          kind.removesuffix("-resp"), m.term)
            else:
                log.debug("member %x received %s from %x at term %d: %s", self.member_id,
                          kind, m.from_, m.term, "rejected" if m.reject else "granted")

    def _apply_entries(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.index <= self._applied:
                continue
            if e.type == EntryType.CONF_CHANGE:
                self._apply_conf_change(e)
            elif e.data:
                tag, proposer, seq = _ENVELOPE.unpack_from(e.data)
                payload = e.data[_ENVELOPE.size:]
                result: Any
                if tag == TAG_COMMAND:
                    result = self.sm.apply(e.index, payload)
                else:
                    result = b""
                    if tag == TAG_ATTRIBUTES:
                        self.membership.apply_attributes(decode_attributes(payload))
                if proposer == self.member_id:
                    self._resolve(seq, result)
            self._applied = e.index
            self._applied_term = e.term

    def _apply_conf_change(self, e: Entry) -> None:
        cc = decode_conf_change(e.data)
        changes = cc.changes if isinstance(cc, ConfChangeV2) else [cc]
        error: CoordError | None = None
        try:
            self._conf_state = self.rawnode.apply_conf_change(cc)
        except ValueError as err:
            log.warning("conf change at %d rejected: %s", e.index, err)
            error = UnhealthyClusterError(f"etcdserver: invalid conf change: {err}")
        if error is None:
            for c in changes:
                was = self.membership.members.get(c.node_id)
                self.membership.apply(c)
                now = self.membership.members.get(c.node_id)
                verb = {ConfChangeType.ADD_NODE: "promoted" if was is not None and was.is_learner
                        else "added",
                        ConfChangeType.ADD_LEARNER_NODE: "added learner",
                        ConfChangeType.REMOVE_NODE: "removed",
                        ConfChangeType.UPDATE_NODE: "updated"}.get(c.type, str(c.type))
                member = now if now is not None else was
                log.info("membership: %s member %x (peer URLs %s) at index %d", verb, c.node_id,
                         ",".join(member.peer_urls) if member is not None else "-", e.index)
                if c.type == ConfChangeType.REMOVE_NODE and c.node_id == self.member_id:
                    log.warning("this member (%x) was removed from the cluster; stopping",
                                self.member_id)
                    self._removed = True
                elif c.type == ConfChangeType.REMOVE_NODE and self._tg is not None:
                    # make it reconnect, be refused and learn that it was removed
                    self._tg.start_soon(self.transport.drop_inbound, c.node_id)
            self.transport.set_peers(self.membership.peer_urls())
        for c in changes:
            if c.context:
                ctx = decode_context(c.context)
                if ctx.proposer == self.member_id:
                    self._resolve(ctx.seq, error if error is not None else b"")

    def _resolve(self, seq: int, result: Any) -> None:
        p = self._pending.pop(seq, None)
        if p is not None and not p.future.done():
            p.future.set_result(result)

    def _release_applied_waiters(self) -> None:
        if not self._applied_waiters:
            return
        keep = []
        for idx, f in self._applied_waiters:
            if idx <= self._applied:
                if not f.done():
                    f.set_result(None)
            else:
                keep.append((idx, f))
        self._applied_waiters = keep

    def _applied_snapshot_data(self) -> bytes:
        """The applied state as a snapshot's data: state machine and member list as of
        ``self._applied``, the index whose configuration ``self._conf_state`` is."""
        return msgspec.msgpack.encode(_SnapshotData(self.sm.snapshot(),
                                                    self.membership.snapshot(), self._applied))

    def _send(self, msgs: list[Message]) -> None:
        """Hand a Ready's messages to the transport.

        Raft's MsgSnap carries the *stored* snapshot, whose ConfState and member list may
        predate the recipient (a member added since), which would then refuse it forever.
        As etcd's server does (``createMergedSnapshotMessage``, server/etcdserver/
        snapshot_merge.go, called from ``applyAll``), the snapshot sent is instead one of the
        current applied state, with its index, term and ConfState: a consistent whole, at least
        as new as the stored one, so the follower needs no compacted entry after it.
        """
        current: Snapshot | None = None  # one encoding serves every MsgSnap of this Ready
        for i, m in enumerate(msgs):
            if m.type != MessageType.SNAP:
                continue
            assert m.snapshot is not None
            if current is None:
                cs = self._conf_state
                meta = SnapshotMetadata(
                    conf_state=ConfState(voters=list(cs.voters), learners=list(cs.learners),
                                         voters_outgoing=list(cs.voters_outgoing),
                                         learners_next=list(cs.learners_next),
                                         auto_leave=cs.auto_leave),
                    index=self._applied, term=self.rawnode.raft.raft_log.term(self._applied))
                current = Snapshot(self._applied_snapshot_data(), meta)
            assert current.metadata.index >= m.snapshot.metadata.index, (
                current.metadata, m.snapshot.metadata)
            msgs[i] = dataclasses.replace(m, snapshot=current)
        if log.isEnabledFor(logging.DEBUG):
            self._log_votes(msgs, sent=True)
        self.transport.send(msgs)

    async def _snapshot(self) -> None:
        index = self._applied
        await self.storage.snapshot_and_compact(index, self._conf_state,
                                                self._applied_snapshot_data(),
                                                self.catch_up_entries)
        self._snap_index = index
        log.info("snapshot at index %d; log compacted to %d", index, self.storage.first_index())

    async def _stop_removed(self) -> None:
        self._removed = False
        if self._removed_notified:
            return
        self._removed_notified = True
        # Give the leader's commit (and our last messages) time to reach the others.
        await anyio.sleep(2 * self.tick_interval * self.election_ticks / 2)
        self.on_removed()

    async def _read_loop(self) -> None:
        retry = max(0.1, min(0.5, self.tick_interval * self.election_ticks / 2))
        while True:
            await self._read_requested.wait()
            self._read_requested = anyio.Event()
            waiters, self._read_waiters = self._read_waiters, []
            index = -1
            while index < 0 and any(not w.done() for w in waiters):
                self._read_ctx += 1
                ctx = self._read_ctx.to_bytes(8, "big")
                fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                self._read_states[ctx] = fut
                self.rawnode.read_index(ctx)
                self._wake.set()
                with anyio.move_on_after(retry):
                    index = await fut
                self._read_states.pop(ctx, None)
            if index < 0:
                continue
            if index > self._applied:
                f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._applied_waiters.append((index, f))
                await f
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def _publish(self) -> None:
        attrs = Attributes(self.member_id, self.config.name,
                           list(self.config.advertise_client_urls))
        payload = encode_attributes(attrs)
        while True:
            cur = self.membership.members.get(self.member_id)
            if cur is not None and cur.name == attrs.name and \
                    cur.client_urls == attrs.client_urls:
                log.info("published this member's attributes (name %r, client URLs %s)",
                         attrs.name, ",".join(attrs.client_urls))
                self._published.set()
                return
            if self._lead:
                try:
                    await self._propose(TAG_ATTRIBUTES, payload, timeout=self.request_timeout)
                    continue
                except CoordError as e:
                    log.debug("publishing attributes failed (will retry): %s", e)
            await anyio.sleep(self.tick_interval * 2)

    async def wait_published(self) -> None:
        """Return once this member's name and client URLs are applied (etcd's ReadyNotify).

        Needs a leader, hence a quorum: until then this waits (the peer port is already up).
        """
        await self._published.wait()

    # -- leadership ----------------------------------------------------------------------------

    def _set_leader(self, leader: bool) -> None:
        if leader == self._is_leader:
            return
        self._is_leader = leader
        log.info("member %x %s leadership (term %d)", self.member_id,
                 "acquired" if leader else "lost", self.rawnode.term)

    def _maybe_campaign(self) -> None:
        if self._conf_state.voters == [self.member_id] and not self._is_leader \
                and self.rawnode.state != StateType.LEADER:
            self.rawnode.campaign()
            self._wake.set()

    # -- Node protocol -------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _proposal_error(self, dropped: ProposalDropped | None, lead: int) -> CoordError:
        """What a failed proposal (or conf change) reports; ``lead`` was the leader when it
        was proposed.

        * Dropped by Raft (``dropped``): it never reached any log, so it surely was not
          applied and the caller may retry: "etcdserver: no leader" (NoLeaderError).
        * Appended, or forwarded to a leader, then not applied in time: it may still commit,
          so its outcome is unknown (RequestTimeoutError, never to be retried blindly).  As etcd's
          parseProposeCtxErr (server/etcdserver/v3_server.go): "request timed out, possibly
          due to previous leader failure" when the leader changed or was lost meanwhile,
          else "request timed out".
        """
        if dropped is not None:
            log.debug("proposal dropped (%s): no leader to take it", dropped)
            return NoLeaderError()
        if lead != self._lead or not self._lead:
            return TimeoutDueToLeaderFailError()
        return RequestTimeoutError()

    async def _propose(self, tag: int, payload: bytes, timeout: float | None = None,
                       leader_term: int = 0) -> Any:
        if not self._running:
            raise ServerStoppedError()
        if leader_term and self.leader_term() != leader_term:
            raise NotLeaderError()
        seq = self._next_seq()
        data = _ENVELOPE.pack(tag, self.member_id, seq) + payload
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[seq] = _Pending(fut)
        lead = self._lead
        try:
            try:
                self.rawnode.propose(data)
            except ProposalDropped as e:
                raise self._proposal_error(e, lead) from None
            self._wake.set()
            with anyio.fail_after(timeout or self.request_timeout):
                return await fut
        except TimeoutError:
            raise self._proposal_error(None, lead) from None
        finally:
            self._pending.pop(seq, None)

    async def propose(self, command: bytes, leader_term: int = 0) -> bytes:
        """Replicate ``command``; return this member's apply result (raise its CoordError).

        With ``leader_term``, only while this member leads that term (see
        :meth:`propose_as_leader`)."""
        result = await self._propose(TAG_COMMAND, command, leader_term=leader_term)
        if isinstance(result, CoordError):
            raise result
        assert isinstance(result, bytes)
        return result

    async def read_index(self) -> None:
        """Linearizable barrier (batched ReadIndex; see the module docstring)."""
        if not self._running:
            raise ServerStoppedError()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_waiters.append(fut)
        self._read_requested.set()
        try:
            with anyio.fail_after(self.request_timeout):
                await fut
        except TimeoutError:
            raise (RequestTimeoutError() if self._lead else NoLeaderError()) from None

    def is_leader(self) -> bool:
        """True while this member is the Raft leader *now*: read from the Raft core's state,
        which changes as soon as Raft steps a higher-term message or check-quorum steps it
        down, not when the next Ready is handled (DESIGN rule 9; the Ready loop may be
        waiting on the disk meanwhile)."""
        return self.rawnode.state == StateType.LEADER

    def leader_term(self) -> int:
        """The current term while this member leads now *and* has applied an entry of that
        term (its empty entry at election), so every entry of earlier terms is applied; else
        0. Leader-only decisions that depend on applied state (lease renewal and expiry) are
        made only while this is non-zero: etcd promotes its lessor when the leader applies
        the empty entry of its term (applyEntryNormal)."""
        if self.rawnode.state != StateType.LEADER:
            return 0
        term = self.rawnode.term
        return term if self._applied_term == term else 0

    async def confirm_leadership(self, term: int, timeout: float) -> bool:
        """True if a quorum confirms that this member is still leader of ``term`` (a ReadIndex
        round issued as leader: heartbeats whose acks count only in this term), answered
        within ``timeout``. etcd's ensureLeadership (etcd #15247, PR #16822). A leader whose
        Ready loop is stuck on the disk cannot send the heartbeats, so it cannot confirm.

        Callers share rounds, but each waits for a round that *starts* after it called (the
        next one when a round is already in flight), as etcd's linearizable read loop does.
        """
        if self.leader_term() != term or not self._running or self._tg is None:
            return False
        if self._confirm_next is None:
            self._confirm_next = asyncio.get_running_loop().create_future()
        fut = self._confirm_next
        if not self._confirming:
            self._confirming = True
            self._tg.start_soon(self._confirm_rounds)
        with anyio.move_on_after(timeout):
            return await asyncio.shield(fut) == term and self.leader_term() == term
        return False

    async def _confirm_rounds(self) -> None:
        """Run leadership rounds while callers wait for one; each resolves its callers with
        the term it confirmed (0: none)."""
        round_timeout = self.request_timeout  # no caller waits longer
        try:
            while self._confirm_next is not None:
                fut, self._confirm_next = self._confirm_next, None
                term = self.leader_term()
                confirmed = 0
                if term:
                    self._read_ctx += 1
                    ctx = self._read_ctx.to_bytes(8, "big")
                    rf: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                    self._read_states[ctx] = rf
                    try:
                        # issued while leader of `term`: Raft answers it locally after a
                        # quorum of heartbeat acks of this term and drops it if it steps down
                        self.rawnode.read_index(ctx)
                        self._wake.set()
                        with anyio.move_on_after(round_timeout):
                            await rf
                    finally:
                        self._read_states.pop(ctx, None)
                    if rf.done() and self.leader_term() == term:
                        confirmed = term
                if not fut.done():
                    fut.set_result(confirmed)
        finally:
            self._confirming = False

    async def wait_applied(self, index: int, timeout: float) -> bool:
        """Wait until this member has applied ``index``; False after ``timeout``."""
        if index <= self._applied:
            return True
        f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, f))
        with anyio.move_on_after(timeout):
            await f
            return True
        return False

    async def propose_as_leader(self, command: bytes, term: int) -> bytes:
        """Like :meth:`propose`, but only while this member leads ``term`` now: checked right
        before the entry is appended to this member's own log, so the proposal is never
        forwarded to another leader (NotLeaderError instead)."""
        return await self.propose(command, leader_term=term)

    def leader_id(self) -> int:
        """The leader's member ID (0 when unknown)."""
        return self._lead

    def term(self) -> int:
        """Current Raft term."""
        return self.rawnode.term

    def commit_index(self) -> int:
        """Highest index known committed."""
        return self.rawnode.raft.raft_log.committed

    def applied_index(self) -> int:
        """Highest index applied to the state machine."""
        return self._applied

    def members(self) -> list[MemberInfo]:
        """The member list as of the applied index."""
        return self.membership.infos()

    def leader_client_urls(self) -> list[str]:
        """Client URLs of the current leader (empty when unknown or unpublished)."""
        m = self.membership.members.get(self._lead)
        return list(m.client_urls) if m is not None else []

    async def _propose_conf(self, cc: ConfChange) -> None:
        if not self._running:
            raise ServerStoppedError()
        seq = _seq_from_context(cc)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[seq] = _Pending(fut)
        lead = self._lead
        try:
            deadline = time.monotonic() + self.request_timeout
            while True:  # a conf change is refused while another is pending: retry a while
                lead = self._lead
                try:
                    self.rawnode.propose_conf_change(cc)
                    break
                except ProposalDropped as e:
                    if not self._lead:
                        raise self._proposal_error(e, lead) from None
                    if time.monotonic() > deadline:
                        raise UnhealthyClusterError(
                            f"etcdserver: unhealthy cluster ({e})") from None
                    await anyio.sleep(self.tick_interval)
            self._wake.set()
            with anyio.fail_after(max(0.1, deadline - time.monotonic())):
                result = await fut
        except TimeoutError:
            raise self._proposal_error(None, lead) from None
        finally:
            self._pending.pop(seq, None)
        if isinstance(result, CoordError):
            raise result

    def _conf(self, typ: ConfChangeType, member: Member) -> ConfChange:
        seq = self._next_seq()
        return ConfChange(typ, member.id, encode_context(ChangeContext(self.member_id, seq,
                                                                       member)))

    async def add_member(self, peer_urls: Sequence[str], is_learner: bool) -> MemberInfo:
        """MemberAdd (optionally as a learner)."""
        urls = sorted(peer_urls)
        for u in urls:
            parse_url(u)
        if self.membership.peer_url_taken(urls):
            raise PeerURLExistsError()
        member = Member(id=new_member_id(urls, self.config.initial_cluster_token),
                        peer_urls=urls, is_learner=is_learner)
        typ = ConfChangeType.ADD_LEARNER_NODE if is_learner else ConfChangeType.ADD_NODE
        await self._propose_conf(self._conf(typ, member))
        return member.info()

    async def remove_member(self, member_id: int) -> None:
        """MemberRemove (the leader may remove itself: it steps down and stops)."""
        m = self.membership.members.get(member_id)
        if m is None:
            raise MemberNotFoundError()
        await self._propose_conf(self._conf(ConfChangeType.REMOVE_NODE, Member(id=member_id)))

    async def promote_member(self, member_id: int) -> None:
        """MemberPromote: a learner in sync with the leader becomes a voter
        (LearnerNotReadyError otherwise)."""
        m = self.membership.members.get(member_id)
        if m is None:
            raise MemberNotFoundError()
        if not m.is_learner:
            raise MemberNotLearnerError()
        if self.is_leader():
            ready = self._learner_ready(member_id)
        else:  # only the leader knows the learner's progress (etcd forwards to the leader too)
            ready = await self.leader_call(LEARNER_READY, member_id.to_bytes(8, "big")) == b"\x01"
        if not ready:
            raise LearnerNotReadyError()
        await self._propose_conf(self._conf(ConfChangeType.ADD_NODE, Member(id=member_id)))

    def _learner_ready(self, member_id: int) -> bool:
        """On the leader: the learner's match index is >= 90% of the leader's (etcd's rule;
        a member without progress, e.g. just applied, counts as ready as in etcd)."""
        progress = self.rawnode.status().progress
        learner, leader = progress.get(member_id), progress.get(self.member_id)
        if learner is None or leader is None:
            return True
        return learner.match >= leader.match * LEARNER_READY_PERCENT

    async def update_member(self, member_id: int, peer_urls: Sequence[str]) -> None:
        """MemberUpdate: change a member's peer URLs."""
        m = self.membership.members.get(member_id)
        if m is None:
            raise MemberNotFoundError()
        urls = sorted(peer_urls)
        for u in urls:
            parse_url(u)
        if self.membership.peer_url_taken(urls, except_id=member_id):
            raise PeerURLExistsError()
        new = Member(id=member_id, name=m.name, peer_urls=urls, client_urls=m.client_urls,
                     is_learner=m.is_learner)
        await self._propose_conf(self._conf(ConfChangeType.UPDATE_NODE, new))

    async def transfer_leader(self, target_id: int) -> None:
        """MoveLeader: must run on the leader; waits until ``target_id`` leads."""
        if not self.is_leader():
            raise NotLeaderError()
        m = self.membership.members.get(target_id)
        if m is None or m.is_learner:
            raise BadLeaderTransfereeError()
        if target_id == self.member_id:
            return
        self.rawnode.transfer_leader(target_id)
        self._wake.set()
        with anyio.move_on_after(self.request_timeout):
            while self._lead != target_id:
                await anyio.sleep(self.tick_interval)
            return
        raise RequestTimeoutError("etcdserver: request timed out, leader transfer took too long")

    # -- invariants ----------------------------------------------------------------------------

    def _check(self) -> None:
        assert self._applied <= self.commit_index(), (self._applied, self.commit_index())
        assert self._snap_index <= self._applied
        self.membership._check()


def _seq_from_context(cc: ConfChange) -> int:
    return decode_context(cc.context).seq
