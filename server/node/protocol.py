"""The Node protocol: what the API layer needs from a consensus member.

Theory of operation: the gRPC services never talk to Raft directly. Writes are encoded as
commands (:mod:`coord.server.command`) and handed to :meth:`Node.propose`, which resolves with
*this member's* state-machine result for that command once it is committed and applied.
Linearizable reads first await :meth:`Node.read_index`, then read the local state machine.
The implementation is the Raft-backed :class:`~coord.server.node.RaftNode`; tests may use a
fake. The caller owns a node's lifetime: ``await task_group.start(node.run)`` returns once the
peer port serves and the driver runs; cancelling that task group stops the node.
Leader-only requests that reach a follower (lease keep-alives) go to the leader through
:meth:`Node.leader_call`, served there by what :meth:`Node.register_call` installed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

import anyio.abc

from coord.server.membership import MemberInfo
from coord.server.storage.diskstats import DiskStats
from coord.server.transport.stats import PeerStats

from .stats import FollowerStatus, NodeStats

__all__ = ["FollowerStatus", "MemberInfo", "Node", "NodeStats"]


@runtime_checkable
class Node(Protocol):
    """A consensus member as seen by the API layer (see the module docstring)."""

    member_id: int
    cluster_id: int
    #: Seconds a request may wait for its proposal to apply (--request-timeout).
    request_timeout: float
    #: etcd's server counters and the apply/snapshot durations (read by /metrics).
    stats: NodeStats

    async def propose(self, command: bytes) -> bytes:
        """Replicate ``command``; return this member's apply result (raise its CoordError).

        Raises NoLeaderError when the proposal never reached a log (surely not applied: the
        caller may retry); RequestTimeoutError (outcome unknown: it may still commit) when it was
        appended or forwarded but not applied in time; ServerStoppedError when the member
        stops meanwhile.
        """
        ...

    async def read_index(self) -> None:
        """Linearizable barrier: return once applied >= the leader-confirmed commit index."""
        ...

    def is_leader(self) -> bool:
        """True while this member is the leader."""
        ...

    def leader_id(self) -> int:
        """The leader's member ID, 0 when none is known."""
        ...

    def leader_term(self) -> int:
        """The term while this member leads now and has applied an entry of it, else 0."""
        ...

    async def confirm_leadership(self, term: int, timeout: float) -> bool:
        """True if a quorum confirms this member still leads ``term`` (etcd's
        ensureLeadership), within ``timeout``."""
        ...

    async def wait_applied(self, index: int, timeout: float) -> bool:
        """Wait until ``index`` is applied here; False after ``timeout``."""
        ...

    async def propose_as_leader(self, command: bytes, term: int) -> bytes:
        """:meth:`propose`, only while this member leads ``term`` (NotLeaderError otherwise);
        never forwarded to another member."""
        ...

    def term(self) -> int:
        """Current Raft term."""
        ...

    def commit_index(self) -> int:
        """Highest log index known committed."""
        ...

    def applied_index(self) -> int:
        """Highest log index applied to the state machine."""
        ...

    def disk_stats(self) -> DiskStats:
        """The WAL's fsync latencies and bytes written."""
        ...

    def peer_stats(self) -> dict[int, PeerStats]:
        """Bytes, failures and round-trip times per peer."""
        ...

    def followers(self) -> list[FollowerStatus]:
        """The leader's view of every other member (empty unless this member leads)."""
        ...

    def pending_proposals(self) -> int:
        """Proposals of this member waiting to be committed and applied."""
        ...

    def members(self) -> list[MemberInfo]:
        """The current membership."""
        ...

    async def add_member(self, peer_urls: Sequence[str], is_learner: bool) -> MemberInfo:
        """Add a member (MemberAdd)."""
        ...

    async def remove_member(self, member_id: int) -> None:
        """Remove a member (MemberRemove)."""
        ...

    async def promote_member(self, member_id: int) -> None:
        """Promote a learner to voter (MemberPromote)."""
        ...

    async def update_member(self, member_id: int, peer_urls: Sequence[str]) -> None:
        """Change a member's peer URLs (MemberUpdate)."""
        ...

    async def transfer_leader(self, target_id: int) -> None:
        """Hand leadership to ``target_id`` (MoveLeader)."""
        ...

    def register_call(
        self,
        method: str,
        fn: Callable[[bytes], bytes | Awaitable[bytes]],
        leader_only: bool = True,
    ) -> None:
        """Serve ``method`` with ``fn``: while this member leads, or always when not
        ``leader_only`` (for :meth:`member_call`)."""
        ...

    async def member_call(self, member_id: int, method: str, body: bytes, timeout: float) -> bytes:
        """Run ``method`` (registered with ``leader_only=False``) on ``member_id``; OSError or
        TimeoutError when it cannot answer."""
        ...

    async def leader_call(self, method: str, body: bytes, timeout: float | None = None) -> bytes:
        """Run the registered ``method`` on the leader (here when leading); NoLeaderError
        when there is none or it cannot be reached in time."""
        ...

    async def wait_published(self) -> None:
        """Return once this member's name and client URLs are applied (etcd's ReadyNotify)."""
        ...

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Run the member until cancelled (``await task_group.start(node.run)``): started once
        its peer port serves. Cancelled, pending proposals fail with ServerStoppedError; a
        member that stopped because its Raft state cannot go on raises FatalError."""
        ...
