"""Driver: the node's lifetime, the ticker and the Ready loop (plus publishing and removal).

Theory of operation: :meth:`Driver.run` drives the Raft core against disk, network and the
state machine from one anyio task group; the caller owns its lifetime
(``await task_group.start(node.run)`` returns once the peer port serves; cancelling stops the
node, and pending proposals fail with ServerStoppedError):

* **ticker** -- calls ``rawnode.tick()`` every ``--heartbeat-interval`` ms; the election timeout
  is ``--election-timeout / --heartbeat-interval`` ticks.
* **ready loop** -- for every Ready, in the RawNode contract's order: send ``messages`` (a
  MsgSnap leaves with a snapshot of the current applied state: :mod:`.snapshots`); write
  entries + hard state (+ received snapshot) to the WAL with one write and, when ``must_sync``,
  one fsync, in a worker thread (group commit: proposals arriving meanwhile form the next
  Ready); only then send ``msgs_after_append`` (votes, append acks); apply the snapshot and the
  committed entries; hand out read states; ``advance``; maybe snapshot + compact.
* **read loop** -- the ReadIndex batcher (:mod:`.readindex`).
* **publisher** -- proposes this member's name and client URLs until they are applied (etcd's
  ``publish``), so MemberList shows them on every member; :meth:`Driver.wait_published`
  returns after that (the server opens its client listeners only then, as etcd serves clients
  only after ReadyNotify).

A member that is the only voter campaigns immediately.  Failpoints
(:mod:`coord.server.failpoints`) mark the persistence and apply boundaries of the Ready loop;
disarmed they cost one dict test.

A member that applies its own removal stops (after a short grace so the commit reaches the
others): it calls ``on_removed`` (default: SIGTERM to its own process, which shuts the
server down cleanly).  If a driver task ever fails unexpectedly, or Raft refuses a peer's
message with an AssertionError (an invariant broke, e.g. this member's log diverged from a
committed entry: "entry i (term t) conflicts with committed entry ..."), the node stops
loudly: it logs the reason at CRITICAL, cancels its driver tasks, calls ``on_fatal`` (same
default) and :meth:`Driver.run` raises :class:`FatalError` (an OSError: the server exits 1
with "cannot serve: ...").  A member without a working Raft loop must not keep serving.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from coord.errors import CoordError, ServerStoppedError
from coord.server import failpoints
from coord.server.command import Kind
from coord.server.membership import Attributes, decode_attributes, encode_attributes
from coord.server.raft.rawnode import Ready
from coord.server.raft.types import Entry, EntryType, Message, MessageType, StateType

from .proposals import ENVELOPE, TAG_ATTRIBUTES, TAG_COMMAND
from .state import FatalError, NodeState

__all__ = ["Driver"]

log = logging.getLogger("coord.server.node")

#: An apply slower than this is a WARNING and counts in etcd_server_slow_apply_total (etcd's
#: warnApplyDuration).
WARN_APPLY_DURATION = 0.1

_VOTE_TYPES = frozenset(
    {MessageType.VOTE, MessageType.VOTE_RESP, MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP}
)


class Driver(NodeState):
    """The node's tasks and lifetime (see the module docstring)."""

    _scope: anyio.CancelScope | None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the transport and the driver tasks until cancelled; started once the peer port
        serves. Closes the storage and releases the data directory when it ends; raises
        FatalError when the member stopped because its Raft state cannot go on."""
        started = False
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
                self._maybe_campaign()
                self._wake.set()
                started = True
                task_status.started()
        except Exception as e:
            if not started:
                raise
            self._fail(f"raft node failed: {e!r}", e)
        finally:
            was_leader = self._is_leader
            self._shutdown_waiters()
            self.storage.close()
            self._dir_lock.release()
            if was_leader:
                self._set_leader(False)
            if self._fatal is not None:
                # also when the caller cancelled us meanwhile (on_fatal stops the server)
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
        for waiter in self._pending.values():
            waiter.set_exception(ServerStoppedError())
        self._pending.clear()
        for w in self._read_waiters:
            w.set_exception(ServerStoppedError())
        for _i, w in self._applied_waiters:
            w.set_exception(ServerStoppedError())

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
            if rd.soft_state.lead and rd.soft_state.lead != self._lead:
                self.stats.leader_changes += 1  # as etcd counts: a new leader that is known
                self._append_clock.clear()
            self._lead = rd.soft_state.lead
            self._set_leader(rd.soft_state.raft_state == StateType.LEADER)
        if rd.messages:
            self._send(rd.messages)
        snap = rd.snapshot if rd.snapshot is not None and not rd.snapshot.is_empty() else None
        if rd.entries or snap is not None or rd.hard_state is not None:
            if rd.must_sync or snap is not None:
                await anyio.to_thread.run_sync(
                    self.storage.write, rd.hard_state, rd.entries, snap, True
                )
            else:
                self.storage.write(rd.hard_state, rd.entries, None, False)
            self.storage.commit(rd.hard_state, rd.entries, snap)
            if rd.entries and self._is_leader:
                self._append_clock.appended(rd.entries[-1].index, time.monotonic())
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
            start = time.monotonic()
            self._apply_entries(rd.committed_entries)
            self.stats.apply.observe(time.monotonic() - start)
        for rs in rd.read_states:
            state = self._read_states.pop(rs.request_ctx, None)
            if state is not None:
                state.set_result(rs.index)
        self.rawnode.advance(rd)
        if rd.committed_entries:
            self._maybe_campaign()  # after advance: Raft refuses to campaign with unapplied confs
        self._release_applied_waiters()
        if self._applied - self._snap_index >= self.snapshot_count:
            start = time.monotonic()
            await self._snapshot()
            self.stats.snapshot.observe(time.monotonic() - start)

    def _log_soft_state(self, lead: int, state: StateType) -> None:
        """Raft role and leader changes: etcd's raft.node lines (leader changes at INFO)."""
        term = self.rawnode.term
        if state != self._raft_state:
            self._raft_state = state
            what = state.name.lower().replace("_", "-")
            if state in (StateType.CANDIDATE, StateType.PRE_CANDIDATE):
                log.debug(
                    "member %x started a campaign: became %s at term %d", self.member_id, what, term
                )
            else:
                log.debug("member %x became %s at term %d", self.member_id, what, term)
        if lead != self._lead:
            if lead and self._lead:
                log.info(
                    "member %x changed leader from %x to %x at term %d",
                    self.member_id,
                    self._lead,
                    lead,
                    term,
                )
            elif lead:
                log.info("member %x elected leader %x at term %d", self.member_id, lead, term)
            else:
                log.info("member %x lost leader %x at term %d", self.member_id, self._lead, term)

    def _log_votes(self, msgs: list[Message], sent: bool) -> None:
        """Vote requests and answers (DEBUG), sent or received."""
        for m in msgs:
            if m.type not in _VOTE_TYPES:
                continue
            kind = m.type.name.lower().replace("_", "-")
            if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
                log.debug(
                    "member %x %s %s request %s %x at term %d (log term %d, index %d)",
                    self.member_id,
                    "sent" if sent else "received",
                    kind,
                    "to" if sent else "from",
                    m.to if sent else m.from_,
                    m.term,
                    m.log_term,
                    m.index,
                )
            elif sent:
                log.debug(
                    "member %x %s %x's %s at term %d",
                    self.member_id,
                    "rejected" if m.reject else "granted",
                    m.to,
                    kind.removesuffix("-resp"),
                    m.term,
                )
            else:
                log.debug(
                    "member %x received %s from %x at term %d: %s",
                    self.member_id,
                    kind,
                    m.from_,
                    m.term,
                    "rejected" if m.reject else "granted",
                )

    def _apply_entries(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.index <= self._applied:
                continue
            if e.type == EntryType.CONF_CHANGE:
                self._apply_conf_change(e)
            elif e.data:
                tag, proposer, seq = ENVELOPE.unpack_from(e.data)
                payload = e.data[ENVELOPE.size :]
                result: Any
                if tag == TAG_COMMAND:
                    start = time.monotonic()
                    if failpoints.ACTIVE:
                        failpoints.hit("applyBeforeCommand")  # blocks the loop: a slow apply
                    result = self.sm.apply(e.index, payload)
                    took = time.monotonic() - start
                    if took > WARN_APPLY_DURATION:
                        self._slow_apply(e.index, payload, took)
                else:
                    result = b""
                    if tag == TAG_ATTRIBUTES:
                        self.membership.apply_attributes(decode_attributes(payload))
                if proposer == self.member_id:
                    self._resolve(seq, result)
            self._applied = e.index
            self._applied_term = e.term

    def _slow_apply(self, index: int, command: bytes, took: float) -> None:
        """etcd's "apply request took too long" warning and etcd_server_slow_apply_total."""
        self.stats.slow_applies += 1
        try:
            kind = Kind(command[0]).name
        except (IndexError, ValueError):
            kind = "unknown"
        log.warning(
            "apply request took too long: took %.0fms, expected-duration %.0fms "
            "(index %d, %s, %d bytes)",
            took * 1000,
            WARN_APPLY_DURATION * 1000,
            index,
            kind,
            len(command),
        )

    async def _stop_removed(self) -> None:
        self._removed = False
        if self._removed_notified:
            return
        self._removed_notified = True
        # Give the leader's commit (and our last messages) time to reach the others.
        await anyio.sleep(2 * self.tick_interval * self.election_ticks / 2)
        self.on_removed()

    async def _publish(self) -> None:
        attrs = Attributes(
            self.member_id, self.config.name, list(self.config.advertise_client_urls)
        )
        payload = encode_attributes(attrs)
        while True:
            cur = self.membership.members.get(self.member_id)
            if cur is not None and cur.name == attrs.name and cur.client_urls == attrs.client_urls:
                log.info(
                    "published this member's attributes (name %r, client URLs %s)",
                    attrs.name,
                    ",".join(attrs.client_urls),
                )
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
