"""Read index: the linearizable-read batcher, leadership confirmation and applied waiters.

Theory of operation: the **read loop** batches linearizable reads: all :meth:`read_index`
callers waiting at one moment share one ReadIndex round (a fresh context per attempt, retried
when no answer arrives), then wait until applied >= the confirmed index (etcd's
linearizableReadLoop).  The Ready loop hands out Raft's read states (:mod:`.driver`).

:meth:`ReadIndex.confirm_leadership` runs a ReadIndex round issued as leader (etcd's
ensureLeadership): callers share rounds, but each waits for a round that *starts* after it
asked.  :meth:`ReadIndex.wait_applied` waits for an index to be applied locally.

Each linearizable read waits under ``asyncio.timeout`` (half the cost of ``anyio.fail_after``,
measured; see :mod:`.proposals`).
"""

from __future__ import annotations

import asyncio

import anyio

from coord.errors import NoLeaderError, RequestTimeoutError, ServerStoppedError

from .state import NodeState
from .waiter import Waiter

__all__ = ["ReadIndex"]


class ReadIndex(NodeState):
    """Linearizable barriers and leadership rounds (see the module docstring)."""

    async def read_index(self) -> None:
        """Linearizable barrier (batched ReadIndex; see the module docstring)."""
        if not self._running:
            raise ServerStoppedError()
        waiter: Waiter[None] = Waiter()
        self._read_waiters.append(waiter)
        self._read_requested.set()
        try:
            async with asyncio.timeout(self.request_timeout):
                await waiter.wait()
        except TimeoutError:
            self.stats.read_indexes_failed += 1
            raise (RequestTimeoutError() if self._lead else NoLeaderError()) from None
        finally:
            waiter.set_result(None)  # done either way: no more rounds for a caller gone

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
            self._confirm_next = Waiter()
        waiter = self._confirm_next
        if not self._confirming:
            self._confirming = True
            self._tg.start_soon(self._confirm_rounds)
        with anyio.move_on_after(timeout):
            return await waiter.wait() == term and self.leader_term() == term
        return False

    async def _confirm_rounds(self) -> None:
        """Run leadership rounds while callers wait for one; each resolves its callers with
        the term it confirmed (0: none)."""
        round_timeout = self.request_timeout  # no caller waits longer
        try:
            while self._confirm_next is not None:
                waiter, self._confirm_next = self._confirm_next, None
                term = self.leader_term()
                confirmed = 0
                if term:
                    self._read_ctx += 1
                    ctx = self._read_ctx.to_bytes(8, "big")
                    state: Waiter[int] = Waiter()
                    self._read_states[ctx] = state
                    try:
                        # issued while leader of `term`: Raft answers it locally after a
                        # quorum of heartbeat acks of this term and drops it if it steps down
                        self.rawnode.read_index(ctx)
                        self._wake.set()
                        with anyio.move_on_after(round_timeout):
                            await state.wait()
                    finally:
                        self._read_states.pop(ctx, None)
                    if state.done() and self.leader_term() == term:
                        confirmed = term
                waiter.set_result(confirmed)
        finally:
            self._confirming = False

    async def wait_applied(self, index: int, timeout: float) -> bool:
        """Wait until this member has applied ``index``; False after ``timeout``."""
        if index <= self._applied:
            return True
        waiter: Waiter[None] = Waiter()
        self._applied_waiters.append((index, waiter))
        with anyio.move_on_after(timeout):
            await waiter.wait()
            return True
        return False

    def _release_applied_waiters(self) -> None:
        if not self._applied_waiters:
            return
        keep = []
        for idx, waiter in self._applied_waiters:
            if idx <= self._applied:
                waiter.set_result(None)
            else:
                keep.append((idx, waiter))
        self._applied_waiters = keep

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
                state: Waiter[int] = Waiter()
                self._read_states[ctx] = state
                self.rawnode.read_index(ctx)
                self._wake.set()
                with anyio.move_on_after(retry):
                    index = await state.wait()
                self._read_states.pop(ctx, None)
                if index < 0:  # etcd: "timed out waiting for read index response"
                    self.stats.slow_read_indexes += 1
            if index < 0:
                continue
            if index > self._applied:
                applied: Waiter[None] = Waiter()
                self._applied_waiters.append((index, applied))
                await applied.wait()
            for w in waiters:
                w.set_result(None)
