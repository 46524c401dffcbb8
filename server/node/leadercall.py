"""Leader calls: leader-only requests a follower forwards to the leader over the peer transport.

Theory of operation: some requests must be answered by the leader (a lease keep-alive: only
the leader's timer knows deadlines, architecture rule 4; whether a learner is in sync: only the
leader knows its progress).  A service registers such a method with
:meth:`LeaderCalls.register_call`; :meth:`LeaderCalls.leader_call` runs it here while this
member leads, else sends it on the peer transport's call connection to the leader as Raft
knows it *now*, which answers it (:meth:`LeaderCalls.on_call`) only while it leads.
A method registered with ``leader_only=False`` is answered by any member:
:meth:`LeaderCalls.member_call` asks one member by ID (the dashboard asks each member for its
status this way, over the peer connections every member already has).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from coord.errors import NoLeaderError, NotLeaderError

from .state import NodeState

__all__ = ["LeaderCalls"]

log = logging.getLogger("coord.server.node")


class LeaderCalls(NodeState):
    """Registered leader-only methods and their forwarding (see the module docstring)."""

    async def on_call(self, method: str, body: bytes) -> bytes:
        """Answer a request a follower forwarded to us (the leader)."""
        fn, leader_only = self._calls.get(method, (None, True))
        if fn is None:
            raise ValueError(f"unknown forwarded method {method!r}")
        if leader_only and not self.is_leader():
            raise ValueError(NotLeaderError().message)
        result = fn(body)
        return result if isinstance(result, bytes) else await result

    def register_call(
        self,
        method: str,
        fn: Callable[[bytes], bytes | Awaitable[bytes]],
        leader_only: bool = True,
    ) -> None:
        """Let followers forward ``method`` to this member while it leads (see leader_call),
        or, with ``leader_only=False``, let any member ask it (see member_call); ``fn`` may be
        a coroutine function."""
        self._calls[method] = (fn, leader_only)

    async def member_call(self, member_id: int, method: str, body: bytes, timeout: float) -> bytes:
        """Run ``method`` (registered with ``leader_only=False``) on ``member_id``: here when
        it is this member, else over the peer transport.

        Raises:
            OSError: the member could not be reached or reported an error.
            TimeoutError: no answer within ``timeout``.
        """
        if member_id == self.member_id:
            return await self.on_call(method, body)
        return await self.transport.call(member_id, method, body, timeout=timeout)

    async def leader_call(self, method: str, body: bytes, timeout: float | None = None) -> bytes:
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
            return await self.transport.call(
                lead, method, body, timeout=timeout or self.request_timeout
            )
        except (OSError, TimeoutError) as e:
            log.info("forwarding %s to leader %x failed: %s", method, lead, e)
            raise NoLeaderError() from None
