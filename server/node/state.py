"""NodeState: the state the node's parts share, and what the node answers about itself.

Theory of operation: :class:`~coord.server.node.RaftNode` is put together from one part per
concept (driver, proposals, read index, reconfiguration, leader calls, snapshots), each a
mixin over this class. It declares the shared state (set by the constructor in
:mod:`.raftnode`) and the queries the API layer asks (the Node protocol's read side); the
methods one part calls on another are declared here and implemented by that part.

Leadership is read from the Raft core, never from the flag the Ready loop updates:
:meth:`NodeState.is_leader` is the core's state now (it changes as soon as Raft steps a
higher-term message or check-quorum steps it down, even while the Ready loop waits on the
disk); :meth:`NodeState.leader_term` is non-zero only while leading and after applying an
entry of the current term (architecture rule 9).
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from coord.errors import CoordError
from coord.server.config import Config
from coord.server.membership import MemberInfo, Membership
from coord.server.raft.errors import ProposalDropped
from coord.server.raft.rawnode import RawNode
from coord.server.raft.types import ConfState, Entry, Message, Snapshot, StateType
from coord.server.statemachine import StateMachine
from coord.server.storage import DurableStorage
from coord.server.storage.fileutil import DataDirLock
from coord.server.transport import PeerTransport

from .stats import AppendClock, FollowerStatus, NodeStats
from .waiter import Waiter

__all__ = ["FatalError", "NodeState"]

log = logging.getLogger("coord.server.node")


class FatalError(OSError):
    """This member stopped because its Raft state cannot go on (the message says why)."""


class NodeState(abc.ABC):
    """Shared state and self-queries of a Raft member (see the module docstring)."""

    config: Config
    sm: StateMachine
    on_removed: Callable[[], None]
    on_fatal: Callable[[], None]
    data_dir: Path
    tick_interval: float
    election_ticks: int
    request_timeout: float
    snapshot_count: int
    catch_up_entries: int
    member_id: int
    cluster_id: int
    membership: Membership
    storage: DurableStorage
    rawnode: RawNode
    transport: PeerTransport
    _dir_lock: DataDirLock
    _calls: dict[str, tuple[Callable[[bytes], bytes | Awaitable[bytes]], bool]]  # leader only?
    _pending: dict[int, Waiter[Any]]
    _seq: int
    _lead: int
    stats: NodeStats
    _append_clock: AppendClock  # when the leader appended what (follower lag in time)
    _heard: dict[int, float]  # monotonic time a message from each peer last arrived
    _raft_state: StateType  # as of the last Ready (for the log lines)
    _is_leader: bool
    _applied: int
    _applied_term: int  # term of the entry at _applied (see leader_term)
    _snap_index: int
    _conf_state: ConfState
    _running: bool
    _removed: bool
    _removed_notified: bool
    _fatal: FatalError | None
    _wake: anyio.Event
    _read_waiters: list[Waiter[None]]
    _read_requested: anyio.Event
    _read_states: dict[bytes, Waiter[int]]
    _read_ctx: int
    _confirm_next: Waiter[int] | None  # the next leadership round
    _confirming: bool
    _applied_waiters: list[tuple[int, Waiter[None]]]
    _published: anyio.Event
    _tg: anyio.abc.TaskGroup | None

    # -- queries (the Node protocol) -----------------------------------------------------------

    def is_leader(self) -> bool:
        """True while this member is the Raft leader *now*: read from the Raft core's state,
        which changes as soon as Raft steps a higher-term message or check-quorum steps it
        down, not when the next Ready is handled (architecture rule 9; the Ready loop may be
        waiting on the disk meanwhile)."""
        return self.rawnode.state == StateType.LEADER

    def followers(self) -> list[FollowerStatus]:
        """The leader's view of every other member (empty unless this member leads now)."""
        raft = self.rawnode.raft
        if raft.state != StateType.LEADER:
            return []
        last, now = raft.raft_log.last_index(), time.monotonic()
        progress = raft.trk.progress
        out = []
        for id_, pr in progress.items():
            if id_ == self.member_id:
                continue
            heard = self._heard.get(id_)
            out.append(
                FollowerStatus(
                    id=id_,
                    match=pr.match,
                    lag_entries=max(0, last - pr.match),
                    lag_seconds=self._append_clock.age(pr.match, now) if pr.match < last else 0.0,
                    since_heard=None if heard is None else now - heard,
                    is_learner=pr.is_learner,
                )
            )
        if progress:
            self._append_clock.acknowledged(min(pr.match for pr in progress.values()))
        return out

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

    def _set_leader(self, leader: bool) -> None:
        if leader == self._is_leader:
            return
        self._is_leader = leader
        log.info(
            "member %x %s leadership (term %d)",
            self.member_id,
            "acquired" if leader else "lost",
            self.rawnode.term,
        )

    def _maybe_campaign(self) -> None:
        if (
            self._conf_state.voters == [self.member_id]
            and not self._is_leader
            and self.rawnode.state != StateType.LEADER
        ):
            self.rawnode.campaign()
            self._wake.set()

    def _check(self) -> None:
        assert self._applied <= self.commit_index(), (self._applied, self.commit_index())
        assert self._snap_index <= self._applied
        self.membership._check()

    # -- implemented by the parts (declared here for the others; abstract, so a RaftNode that
    # -- lacks one cannot be built) ---------------------------------------------------------

    @abc.abstractmethod
    def _fail(self, reason: str, exc: BaseException | None = None) -> None:
        """Stop this member loudly (driver)."""

    @abc.abstractmethod
    def _log_votes(self, msgs: list[Message], sent: bool) -> None:
        """Vote messages at DEBUG (driver)."""

    @abc.abstractmethod
    def _next_seq(self) -> int:
        """The next proposal sequence number (proposals)."""

    @abc.abstractmethod
    def _proposal_error(self, dropped: ProposalDropped | None, lead: int) -> CoordError:
        """What a failed proposal reports (proposals)."""

    @abc.abstractmethod
    async def _propose(
        self, tag: int, payload: bytes, timeout: float | None = None, leader_term: int = 0
    ) -> Any:
        """Propose an envelope, wait for its local apply (proposals)."""

    @abc.abstractmethod
    def _resolve(self, seq: int, result: Any) -> None:
        """Hand an applied proposal's result to its waiter (proposals)."""

    @abc.abstractmethod
    async def _read_loop(self) -> None:
        """The ReadIndex batcher (readindex)."""

    @abc.abstractmethod
    def _release_applied_waiters(self) -> None:
        """Wake the waiters whose index is applied (readindex)."""

    @abc.abstractmethod
    def _apply_conf_change(self, e: Entry) -> None:
        """Apply a committed conf change (reconfig)."""

    @abc.abstractmethod
    async def leader_call(self, method: str, body: bytes, timeout: float | None = None) -> bytes:
        """Run a leader-only method on the leader (leadercall)."""

    @abc.abstractmethod
    def _restore_snapshot(self, snap: Snapshot) -> None:
        """Install a snapshot's state (snapshots)."""

    @abc.abstractmethod
    def _send(self, msgs: list[Message]) -> None:
        """Hand a Ready's messages to the transport (snapshots: MsgSnap is merged)."""

    @abc.abstractmethod
    async def _snapshot(self) -> None:
        """Snapshot the applied state and compact the log (snapshots)."""
