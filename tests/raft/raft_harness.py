"""An in-memory Raft cluster for scenario tests and the randomized simulation.

``Cluster`` plays the node driver for every member: it drains ``Ready``s in the documented order
(send ``messages``, persist, send ``msgs_after_append``, apply, ``advance``), keeps a
``MemoryStorage`` per node as its *durable* state (a crash loses everything else), and carries
messages on a network that can drop, delay, reorder, duplicate and partition them.  While doing
so it checks the Raft safety properties globally:

* election safety: at most one leader per term;
* log matching: an (index, term) pair identifies one entry and one predecessor term;
* leader completeness: a new leader holds every entry known committed;
* state machine safety: no two nodes apply different entries at one index;
* linearizable ReadIndex: a read state's index covers everything committed before the request.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from coord.server.raft import (
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    ProposalDropped,
    RaftConfig,
    RawNode,
    Snapshot,
    SnapshotMetadata,
    StateType,
    decode_conf_change,
)
from coord.server.raft.storage import MemoryStorage

MT = MessageType


class SafetyViolation(AssertionError):
    pass


@dataclass
class StateMachine:
    """The application state of one node: applied payloads and membership."""

    applied_index: int = 0
    payloads: list[bytes] = field(default_factory=list)
    conf_state: ConfState = field(default_factory=ConfState)


class CrashNow(Exception):
    """Raised inside Ready processing to simulate a crash before persisting."""


def fmt_msg(m: Message) -> str:
    """etcd-style one-line rendering of a message (used by data-driven scenarios)."""
    name = "Msg" + "".join(p.capitalize() for p in m.type.name.split("_"))
    s = f"{m.from_}->{m.to} {name} Term:{m.term} Log:{m.log_term}/{m.index}"
    if m.commit:
        s += f" Commit:{m.commit}"
    if m.reject:
        s += f" Rejected (Hint: {m.reject_hint})"
    if m.entries:
        s += " Entries:[" + ", ".join(fmt_entry(e) for e in m.entries) + "]"
    if m.snapshot is not None:
        md = m.snapshot.metadata
        s += f" Snapshot: Index:{md.index} Term:{md.term} Voters:{md.conf_state.voters}"
    if m.context:
        s += f" Context:{m.context.decode(errors='replace')}"
    return s


def fmt_entry(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE:
        return f"{e.term}/{e.index} ConfChange {decode_conf_change(e.data)!r}"
    return f"{e.term}/{e.index} EntryNormal {e.data.decode(errors='replace')!r}"


class Cluster:
    def __init__(
        self,
        voters: Iterable[int],
        *,
        learners: Iterable[int] = (),
        spares: Iterable[int] = (),
        rng: random.Random | None = None,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_size_per_msg: int = 1 << 20,
        max_inflight_msgs: int = 256,
        max_inflight_bytes: int = 0,
        max_committed_size_per_ready: int | None = None,
        fixed_timeouts: bool = False,
        timeout_offsets: dict[int, int] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.rng = rng or random.Random(0)
        self.voters0 = list(voters)
        self.learners0 = list(learners)
        self.cfg: dict[str, Any] = {
            "election_tick": election_tick,
            "heartbeat_tick": heartbeat_tick,
            "pre_vote": pre_vote,
            "check_quorum": check_quorum,
            "max_size_per_msg": max_size_per_msg,
            "max_inflight_msgs": max_inflight_msgs,
            "max_inflight_bytes": max_inflight_bytes,
            "max_committed_size_per_ready": max_committed_size_per_ready,
        }
        self.fixed_timeouts = fixed_timeouts or timeout_offsets is not None
        self.timeout_offsets = timeout_offsets or {}
        self.log = log
        self.storage: dict[int, MemoryStorage] = {}
        self.nodes: dict[int, RawNode | None] = {}
        self.sm: dict[int, StateMachine] = {}
        all_ids = [*self.voters0, *self.learners0, *spares]
        for id_ in all_ids:
            # Spares (future members) also start from the initial membership, as an etcd member
            # joining an existing cluster learns it from --initial-cluster; they are not in it,
            # so they cannot campaign until they are added.
            cs = ConfState(voters=list(self.voters0), learners=list(self.learners0))
            self.storage[id_] = MemoryStorage(cs)
            self.nodes[id_] = None
            self.restart(id_)
        # Network: messages in flight (delivery order is chosen by the caller).
        self.net: list[Message] = []
        # Node groups: messages between different groups are dropped.  None: fully connected.
        self.partition: dict[int, int] | None = None
        # Directed links that drop everything (scenario tests).
        self.cut: set[tuple[int, int]] = set()
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        # Optional hook to crash a node while it processes a Ready (after `messages` were sent,
        # before anything was persisted).
        self.crash_mid_ready: Callable[[int], bool] | None = None
        # Optional hook run between ready() and advance() (async driver model).
        self.interleave: Callable[[int], None] | None = None
        # Probability that the transport reports a dropped append as "unreachable".
        self.report_unreachable_rate = 0.0
        # Snapshot payloads by key: (applied index, payloads, conf state).
        self.snap_store: dict[bytes, tuple[int, tuple[bytes, ...], ConfState]] = {}
        # Global safety bookkeeping.
        self.leaders: dict[int, int] = {}
        self.ent_map: dict[tuple[int, int], tuple[EntryType, bytes]] = {}
        self.pred_map: dict[tuple[int, int], int] = {}
        self.applied_map: dict[int, tuple[int, EntryType, bytes]] = {}
        self.max_committed = 0
        self.checked_leaders: set[tuple[int, int]] = set()
        # Linearizability of reads: ctx -> committed index when the read was issued.
        self.reads_issued: dict[bytes, int] = {}
        self.reads_done: dict[bytes, int] = {}
        self.read_seq = 0
        self.sent: dict[MessageType, int] = {}

    # -- node lifecycle ----------------------------------------------------------------------

    def _config(self, id_: int) -> RaftConfig:
        rng: Callable[[int], int]
        if self.fixed_timeouts:
            off = self.timeout_offsets.get(id_, 0)

            def rng(n: int) -> int:
                return min(off, n - 1)
        else:
            rng = random.Random(self.rng.getrandbits(32)).randrange
        return RaftConfig(id=id_, rng=rng, **self.cfg)

    def restart(self, id_: int) -> None:
        """(Re)start ``id_`` from its durable storage only."""
        st = self.storage[id_]
        node = RawNode(self._config(id_), st)
        self.nodes[id_] = node
        sm = StateMachine()
        snap = st.snapshot()
        if not snap.is_empty():
            idx, payloads, cs = self.snap_store[snap.data]
            sm.applied_index, sm.payloads, sm.conf_state = idx, list(payloads), _copy_cs(cs)
        else:
            sm.conf_state = _copy_cs(st.initial_state()[1])
        self.sm[id_] = sm

    def crash(self, id_: int) -> None:
        self.nodes[id_] = None
        keep = []
        for m in self.net:
            if m.to == id_:
                self._dropped(m)
            elif m.from_ != id_ or self.rng.random() < 0.5:
                keep.append(m)  # some of a crashed node's messages are still on the wire
        self.net = keep

    def alive(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n is not None]

    def node(self, id_: int) -> RawNode:
        n = self.nodes[id_]
        assert n is not None, f"node {id_} is down"
        return n

    # -- network -------------------------------------------------------------------------------

    def connected(self, a: int, b: int) -> bool:
        if (a, b) in self.cut:
            return False
        p = self.partition
        return p is None or p.get(a, -1) == p.get(b, -2)

    def isolate(self, id_: int) -> None:
        for o in self.nodes:
            if o != id_:
                self.cut.add((id_, o))
                self.cut.add((o, id_))

    def heal(self) -> None:
        self.cut.clear()
        self.partition = None

    def _send(self, m: Message) -> None:
        if m.type == MT.SNAP:
            m = self._merged_snapshot(m)
        self.sent[m.type] = self.sent.get(m.type, 0) + 1
        if not self.connected(m.from_, m.to) or (
            self.drop_rate and self.rng.random() < self.drop_rate
        ):
            if self.log is not None:
                self.log(fmt_msg(m) + " (dropped)")
            self._dropped(m)
            return
        if self.log is not None:
            self.log(fmt_msg(m))
        self.net.append(m)

    def _merged_snapshot(self, m: Message) -> Message:
        """Send a snapshot of the sender's *current* applied state, as etcd's server does
        (createMergedSnapshotMessage): the stored snapshot's membership may predate the
        recipient, which would then refuse it."""
        sm = self.sm[m.from_]
        n = self.node(m.from_)
        assert m.snapshot is not None
        if sm.applied_index <= m.snapshot.metadata.index:
            return m
        key = b"snap-%d-%d" % (m.from_, sm.applied_index)
        self.snap_store[key] = (sm.applied_index, tuple(sm.payloads), _copy_cs(sm.conf_state))
        meta = SnapshotMetadata(
            conf_state=_copy_cs(sm.conf_state),
            index=sm.applied_index,
            term=n.raft.raft_log.term(sm.applied_index),
        )
        return replace(m, snapshot=Snapshot(data=key, metadata=meta))

    def _dropped(self, m: Message) -> None:
        if m.type == MT.APP and self.report_unreachable_rate:
            sender = self.nodes.get(m.from_)
            if sender is not None and self.rng.random() < self.report_unreachable_rate:
                sender.report_unreachable(m.to)
        if m.type == MT.SNAP:
            sender = self.nodes.get(m.from_)
            if sender is not None:
                sender.report_snapshot(m.to, failed=True)

    def deliver(self, m: Message) -> None:
        n = self.nodes.get(m.to)
        if n is None or not self.connected(m.from_, m.to):
            self._dropped(m)
            return
        n.step(m)
        if m.type == MT.SNAP:
            sender = self.nodes.get(m.from_)
            if sender is not None:
                sender.report_snapshot(m.to, failed=False)

    def deliver_where(self, pred: Callable[[Message], bool]) -> int:
        """Deliver the in-flight messages matching ``pred``; keep the others in flight."""
        keep: list[Message] = []
        todo: list[Message] = []
        for m in self.net:
            (todo if pred(m) else keep).append(m)
        self.net = keep
        for m in todo:
            self.deliver(m)
        return len(todo)

    def drop_where(self, pred: Callable[[Message], bool]) -> int:
        todo = [m for m in self.net if pred(m)]
        self.net = [m for m in self.net if not pred(m)]
        for m in todo:
            self._dropped(m)
        return len(todo)

    def deliver_all(self, filt: Callable[[Message], bool] | None = None) -> int:
        """Deliver every in-flight message (in order); ``filt`` False drops a message."""
        msgs, self.net = self.net, []
        for m in msgs:
            if filt is None or filt(m):
                self.deliver(m)
            else:
                self._dropped(m)
        return len(msgs)

    # -- driver --------------------------------------------------------------------------------

    def process_ready(self, id_: int) -> bool:
        """Drain every Ready of ``id_``.  Returns whether there was any."""
        n = self.nodes.get(id_)
        if n is None:
            return False
        did = False
        while n.has_ready():
            did = True
            rd = n.ready()
            if rd.soft_state is not None and rd.soft_state.raft_state == StateType.LEADER:
                self._check_leader(id_, n)
            for m in rd.messages:
                self._send(m)
            if self.crash_mid_ready is not None and self.crash_mid_ready(id_):
                self.crash(id_)
                return True
            if self.interleave is not None:
                # A driver may step messages (and tick) while it waits for the disk write;
                # their effects belong to the next Ready.
                self.interleave(id_)
            st = self.storage[id_]
            if rd.snapshot is not None:
                st.apply_snapshot(rd.snapshot)
            if rd.entries:
                self._check_new_entries(n, rd.entries)
                st.append(rd.entries)
            if rd.hard_state is not None:
                st.set_hard_state(rd.hard_state)
            for m in rd.msgs_after_append:
                self._send(m)
            sm = self.sm[id_]
            if rd.snapshot is not None:
                idx, payloads, cs = self.snap_store[rd.snapshot.data]
                assert idx == rd.snapshot.metadata.index
                self._check_snapshot_state(idx, payloads)
                sm.applied_index, sm.payloads, sm.conf_state = idx, list(payloads), _copy_cs(cs)
            for e in rd.committed_entries:
                self._apply(id_, n, sm, e)
            for rs in rd.read_states:
                issued = self.reads_issued.get(rs.request_ctx)
                if issued is not None:
                    if rs.index < issued:
                        raise SafetyViolation(
                            f"stale read on {id_}: read index {rs.index} < committed {issued} "
                            f"when the read was issued (ctx {rs.request_ctx!r})"
                        )
                    self.reads_done[rs.request_ctx] = rs.index
            n.advance(rd)
            n._check()
            st._check()
            c = n.raft.raft_log.committed
            if c > self.max_committed:
                self.max_committed = c
        return did

    def _apply(self, id_: int, n: RawNode, sm: StateMachine, e: Entry) -> None:
        if e.index != sm.applied_index + 1:
            raise SafetyViolation(f"node {id_} applies {e.index} after {sm.applied_index}")
        prev = self.applied_map.get(e.index)
        cur = (e.term, e.type, e.data)
        if prev is None:
            self.applied_map[e.index] = cur
        elif prev != cur:
            raise SafetyViolation(
                f"state machine safety: index {e.index}: {prev} vs {cur} on {id_}"
            )
        sm.applied_index = e.index
        if e.type == EntryType.CONF_CHANGE:
            cc = decode_conf_change(e.data)
            sm.conf_state = n.apply_conf_change(cc)
        elif e.data:
            sm.payloads.append(e.data)

    def _check_snapshot_state(self, idx: int, payloads: tuple[bytes, ...]) -> None:
        # Every index <= idx was applied one by one by some node before any snapshot held it.
        expect = []
        for i in range(1, idx + 1):
            _t, typ, data = self.applied_map[i]
            if typ == EntryType.NORMAL and data:
                expect.append(data)
        if list(payloads) != expect:
            raise SafetyViolation(f"snapshot at {idx} disagrees with the applied history")

    def _check_new_entries(self, n: RawNode, ents: list[Entry]) -> None:
        log = n.raft.raft_log
        prev_term = log.term_or_zero(ents[0].index - 1)
        for e in ents:
            key = (e.index, e.term)
            val = (e.type, e.data)
            old = self.ent_map.setdefault(key, val)
            if old != val:
                raise SafetyViolation(f"log matching: two entries at {key}: {old} vs {val}")
            if e.index > 1 and prev_term:
                p = self.pred_map.setdefault(key, prev_term)
                if p != prev_term:
                    raise SafetyViolation(
                        f"log matching: entry {key} follows term {p} and term {prev_term}"
                    )
            prev_term = e.term

    def _check_leader(self, id_: int, n: RawNode) -> None:
        term = n.term
        other = self.leaders.setdefault(term, id_)
        if other != id_:
            raise SafetyViolation(f"election safety: {other} and {id_} both lead term {term}")
        if (id_, term) in self.checked_leaders:
            return
        self.checked_leaders.add((id_, term))
        log = n.raft.raft_log
        first = log.first_index()
        for idx, (t, _typ, _data) in self.applied_map.items():
            if idx < first:
                continue
            if log.term_or_zero(idx) != t:
                raise SafetyViolation(
                    f"leader completeness: leader {id_} term {term} lacks committed entry "
                    f"{idx}/{t} (has term {log.term_or_zero(idx)})"
                )

    def check_invariants(self) -> None:
        for id_ in self.alive():
            n = self.node(id_)
            if n.state == StateType.LEADER:
                self._check_leader(id_, n)

    # -- convenience for scenarios ---------------------------------------------------------------

    def process_all(self) -> bool:
        did = False
        for id_ in list(self.nodes):
            did = self.process_ready(id_) or did
        return did

    def stabilize(self, max_rounds: int = 1000) -> None:
        """Process and deliver until nothing is left to do."""
        for _ in range(max_rounds):
            did = self.process_all()
            if self.deliver_all():
                did = True
            if not did:
                return
        raise AssertionError("cluster did not stabilize")

    def tick(self, id_: int, n: int = 1) -> None:
        for _ in range(n):
            self.node(id_).tick()

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for id_ in self.alive():
                self.node(id_).tick()
            self.stabilize()

    def campaign(self, id_: int) -> None:
        self.node(id_).campaign()
        self.stabilize()

    def propose(self, id_: int, data: bytes) -> bool:
        try:
            self.node(id_).propose(data)
        except ProposalDropped:
            return False
        return True

    def propose_conf_change(self, id_: int, cc: ConfChange | ConfChangeV2) -> bool:
        try:
            self.node(id_).propose_conf_change(cc)
        except ProposalDropped:
            return False
        return True

    def read_index(self, id_: int) -> bytes:
        self.read_seq += 1
        ctx = b"read-%d" % self.read_seq
        self.reads_issued[ctx] = self.max_committed_now()
        self.node(id_).read_index(ctx)
        return ctx

    def max_committed_now(self) -> int:
        m = self.max_committed
        for id_ in self.alive():
            m = max(m, self.node(id_).raft.raft_log.committed)
        self.max_committed = m
        return m

    def leader(self) -> int | None:
        """The live leader with the highest term, if any."""
        best: tuple[int, int] | None = None
        for id_ in self.alive():
            n = self.node(id_)
            if n.state == StateType.LEADER and (best is None or n.term > best[0]):
                best = (n.term, id_)
        return None if best is None else best[1]

    def compact(self, id_: int, index: int | None = None) -> None:
        """Snapshot ``id_``'s state machine at its applied index and compact its storage."""
        sm = self.sm[id_]
        st = self.storage[id_]
        idx = sm.applied_index if index is None else index
        assert idx == sm.applied_index, "the harness can only snapshot at the applied index"
        if idx <= st.snapshot().metadata.index or idx < st.first_index():
            return
        key = b"snap-%d-%d" % (id_, idx)
        self.snap_store[key] = (idx, tuple(sm.payloads), _copy_cs(sm.conf_state))
        st.create_snapshot(idx, _copy_cs(sm.conf_state), key)
        st.compact(idx)


def _copy_cs(cs: ConfState) -> ConfState:
    return ConfState(
        voters=list(cs.voters),
        learners=list(cs.learners),
        voters_outgoing=list(cs.voters_outgoing),
        learners_next=list(cs.learners_next),
        auto_leave=cs.auto_leave,
    )
