"""RaftNode: a Raft member put together from its parts, and how one is opened.

Theory of operation: the node owns a :class:`~coord.server.raft.rawnode.RawNode` (pure Raft),
a :class:`~coord.server.storage.DurableStorage` (WAL + snapshots), a
:class:`~coord.server.transport.PeerTransport` and the :class:`Membership`.
:meth:`RaftNode.open` binds the peer ports first (a busy one fails there, before the data
directory is created, locked or read: server/listen.py), then locks the data directory
before anything in it is read or created (architecture rule 10), then recovers, bootstraps or
joins (:mod:`.bootstrap`) and builds the Raft state.  The caller then runs it
(:meth:`Driver.run`).  The transport calls back into the node (the PeerHandler methods here):
a peer message Raft refuses with an error stops the member (:meth:`Driver._fail`).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from coord.server.config import Config
from coord.server.listen import bind_all, close_all
from coord.server.raft.config import RaftConfig
from coord.server.raft.rawnode import RawNode
from coord.server.raft.types import ConfState, Message, StateType
from coord.server.statemachine import StateMachine
from coord.server.storage.diskstats import DiskStats
from coord.server.storage.fileutil import DataDirLock, lock_data_dir
from coord.server.transport import PeerTransport
from coord.server.transport.stats import PeerStats

from .bootstrap import OpenedMember, open_member
from .driver import Driver
from .leadercall import LeaderCalls
from .proposals import Proposals
from .readindex import ReadIndex
from .reconfig import LEARNER_READY, Reconfig
from .snapshots import Snapshots
from .stats import AppendClock, NodeStats

__all__ = ["RaftNode"]

log = logging.getLogger("coord.server.node")


class RaftNode(Driver, Proposals, ReadIndex, Reconfig, LeaderCalls, Snapshots):
    """The Raft-backed :class:`~coord.server.node.protocol.Node` (see the module docstrings)."""

    @classmethod
    async def open(
        cls,
        config: Config,
        sm: StateMachine,
        on_removed: Callable[[], None] | None = None,
        on_fatal: Callable[[], None] | None = None,
    ) -> RaftNode:
        """Bind the peer ports, lock the data directory, recover/bootstrap/join, build."""
        peer_sockets = bind_all(config.listen_peer_urls, "peers")
        try:
            dir_lock = lock_data_dir(Path(config.data_dir))
            try:
                opened = await open_member(config)
                try:
                    return cls(config, sm, opened, dir_lock, peer_sockets, on_removed, on_fatal)
                except BaseException:
                    opened.storage.close()
                    raise
            except BaseException:
                dir_lock.release()
                raise
        except BaseException:
            close_all(s for socks in peer_sockets.values() for s in socks)
            raise

    def __init__(
        self,
        config: Config,
        sm: StateMachine,
        opened: OpenedMember,
        dir_lock: DataDirLock,
        peer_sockets: dict[str, list[socket.socket]],
        on_removed: Callable[[], None] | None = None,
        on_fatal: Callable[[], None] | None = None,
    ) -> None:
        """Use :meth:`open`."""
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
        self._calls = {LEARNER_READY: (self._learner_ready_call, True)}
        self._pending = {}
        self._seq = random.getrandbits(62)
        self._lead = 0
        self.stats = NodeStats()
        self._append_clock = AppendClock()
        self._heard = {}
        self._raft_state = StateType.FOLLOWER
        self._is_leader = False
        self._applied = 0
        self._applied_term = 0
        self._snap_index = 0
        self._conf_state = ConfState()
        self._running = False
        self._removed = False
        self._removed_notified = False
        self._fatal = None
        self._wake = anyio.Event()
        self._read_waiters = []
        self._read_requested = anyio.Event()
        self._read_states = {}
        self._read_ctx = random.getrandbits(48)
        self._confirm_next = None
        self._confirming = False
        self._applied_waiters = []
        self._published = anyio.Event()
        self._scope = None
        self._tg = None
        self._dir_lock = dir_lock
        self.storage = opened.storage
        self.member_id, self.cluster_id = opened.member_id, opened.cluster_id
        self.membership = opened.membership
        if opened.snapshot is not None:
            self._restore_snapshot(opened.snapshot)
        self.rawnode = RawNode(self._raft_config(), self.storage)
        peer_tls = config.peer_tls  # --peer-* TLS flags (server/tls.py)
        self.transport = PeerTransport(
            self.member_id,
            self.cluster_id,
            list(config.listen_peer_urls),
            self,
            server_ssl=None if peer_tls.empty else peer_tls.server_context(alpn=()),
            client_ssl=peer_tls.client_context(),
            sockets=peer_sockets,
        )
        self.transport.set_peers(self.membership.peer_urls())

    def disk_stats(self) -> DiskStats:
        """The WAL's fsync latencies and bytes written."""
        return self.storage.wal.stats

    def peer_stats(self) -> dict[int, PeerStats]:
        """Bytes, failures and round trips per peer, as the peer transport counts them."""
        return self.transport.stats()

    def _raft_config(self) -> RaftConfig:
        return RaftConfig(
            id=self.member_id,
            election_tick=self.election_ticks,
            heartbeat_tick=1,
            applied=self._applied,
            check_quorum=True,
            pre_vote=True,
            max_size_per_msg=1 << 20,
            max_inflight_msgs=256,
            rng=random.Random().randrange,
        )

    # -- PeerHandler ---------------------------------------------------------------------------

    def on_messages(self, msgs: list[Message]) -> None:
        """Step peer messages into Raft; a message Raft refuses with an error stops the member."""
        if self._fatal is not None:
            return
        if msgs:  # one batch comes from one peer
            self._heard[msgs[0].from_] = time.monotonic()
        if log.isEnabledFor(logging.DEBUG):
            self._log_votes(msgs, sent=False)
        for m in msgs:
            try:
                self.rawnode.step(m)
            except Exception as e:  # AssertionError: an invariant broke (see driver.py)
                self._fail(
                    f"raft: {e} (stepping {m.type.name} from {m.from_:x}, "
                    f"term {m.term}, index {m.index}, log term {m.log_term})"
                )
                return
        self._wake.set()

    def on_snapshot(self, m: Message) -> bool:
        """Step a MsgSnap into Raft; True when Raft took it (it is now pending install)."""
        self.on_messages([m])
        pending = self.rawnode.raft.raft_log.unstable.snapshot
        return (
            pending is not None
            and m.snapshot is not None
            and pending.metadata.index == m.snapshot.metadata.index
        )

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
            log.warning(
                "peer %x reports this member (%x) was removed from the cluster; stopping",
                peer_id,
                self.member_id,
            )
            self._removed = True
            self._wake.set()
