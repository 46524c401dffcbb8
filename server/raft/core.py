"""The Raft state machine (etcd-io/raft's ``raft.go``), free of I/O, clocks and randomness.

Theory of operation
===================

A :class:`Raft` instance is one member of a replication group.  It changes state only inside
:meth:`Raft.step` (a message from a peer or a local event such as ``HUP``/``BEAT``/``PROP``) and
:meth:`Raft.tick` (one unit of logical time).  Its outputs accumulate in memory and are drained by
:class:`~.rawnode.RawNode` as a ``Ready``: unstable entries and a snapshot to persist, the hard
state (term, vote, commit), committed entries to apply, outgoing messages and read states.

Roles and transitions (each role has its own ``step_*`` function, selected by ``become_*``)::

    follower --election timeout--> pre-candidate --quorum of pre-votes--> candidate
    candidate --quorum of votes--> leader          any role --higher term--> follower
    leader --check-quorum fails / removed from config--> follower

* Elections.  Timeouts are randomized in ``[election_tick, 2*election_tick)`` with the injected
  RNG.  With **pre-vote** a node first asks "would you vote for me at term+1?" without bumping
  its term, so a node rejoining from a partition cannot inflate terms and depose a healthy leader.
  With **check-quorum** a leader that has not heard from a quorum within an election timeout
  steps down, and a follower that heard from a leader within the last election timeout ignores
  (pre-)vote requests (its "lease"), unless the request comes from a leadership transfer.
  Becoming a pre-candidate forgets the current leader (etcd #8334) so pre-vote and check-quorum
  cannot deadlock.
* Replication.  The leader tracks a :class:`~.progress.Progress` per follower (probe /
  replicate / snapshot).  Appends are batched up to ``max_size_per_msg`` bytes and the number
  of unacknowledged appends per follower is bounded by ``max_inflight_msgs``.  A follower that
  rejects an append returns a hint ``(index, term)`` computed by ``find_conflict_by_term`` so the
  leader skips a whole term of mismatching entries per round trip.  A follower whose next entry
  was compacted away receives the latest snapshot.
* Divergence.  The leader's log holds every committed entry, so an append that contradicts a
  follower's committed entries (a different term at an index <= its commit index, or a reject
  hint that would fall below it) means the logs diverged, e.g. a wiped member bootstrapped a
  fresh log.  The follower raises AssertionError ("entry i (term t) conflicts with committed
  entry ...", etcd-io/raft's panic in ``maybeAppend``) instead of answering in a way that
  would let the leader count or overwrite entries it does not share; the driver stops.  A
  leader likewise refuses an acknowledgement beyond its own last entry.
* Commitment.  The leader advances the commit index to the quorum-acknowledged index only when
  that entry has the leader's current term (Raft Figure 8); a new leader therefore appends an
  empty entry on election.  The leader counts *itself* only for entries it has persisted: its
  own match index advances in :meth:`Raft.on_persisted` (called by ``RawNode.advance``), so a
  single-voter cluster commits an entry only after it has been written to stable storage.
* Persistence rule.  Messages that depend on unpersisted state (vote and append responses, and
  any message produced while the term or vote changed since the last Ready) are returned as
  ``Ready.msgs_after_append`` and must be sent only after the Ready's entries and hard state are
  durable.  Other messages (leader appends/heartbeats at an already persisted term, pre-votes,
  read-index traffic) may be sent immediately, in parallel with the disk write (thesis 10.2.1).
* Reads.  ReadIndex (``ReadOnlySafe``): the leader records its commit index and confirms
  leadership with a heartbeat round carrying the request context; a leader that has not yet
  committed an entry of its own term queues reads until it has.  A deposed leader drops all
  pending reads when it steps down, so they never produce a ReadState.
* Membership.  Conf changes are log entries; they take effect when the application *applies*
  them (:meth:`Raft.apply_conf_change`).  Only one may be pending: a leader refuses a new one
  while ``pending_conf_index > applied`` (a new leader sets ``pending_conf_index`` to its last
  index).  Nodes with committed-but-unapplied conf changes do not campaign.  Joint consensus
  (ConfChangeV2) and single-step changes are supported; a leader that removes itself steps
  down once the change is applied.
* Leadership transfer.  The leader catches the transferee up, then sends ``TIMEOUT_NOW`` so it
  campaigns at once (bypassing pre-vote and the leases of other followers).  Proposals are
  refused while a transfer is pending; the transfer is abandoned after an election timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from . import confchange
from .confchange_codec import decode_conf_change, encode_conf_change
from .config import RaftConfig, rng_callable
from .errors import CompactedError, ProposalDropped, SnapshotTemporarilyUnavailable
from .log import RaftLog
from .progress import Progress, ProgressState, ProgressTracker
from .quorum import VoteResult, joint_vote_result
from .read_only import ReadOnly
from .storage import Storage, entry_size
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

__all__ = ["CAMPAIGN_TRANSFER", "Raft"]

MT = MessageType

# Context of (pre-)vote requests caused by a leadership transfer: they override leases.
CAMPAIGN_TRANSFER = b"CampaignTransfer"

_LOCAL_TYPES = frozenset({MT.HUP, MT.BEAT, MT.UNREACHABLE, MT.SNAP_STATUS, MT.CHECK_QUORUM})


class Raft:
    """One Raft member.  Not thread-safe; driven by RawNode."""

    def __init__(self, c: RaftConfig, storage: Storage) -> None:
        c.validate()
        self.id = c.id
        self.logger = c.logger or logging.getLogger("coord.server.raft")
        self.rng: Callable[[int], int] = rng_callable(c.rng, c.id)
        self.raft_log = RaftLog(storage, c.max_committed_size_per_ready)
        hs, cs = storage.initial_state()
        # Current term (persisted).  Never decreases.
        self.term = 0
        # Candidate voted for in `term` (persisted), 0 if none.
        self.vote = 0
        self.max_msg_size = c.max_size_per_msg
        self.trk = ProgressTracker(c.max_inflight_msgs, c.max_inflight_bytes)
        self.state = StateType.FOLLOWER
        # Outgoing messages since the last Ready.
        self.msgs: list[Message] = []
        # Read states produced since the last Ready.
        self.read_states: list[ReadState] = []
        # Known leader of `term`, 0 if unknown.
        self.lead = 0
        # Target of a pending leadership transfer (leader only), 0 if none.
        self.lead_transferee = 0
        # Index of the last conf-change entry proposed by this leader (or last index at election);
        # a new conf change is refused while pending_conf_index > applied.
        self.pending_conf_index = 0
        # ReadIndex requests received before this leader committed an entry of its term.
        self.pending_read_index_messages: list[Message] = []
        self.read_only = ReadOnly()
        # Ticks since the last election timeout reset (leader: since last check-quorum round).
        self.election_elapsed = 0
        # Ticks since the last heartbeat broadcast (leader only).
        self.heartbeat_elapsed = 0
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.disable_proposal_forwarding = c.disable_proposal_forwarding
        self.step_down_on_removal = c.step_down_on_removal
        self.heartbeat_timeout = c.heartbeat_tick
        self.election_timeout = c.election_tick
        # In [election_timeout, 2*election_timeout); redrawn whenever the role is reset.
        self.randomized_election_timeout = c.election_tick
        self.step_func: Callable[[Message], None] = self.step_follower
        self.tick_func: Callable[[], None] = self.tick_election

        self.trk = confchange.restore(self.trk, cs, self.raft_log.last_index())
        if hs != HardState():
            self._load_state(hs)
        if c.applied > 0:
            self.raft_log.applied_to(c.applied)
        self.become_follower(self.term, 0)

    # -- state accessors -------------------------------------------------------------------------

    def soft_state(self) -> SoftState:
        """Volatile state the driver reports when it changes: the known leader and this node's
        role.
        """
        return SoftState(lead=self.lead, raft_state=self.state)

    def hard_state(self) -> HardState:
        """State that must be persisted before messages that depend on it are sent: term, vote,
        commit.
        """
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def _load_state(self, hs: HardState) -> None:
        if not (self.raft_log.committed <= hs.commit <= self.raft_log.last_index()):
            raise AssertionError(
                f"hs.commit {hs.commit} out of range [{self.raft_log.committed}, "
                f"{self.raft_log.last_index()}]"
            )
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    def promotable(self) -> bool:
        """Can this node campaign: a voter in its config, and no snapshot pending?"""
        pr = self.trk.progress.get(self.id)
        return pr is not None and not pr.is_learner and not self.raft_log.has_pending_snapshot()

    def persisted_index(self) -> int:
        """Last index of the log known durable and consistent with the in-memory log."""
        u = self.raft_log.unstable
        if u.snapshot is not None:
            return 0
        if u.entries:
            return u.offset - 1
        return self.raft_log.last_index()

    # -- sending -----------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        """Queue ``m`` for the driver (``Ready.messages``), stamping sender and term.

        Vote messages carry their own term; proposals and read-index requests forwarded to the
        leader are local and keep term 0; every other message gets the current term.
        """
        if m.from_ == 0:
            # Forwarded messages keep their origin (a transferee, a read requester).
            m.from_ = self.id
        if m.type in (MT.VOTE, MT.VOTE_RESP, MT.PRE_VOTE, MT.PRE_VOTE_RESP):
            if m.term == 0:
                raise AssertionError(f"term should be set when sending {m.type.name}")
        else:
            if m.term != 0:
                raise AssertionError(f"term should not be set when sending {m.type.name}")
            # Proposals and read-index requests forwarded to the leader are local: term 0.
            if m.type not in (MT.PROP, MT.READ_INDEX):
                m.term = self.term
        self.msgs.append(m)

    def send_append(self, to: int) -> None:
        """Send ``to`` an append (an empty one if nothing is new), or a snapshot if its entries are
        compacted.
        """
        self.maybe_send_append(to, send_if_empty=True)

    def maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send entries from ``pr.next`` to ``to`` unless paused; snapshot if compacted."""
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        try:
            prev_term = self.raft_log.term(prev_index)
            ents = self.raft_log.entries(pr.next, self.max_msg_size)
        except CompactedError:
            return self._maybe_send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        self.send(
            Message(
                MT.APP,
                to=to,
                index=prev_index,
                log_term=prev_term,
                entries=ents,
                commit=self.raft_log.committed,
            )
        )
        if ents:
            pr.sent_entries(len(ents), sum(entry_size(e) for e in ents), ents[-1].index)
        else:
            pr.sent_entries(0, 0, prev_index)
        return True

    def _maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        try:
            snap = self.raft_log.snapshot()
        except SnapshotTemporarilyUnavailable:
            return False
        if snap.is_empty():
            raise AssertionError("need non-empty snapshot")
        pr.become_snapshot(snap.metadata.index)
        self.send(Message(MT.SNAP, to=to, snapshot=snap))
        return True

    def send_heartbeat(self, to: int, ctx: bytes) -> None:
        """Send ``to`` a heartbeat carrying read-index context ``ctx``, committing no further than
        its match.
        """
        # Never tell a follower to commit past what it is known to have (it may not have it).
        commit = min(self.trk.progress[to].match, self.raft_log.committed)
        self.send(Message(MT.HEARTBEAT, to=to, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        """Leader: :meth:`send_append` to every other member."""
        for id_ in self.trk.progress:
            if id_ != self.id:
                self.send_append(id_)

    def bcast_heartbeat(self) -> None:
        """Leader: a heartbeat to every other member, carrying the newest pending ReadIndex
        context.
        """
        self.bcast_heartbeat_with_ctx(self.read_only.last_pending_request_ctx())

    def bcast_heartbeat_with_ctx(self, ctx: bytes) -> None:
        """Leader: a heartbeat with context ``ctx`` to every other member."""
        for id_ in self.trk.progress:
            if id_ != self.id:
                self.send_heartbeat(id_, ctx)

    # -- commit ------------------------------------------------------------------------------

    def maybe_commit(self) -> bool:
        """Leader: advance the commit index to what a quorum has matched; True if it moved.

        Only an entry of the current term is committed by counting (Raft paper §5.4.2).
        """
        return self.raft_log.maybe_commit(self.trk.committed(), self.term)

    def committed_entry_in_current_term(self) -> bool:
        """Has this leader committed an entry of its own term (needed before serving ReadIndex)?"""
        return self.raft_log.term_or_zero(self.raft_log.committed) == self.term

    def on_persisted(self) -> None:
        """The driver persisted everything up to ``persisted_index()`` (called by advance).

        A leader counts its own acknowledgement only now; this may commit entries.
        """
        if self.state != StateType.LEADER:
            return
        pr = self.trk.progress.get(self.id)
        if pr is None:
            return
        if pr.maybe_update(self.persisted_index()) and self.maybe_commit():
            self._release_pending_read_index_messages()
            self.bcast_append()

    def on_applied(self, applied: int) -> None:
        """The application applied up to ``applied``; leave an auto-leave joint config."""
        if (
            self.trk.auto_leave
            and applied >= self.pending_conf_index
            and (self.state == StateType.LEADER)
        ):
            data = encode_conf_change(ConfChangeV2())
            try:
                self.step(
                    Message(
                        MT.PROP,
                        from_=self.id,
                        entries=[Entry(type=EntryType.CONF_CHANGE, data=data)],
                    )
                )
            except ProposalDropped:
                pass

    # -- role changes -------------------------------------------------------------------------

    def reset(self, term: int) -> None:
        """Start ``term`` (forgetting the vote if the term changed): clear the leader, timers,
        votes, pending read-index state and leader transfer, and give every member a fresh Progress.
        """
        if self.term != term:
            self.term = term
            self.vote = 0
        self.lead = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.trk.reset_votes()
        last = self.raft_log.last_index()
        for id_, pr in self.trk.progress.items():
            npr = Progress(last + 1, self.trk.max_inflight, self.trk.max_inflight_bytes)
            npr.is_learner = pr.is_learner
            if id_ == self.id:
                npr.match = self.persisted_index()
                npr.recent_active = True
            self.trk.progress[id_] = npr
        self.pending_conf_index = 0
        self.pending_read_index_messages = []
        self.read_only = ReadOnly()

    def reset_randomized_election_timeout(self) -> None:
        """Pick a new election timeout in [election_timeout, 2 * election_timeout) from the
        injected RNG.
        """
        self.randomized_election_timeout = self.election_timeout + self.rng(self.election_timeout)

    def abort_leader_transfer(self) -> None:
        """Forget any leader transfer in progress."""
        self.lead_transferee = 0

    def become_follower(self, term: int, lead: int) -> None:
        """Become a follower in ``term`` with leader ``lead`` (0 if unknown)."""
        self.step_func = self.step_follower
        self.reset(term)
        self.tick_func = self.tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER

    def become_candidate(self) -> None:
        """Become a candidate: increment the term and vote for self. Never from leader."""
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self.step_func = self.step_candidate
        self.reset(self.term + 1)
        self.tick_func = self.tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE

    def become_pre_candidate(self) -> None:
        """Become a pre-candidate: ask for pre-votes without changing term or vote. Never from
        leader.
        """
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # Neither the term nor the vote changes; forget the leader (etcd #8334).
        self.step_func = self.step_candidate
        self.trk.reset_votes()
        self.tick_func = self.tick_election
        self.lead = 0
        self.state = StateType.PRE_CANDIDATE

    def become_leader(self) -> None:
        """Become leader of the current term and append an empty entry of this term (its commit
        proves leadership and commits everything inherited). Never from follower.
        """
        if self.state == StateType.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self.step_func = self.step_leader
        self.reset(self.term)
        self.tick_func = self.tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        pr = self.trk.progress[self.id]
        pr.become_replicate()
        pr.next = max(pr.next, self.raft_log.last_index() + 1)
        # No conf change until everything this leader inherited is committed and applied.
        self.pending_conf_index = self.raft_log.last_index()
        self.append_entry([Entry()])

    def append_entry(self, es: list[Entry]) -> None:
        """Leader: append ``es`` to the log with this term and the next indexes (unstable until
        persisted).
        """
        li = self.raft_log.last_index()
        ents = [
            Entry(term=self.term, index=li + 1 + i, type=e.type, data=e.data)
            for i, e in enumerate(es)
        ]
        self.raft_log.append(ents)
        # The leader's own ack comes from on_persisted(), after the driver persisted them.

    # -- ticks -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (election or heartbeat timer, by role)."""
        self.tick_func()

    def tick_election(self) -> None:
        """Follower/candidate tick: campaign (MsgHup) once the randomized timeout passed."""
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(MT.HUP, from_=self.id))

    def tick_heartbeat(self) -> None:
        """Leader tick: heartbeats every heartbeat_timeout, and a quorum check and leader-transfer
        timeout every election_timeout.
        """
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, from_=self.id))
            if self.state == StateType.LEADER and self.lead_transferee != 0:
                self.abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, from_=self.id))

    # -- elections -----------------------------------------------------------------------------

    def has_unapplied_conf_changes(self) -> bool:
        """Is a configuration change committed but not yet applied? Campaigning then is unsafe."""
        log = self.raft_log
        if log.applied >= log.committed:
            return False
        lo = max(log.applied + 1, log.first_index())
        try:
            ents = log.slice(lo, log.committed + 1, None)
        except CompactedError:
            return True
        return any(e.type == EntryType.CONF_CHANGE for e in ents)

    def hup(self, transfer: bool) -> None:
        """Start an election (a pre-vote first if enabled, unless ``transfer``), if this node may
        campaign.
        """
        if self.state == StateType.LEADER:
            return
        if not self.promotable():
            return
        if self.has_unapplied_conf_changes():
            return
        if self.pre_vote and not transfer:
            self.campaign(pre_election=True, transfer=False)
        else:
            self.campaign(pre_election=False, transfer=transfer)

    def campaign(self, pre_election: bool, transfer: bool) -> None:
        """Become (pre-)candidate and request votes from every voter; win at once if the only
        voter.
        """
        if not self.promotable():
            return
        if pre_election:
            self.become_pre_candidate()
            vote_msg = MT.PRE_VOTE
            term = self.term + 1
        else:
            self.become_candidate()
            vote_msg = MT.VOTE
            term = self.term
        if self.poll(self.id, True) == VoteResult.WON:
            # Single voter: won immediately.
            if pre_election:
                self.campaign(pre_election=False, transfer=transfer)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        last = self.raft_log.last_index()
        last_term = self.raft_log.last_term()
        for id_ in sorted(self.trk.voter_ids()):
            if id_ == self.id:
                continue
            self.send(
                Message(vote_msg, to=id_, term=term, index=last, log_term=last_term, context=ctx)
            )

    def poll(self, id_: int, granted: bool) -> VoteResult:
        """Record ``id_``'s vote and return the election's result so far."""
        self.trk.record_vote(id_, granted)
        return self.trk.tally_votes()[2]

    # -- step ----------------------------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Handle one message.

        Raises:
            ProposalDropped: a PROP message could not be appended or forwarded.
        """
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.lead != 0
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # We heard from a leader within the minimum election timeout: ignore.
                    return
            if m.type == MT.PRE_VOTE:
                pass  # never change our term in response to a pre-vote
            elif m.type == MT.PRE_VOTE_RESP and not m.reject:
                pass  # a granted pre-vote carries the future term; we'll bump it if we win
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, 0)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A stale leader (e.g. rejoining after a partition) learns our term and steps
                # down; without this it could keep its followers' leases alive forever.
                self.send(Message(MT.APP_RESP, to=m.from_))
            elif m.type == MT.PRE_VOTE:
                self.send(Message(MT.PRE_VOTE_RESP, to=m.from_, term=self.term, reject=True))
            return  # ignore any other stale message

        t = m.type
        if t == MT.HUP:
            self.hup(transfer=False)
        elif t in (MT.VOTE, MT.PRE_VOTE):
            can_vote = (
                self.vote == m.from_
                or (self.vote == 0 and self.lead == 0)
                or (t == MT.PRE_VOTE and m.term > self.term)
            )
            resp = MT.VOTE_RESP if t == MT.VOTE else MT.PRE_VOTE_RESP
            if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
                # Granting uses the request's term (a pre-vote is for a future term).
                self.send(Message(resp, to=m.from_, term=m.term))
                if t == MT.VOTE:
                    # Only a real vote resets the election timer (hashicorp/raft#609).
                    self.election_elapsed = 0
                    self.vote = m.from_
            else:
                self.send(Message(resp, to=m.from_, term=self.term, reject=True))
        else:
            self.step_func(m)

    def step_leader(self, m: Message) -> None:
        """Handle a message as leader: proposals, replication responses, heartbeats, ReadIndex,
        transfer.
        """
        t = m.type
        if t == MT.BEAT:
            self.bcast_heartbeat()
            return
        if t == MT.CHECK_QUORUM:
            me = self.trk.progress.get(self.id)
            if me is not None:
                me.recent_active = True
            if not self.trk.quorum_active():
                self.become_follower(self.term, 0)
            for id_, other in self.trk.progress.items():
                if id_ != self.id:
                    other.recent_active = False
            return
        if t == MT.PROP:
            self._leader_propose(m)
            return
        if t == MT.READ_INDEX:
            if not self.committed_entry_in_current_term():
                self.pending_read_index_messages.append(m)
                return
            self._send_read_index_response(m)
            return

        pr = self.trk.progress.get(m.from_)
        if pr is None:
            return
        if t == MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif t == MT.HEARTBEAT_RESP:
            self._handle_heartbeat_response(m, pr)
        elif t == MT.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for an append response or heartbeat response before probing again.
            pr.msg_app_flow_paused = True
        elif t == MT.UNREACHABLE:
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
        elif t == MT.TRANSFER_LEADER:
            self._handle_transfer_leader(m, pr)

    def _leader_propose(self, m: Message) -> None:
        if not m.entries:
            raise AssertionError("stepped empty MsgProp")
        if self.id not in self.trk.progress:
            raise ProposalDropped("this node was removed from the configuration")
        if self.lead_transferee != 0:
            raise ProposalDropped(f"leadership transfer to {self.lead_transferee} in progress")
        ents = list(m.entries)
        for i, e in enumerate(ents):
            if e.type != EntryType.CONF_CHANGE:
                continue
            cc = confchange.as_v2(decode_conf_change(e.data))
            already_pending = self.pending_conf_index > self.raft_log.applied
            already_joint = bool(self.trk.voters[1])
            wants_leave = confchange.leaves_joint(cc)
            if already_pending:
                raise ProposalDropped(
                    f"conf change pending at {self.pending_conf_index} "
                    f"(applied {self.raft_log.applied})"
                )
            if already_joint and not wants_leave:
                raise ProposalDropped("must leave the joint config first")
            if not already_joint and wants_leave:
                raise ProposalDropped("not in a joint config")
            self.pending_conf_index = self.raft_log.last_index() + i + 1
        self.append_entry(ents)
        self.bcast_append()

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                # Skip every entry of ours whose term exceeds the follower's term at the hint.
                next_probe, _ = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self.send_append(m.from_)
            return
        if m.index > self.raft_log.last_index():
            # A follower acks what we sent it or its own commit index: beyond our last entry,
            # it holds committed entries that we (the leader) lack.
            raise AssertionError(
                f"member {m.from_:x} acknowledged entry {m.index} beyond this leader's last "
                f"entry {self.raft_log.last_index()}: it holds committed entries this leader "
                f"lacks (the logs diverged)"
            )
        old_paused = pr.is_paused()
        if not (
            pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE)
        ):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self.raft_log.first_index():
            # The follower caught up (through the snapshot or otherwise): resume appends.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self.maybe_commit():
            self._release_pending_read_index_messages()
            self.bcast_append()
        elif old_paused:
            self.send_append(m.from_)
        # Fill the in-flight window with as many batches as allowed.
        while self.maybe_send_append(m.from_, send_if_empty=False):
            pass
        if m.from_ == self.lead_transferee and pr.match == self.raft_log.last_index():
            self.send(Message(MT.TIMEOUT_NOW, to=m.from_))

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.msg_app_flow_paused = False
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        if pr.match < self.raft_log.last_index():
            self.send_append(m.from_)
        if not m.context:
            return
        acks = self.read_only.recv_ack(m.from_, m.context)
        if acks is None or joint_vote_result(self.trk.voters, acks) != VoteResult.WON:
            return
        for rs in self.read_only.advance(m.context):
            self._respond_read_index(rs.req, rs.index)

    def _handle_transfer_leader(self, m: Message, pr: Progress) -> None:
        if pr.is_learner:
            return
        transferee = m.from_
        if self.lead_transferee != 0:
            if self.lead_transferee == transferee:
                return
            self.abort_leader_transfer()
        if transferee == self.id:
            return
        # The transfer must finish within one election timeout.
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.raft_log.last_index():
            self.send(Message(MT.TIMEOUT_NOW, to=transferee))
        else:
            self.send_append(transferee)

    def _send_read_index_response(self, m: Message) -> None:
        if self.trk.is_singleton():
            self._respond_read_index(m, self.raft_log.committed)
            return
        self.read_only.add_request(self.raft_log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        self.bcast_heartbeat_with_ctx(m.context)

    def _respond_read_index(self, req: Message, index: int) -> None:
        if req.from_ in (0, self.id):
            self.read_states.append(ReadState(index=index, request_ctx=req.context))
        else:
            self.send(Message(MT.READ_INDEX_RESP, to=req.from_, index=index, context=req.context))

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages or not self.committed_entry_in_current_term():
            return
        msgs, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in msgs:
            self._send_read_index_response(m)

    def step_candidate(self, m: Message) -> None:
        """Step function of both CANDIDATE and PRE_CANDIDATE."""
        my_resp = MT.PRE_VOTE_RESP if self.state == StateType.PRE_CANDIDATE else MT.VOTE_RESP
        t = m.type
        if t == MT.PROP:
            raise ProposalDropped("no leader (campaigning)")
        if t == MT.APP:
            self.become_follower(m.term, m.from_)
            self._handle_append_entries(m)
        elif t == MT.HEARTBEAT:
            self.become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif t == my_resp:
            res = self.poll(m.from_, not m.reject)
            if res == VoteResult.WON:
                if self.state == StateType.PRE_CANDIDATE:
                    self.campaign(pre_election=False, transfer=False)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif res == VoteResult.LOST:
                # A rejected pre-vote with a higher term already made us a follower in step().
                self.become_follower(self.term, 0)
        # TIMEOUT_NOW, READ_INDEX, ...: ignored while campaigning.

    def step_follower(self, m: Message) -> None:
        """Handle a message as follower: forward proposals and ReadIndex, accept appends,
        heartbeats and snapshots from the leader, and TimeoutNow.
        """
        t = m.type
        if t == MT.PROP:
            if self.lead == 0:
                raise ProposalDropped("no leader")
            if self.disable_proposal_forwarding:
                raise ProposalDropped("not the leader and proposal forwarding is disabled")
            self.send(replace(m, to=self.lead, term=0, entries=list(m.entries)))
        elif t == MT.APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append_entries(m)
        elif t == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif t == MT.TRANSFER_LEADER:
            if self.lead != 0:
                self.send(replace(m, to=self.lead, term=0))
        elif t == MT.TIMEOUT_NOW:
            # Leadership transfer: campaign now, skipping pre-vote and overriding leases.
            self.hup(transfer=True)
        elif t == MT.READ_INDEX:
            if self.lead != 0:
                self.send(replace(m, to=self.lead, term=0))
        elif t == MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(index=m.index, request_ctx=m.context))

    # -- follower handlers -----------------------------------------------------------------------

    def _handle_append_entries(self, m: Message) -> None:
        log = self.raft_log
        if m.index < log.committed:
            # etcd-io/raft answers with its commit index.  That claims our log matches the
            # leader's up to there, so first make sure the entries it sent agree with ours.
            log.check_committed_agree(m.index, m.log_term, m.entries)
            self.send(Message(MT.APP_RESP, to=m.from_, index=log.committed))
            return
        mlast = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if mlast is not None:
            self.send(Message(MT.APP_RESP, to=m.from_, index=mlast))
            return
        # Reject with a hint: the largest index <= m.index whose term is <= m.log_term.  The
        # leader can then skip every entry in between (fast backtracking).
        hint_index = min(m.index, log.last_index())
        hint_index, hint_term = log.find_conflict_by_term(hint_index, m.log_term)
        if m.index <= log.committed or hint_index < log.committed:
            # A mismatch at our commit index, or a leader's term at m.index (>= committed) lower
            # than our committed entry's: the logs diverged at a committed entry.  A hint below
            # the commit index would make the leader overwrite committed entries.
            raise log.divergence(m.index, m.log_term, min(m.index, log.committed))
        self.send(
            Message(
                MT.APP_RESP,
                to=m.from_,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.raft_log.commit_to(m.commit)
        self.send(Message(MT.HEARTBEAT_RESP, to=m.from_, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None
        if self.restore(m.snapshot):
            self.send(Message(MT.APP_RESP, to=m.from_, index=self.raft_log.last_index()))
        else:
            self.send(Message(MT.APP_RESP, to=m.from_, index=self.raft_log.committed))

    def restore(self, s: Snapshot) -> bool:
        """Install snapshot ``s`` if it is newer than our commit index; returns whether it was."""
        meta = s.metadata
        if meta.index <= self.raft_log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            # Defensive (etcd does the same): only a follower restores a snapshot.
            self.become_follower(self.term + 1, 0)
            return False
        cs = meta.conf_state
        if self.id not in (*cs.voters, *cs.learners, *cs.voters_outgoing):
            # The driver must send a snapshot of its current configuration (see rawnode.py);
            # etcd-io/raft's restore() warns the same way ("should never happen").
            self.logger.warning(
                "%x refused snapshot %d: not in its configuration %s", self.id, meta.index, cs
            )
            return False
        if self.raft_log.match_term(meta.index, meta.term):
            # We already have the snapshot's last entry: just fast-forward the commit index.
            self.raft_log.commit_to(meta.index)
            return False
        self.raft_log.restore(s)
        self.trk = confchange.restore(self.trk, cs, self.raft_log.last_index())
        return True

    # -- membership ------------------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange | ConfChangeV2) -> ConfState:
        """Apply a committed conf change to the configuration; returns the new ConfState.

        Raises:
            confchange.ConfChangeError: the change is invalid for the current configuration.
        """
        cc2 = confchange.as_v2(cc)
        chg = confchange.Changer(self.trk, self.raft_log.last_index())
        if confchange.leaves_joint(cc2):
            nt = chg.leave_joint()
        else:
            joint, auto_leave = confchange.enters_joint(cc2)
            nt = chg.enter_joint(auto_leave, cc2.changes) if joint else chg.simple(cc2.changes)
        return self._switch_to_config(nt)

    def _switch_to_config(self, nt: ProgressTracker) -> ConfState:
        nt.votes = self.trk.votes
        self.trk = nt
        cs = nt.conf_state()
        pr = nt.progress.get(self.id)
        if self.state == StateType.LEADER and (pr is None or pr.is_learner):
            # This leader was removed or demoted.
            if self.step_down_on_removal:
                self.become_follower(self.term, 0)
            return cs
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        if self.maybe_commit():
            self._release_pending_read_index_messages()
            self.bcast_append()
        else:
            for id_ in list(nt.progress):
                if id_ != self.id:
                    self.maybe_send_append(id_, send_if_empty=False)
        if self.lead_transferee != 0 and not nt.is_voter(self.lead_transferee):
            self.abort_leader_transfer()
        return cs

    # -- invariants ------------------------------------------------------------------------------

    def _check(self) -> None:
        self.raft_log._check()
        self.trk._check()
        self.read_only._check()
        assert self.term >= 0
        if self.state == StateType.LEADER:
            assert self.lead == self.id
            assert self.vote == self.id, (self.vote, self.id)
        if self.state == StateType.CANDIDATE:
            assert self.vote == self.id
        if self.lead_transferee != 0:
            assert self.state == StateType.LEADER
        assert self.election_timeout <= self.randomized_election_timeout < 2 * self.election_timeout
