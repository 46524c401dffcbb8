"""RawNode: the application-facing, thread-unsafe API of the Raft core (etcd's ``RawNode``).

Driver contract (the only correct processing order; the node driver implements exactly this)::

    rd = node.ready()                      # only if node.has_ready()
    send(rd.messages)                      # may go out immediately (even before the disk write)
    persist(rd.snapshot, rd.entries, rd.hard_state); fsync if rd.must_sync
                                           # writing entry i discards stored entries >= i
    send(rd.msgs_after_append)             # only after the write above is durable
    apply(rd.snapshot); apply(rd.committed_entries)
                                           # conf-change entries: node.apply_conf_change(cc)
    serve reads in rd.read_states once applied >= read_state.index
    node.advance(rd)

Snapshots: for every SNAP message it sends, the driver reports the outcome with
``report_snapshot(id, failed)`` (failed also when the follower's Raft refused it); until then
the follower's progress stays paused.  Like etcd's
server (``createMergedSnapshotMessage``), the driver should send a snapshot of its *current*
applied state rather than the stored one, whose membership may predate the recipient.

``ready()`` must not be called again before ``advance()`` of the previous Ready.  ``step()``,
``tick()`` and ``propose()`` may be called between them; their effects show in the next Ready.

Persistence model: the simpler synchronous one.  The leader appends proposals to its unstable
log and broadcasts them, but counts its own acknowledgement only in ``advance()``, i.e. after
the driver persisted them.  So an entry is reported committed only once a quorum, *including the
leader if it is counted*, has it durable; a single-voter node commits after its own fsync.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .confchange_codec import encode_conf_change
from .config import RaftConfig
from .core import Raft
from .errors import ProposalDropped
from .progress import Progress
from .storage import Storage
from .types import (
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
)

__all__ = ["RawNode", "Ready", "Status"]

MT = MessageType

# Messages a peer must never send us (they are generated locally).
_LOCAL_ONLY = frozenset({MT.HUP, MT.BEAT, MT.UNREACHABLE, MT.SNAP_STATUS, MT.CHECK_QUORUM})
_RESPONSES = frozenset(
    {MT.APP_RESP, MT.VOTE_RESP, MT.HEARTBEAT_RESP, MT.PRE_VOTE_RESP, MT.UNREACHABLE}
)
# Messages that acknowledge persisted state: always held back until the Ready is durable.
_AFTER_APPEND = frozenset({MT.APP_RESP, MT.VOTE_RESP})


@dataclass(slots=True)
class Ready:
    """Everything the driver must do in one iteration (see the module docstring)."""

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    read_states: list[ReadState] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    msgs_after_append: list[Message] = field(default_factory=list)
    must_sync: bool = False


@dataclass(slots=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    lead: int
    state: StateType
    applied: int
    lead_transferee: int
    # Leader only: a copy of every member's progress.
    progress: dict[int, Progress]
    conf_state: ConfState


class RawNode:
    def __init__(self, config: RaftConfig, storage: Storage) -> None:
        self.raft = Raft(config, storage)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()

    # -- properties ----------------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self.raft.id

    @property
    def lead(self) -> int:
        return self.raft.lead

    @property
    def term(self) -> int:
        return self.raft.term

    @property
    def state(self) -> StateType:
        return self.raft.state

    # -- inputs ------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (elections, heartbeats, check-quorum)."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (with pre-vote if configured)."""
        self.raft.step(Message(MT.HUP, from_=self.raft.id))

    def propose(self, data: bytes) -> None:
        """Propose ``data`` for appending to the log.

        Raises:
            ProposalDropped: no known leader, a leadership transfer is pending, this node is
                not the leader and forwarding is disabled, or it was removed.  The proposal
                may still be lost later (e.g. leader change): applications retry on timeout.
        """
        self.raft.step(Message(MT.PROP, from_=self.raft.id, entries=[Entry(data=data)]))

    def propose_batch(self, datas: list[bytes]) -> None:
        """Propose several entries at once: one append message per follower carries them all,
        which is much cheaper than ``len(datas)`` calls to :meth:`propose`.  All-or-nothing.

        Raises:
            ProposalDropped: as :meth:`propose`.
        """
        if not datas:
            return
        ents = [Entry(data=d) for d in datas]
        self.raft.step(Message(MT.PROP, from_=self.raft.id, entries=ents))

    def propose_conf_change(self, cc: ConfChange | ConfChangeV2) -> None:
        """Propose a membership change (at most one may be pending).

        Raises:
            ProposalDropped: as :meth:`propose`, or another conf change is pending, or the
                change does not fit the current (joint or not) configuration.
        """
        ent = Entry(type=EntryType.CONF_CHANGE, data=encode_conf_change(cc))
        self.raft.step(Message(MT.PROP, from_=self.raft.id, entries=[ent]))

    def apply_conf_change(self, cc: ConfChange | ConfChangeV2) -> ConfState:
        """Apply a *committed* conf change (call when applying its entry); returns ConfState."""
        return self.raft.apply_conf_change(cc)

    def step(self, m: Message) -> None:
        """Feed a message received from a peer.  Local-only and unknown-peer messages are
        ignored, and so is a forwarded proposal the leader cannot accept."""
        if m.type in _LOCAL_ONLY:
            return
        if m.type in _RESPONSES and m.from_ not in self.raft.trk.progress:
            return
        try:
            self.raft.step(m)
        except ProposalDropped:
            pass

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read; a ReadState with ``request_ctx == ctx`` follows in a
        later Ready once leadership is confirmed.  Use a fresh ``ctx`` for every attempt: a retry
        reusing a context could be matched with an older, lower read index."""
        self.raft.step(Message(MT.READ_INDEX, from_=self.raft.id, context=ctx))

    def transfer_leader(self, transferee: int) -> None:
        """Ask the leader to hand leadership to ``transferee``."""
        self.raft.step(Message(MT.TRANSFER_LEADER, from_=transferee))

    def report_unreachable(self, id_: int) -> None:
        """The transport failed to send to ``id_``: stop optimistic replication to it."""
        self.raft.step(Message(MT.UNREACHABLE, from_=id_))

    def report_snapshot(self, id_: int, failed: bool) -> None:
        """Outcome of sending a snapshot to ``id_``."""
        self.raft.step(Message(MT.SNAP_STATUS, from_=id_, reject=failed))

    # -- outputs ------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self.raft
        if r.soft_state() != self._prev_soft:
            return True
        if r.hard_state() != self._prev_hard:
            return True
        if r.raft_log.has_pending_snapshot():
            return True
        if r.msgs or r.raft_log.unstable.entries or r.raft_log.has_next_committed_ents():
            return True
        return bool(r.read_states)

    def ready(self) -> Ready:
        """Collect pending work.  Call :meth:`advance` once it has been processed."""
        r = self.raft
        rd = Ready(
            entries=r.raft_log.unstable_entries(),
            committed_entries=r.raft_log.next_committed_ents(),
            snapshot=r.raft_log.unstable.snapshot,
        )
        soft = r.soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
            self._prev_soft = soft
        hard = r.hard_state()
        term_or_vote_changed = (hard.term, hard.vote) != (
            self._prev_hard.term,
            self._prev_hard.vote,
        )
        if hard != self._prev_hard:
            rd.hard_state = hard
            self._prev_hard = hard
        rd.read_states, r.read_states = r.read_states, []
        msgs, r.msgs = r.msgs, []
        if term_or_vote_changed or rd.snapshot is not None:
            rd.msgs_after_append = msgs
        else:
            for m in msgs:
                (rd.msgs_after_append if m.type in _AFTER_APPEND else rd.messages).append(m)
        rd.must_sync = bool(rd.entries) or term_or_vote_changed or rd.snapshot is not None
        return rd

    def advance(self, rd: Ready) -> None:
        """Acknowledge that ``rd`` was persisted, sent and applied."""
        r = self.raft
        log = r.raft_log
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.metadata.index)
        applied = 0
        if rd.committed_entries:
            applied = rd.committed_entries[-1].index
        elif rd.snapshot is not None:
            applied = rd.snapshot.metadata.index
        if applied:
            log.applied_to(applied)
        r.on_persisted()
        if applied:
            r.on_applied(applied)

    def status(self) -> Status:
        r = self.raft
        prs: dict[int, Progress] = {}
        if r.state == StateType.LEADER:
            for id_, pr in r.trk.progress.items():
                c = Progress(pr.next, 1)
                c.match, c.state, c.is_learner = pr.match, pr.state, pr.is_learner
                c.recent_active, c.pending_snapshot = pr.recent_active, pr.pending_snapshot
                prs[id_] = c
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            commit=r.raft_log.committed,
            lead=r.lead,
            state=r.state,
            applied=r.raft_log.applied,
            lead_transferee=r.lead_transferee,
            progress=prs,
            conf_state=r.trk.conf_state(),
        )

    def _check(self) -> None:
        self.raft._check()
