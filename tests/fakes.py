"""Test fakes. FakeNode: a single-member, always-leader, in-memory stand-in for the Raft node.

There is no log replication and no persistence; :meth:`propose` applies
the command to the state machine at once (next log index) and returns its result. The term is
1 from :meth:`start` on, and the member is leader from then until :meth:`stop` (:meth:`run`
does both, as RaftNode.run is started and cancelled in a task group). It implements
the Node protocol (coord.server.node.protocol) so the API layer cannot tell it from RaftNode (apart
from durability: a restart loses everything). Production never builds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.abc

from coord.errors import (
    CoordError,
    MemberNotFoundError,
    MemberNotLearnerError,
    NotLeaderError,
    ServerStoppedError,
    UnhealthyClusterError,
)
from coord.server.membership import MemberInfo
from coord.server.node.stats import FollowerStatus, NodeStats
from coord.server.statemachine import StateMachine
from coord.server.storage.diskstats import DiskStats
from coord.server.transport.stats import PeerStats

__all__ = ["FakeNode"]


class FakeNode:
    """Single member that applies every proposal immediately."""

    def __init__(self, sm: StateMachine, member: MemberInfo, cluster_id: int) -> None:
        self.sm = sm
        self.member_id = member.id
        self.cluster_id = cluster_id
        self._member = member
        self._running = False
        self.stats = NodeStats()
        self._disk = DiskStats()
        self._term = 0
        self.request_timeout = 5.0
        self._calls: dict[str, Callable[[bytes], bytes | Awaitable[bytes]]] = {}

    async def propose(self, command: bytes) -> bytes:
        """Apply ``command`` now; raise the CoordError it produced."""
        if not self._running:
            raise ServerStoppedError()
        result = self.sm.apply(self.sm.applied_index + 1, command)
        if isinstance(result, CoordError):
            raise result
        return result

    async def read_index(self) -> None:
        """Everything is applied at once: nothing to wait for."""
        if not self._running:
            raise ServerStoppedError()

    def is_leader(self) -> bool:
        """True between start and stop."""
        return self._running

    def leader_id(self) -> int:
        """This member while running, else 0."""
        return self.member_id if self._running else 0

    def term(self) -> int:
        """1 once started."""
        return self._term

    def leader_term(self) -> int:
        """The term while running (everything is applied at once), else 0."""
        return self._term if self._running else 0

    async def confirm_leadership(self, term: int, timeout: float) -> bool:
        """The only member is its own quorum."""
        return self.leader_term() == term != 0

    async def wait_applied(self, index: int, timeout: float) -> bool:
        """Everything proposed is applied at once."""
        return True

    async def propose_as_leader(self, command: bytes, term: int) -> bytes:
        """Apply ``command`` now if running in ``term``."""
        if self.leader_term() != term:
            raise NotLeaderError()
        return await self.propose(command)

    def commit_index(self) -> int:
        """Same as the applied index."""
        return self.sm.applied_index

    def applied_index(self) -> int:
        """The state machine's applied index."""
        return self.sm.applied_index

    def disk_stats(self) -> DiskStats:
        """Nothing written: no disk."""
        return self._disk

    def peer_stats(self) -> dict[int, PeerStats]:
        """No peers."""
        return {}

    def followers(self) -> list[FollowerStatus]:
        """No followers."""
        return []

    def pending_proposals(self) -> int:
        """None: a proposal applies at once."""
        return 0

    def members(self) -> list[MemberInfo]:
        """Just this member."""
        return [self._member]

    async def add_member(self, peer_urls: Sequence[str], is_learner: bool) -> MemberInfo:
        """Not possible without Raft."""
        raise UnhealthyClusterError(
            "etcdserver: re-configuration failed due to not enough started members"
        )

    async def remove_member(self, member_id: int) -> None:
        """Removing the only member is refused; unknown IDs are not found."""
        if member_id != self.member_id:
            raise MemberNotFoundError()
        raise UnhealthyClusterError(
            "etcdserver: re-configuration failed due to not enough started members"
        )

    async def promote_member(self, member_id: int) -> None:
        """There are no learners."""
        if member_id != self.member_id:
            raise MemberNotFoundError()
        raise MemberNotLearnerError()

    async def update_member(self, member_id: int, peer_urls: Sequence[str]) -> None:
        """Update this member's peer URLs."""
        if member_id != self.member_id:
            raise MemberNotFoundError()
        m = self._member
        self._member = MemberInfo(m.id, m.name, tuple(peer_urls), m.client_urls, m.is_learner)

    async def transfer_leader(self, target_id: int) -> None:
        """Already leader; any other target does not exist."""
        if target_id != self.member_id:
            raise MemberNotFoundError()

    def register_call(
        self,
        method: str,
        fn: Callable[[bytes], bytes | Awaitable[bytes]],
        leader_only: bool = True,
    ) -> None:
        """Serve ``method`` here (the only member is always the leader)."""
        self._calls[method] = fn

    async def member_call(self, member_id: int, method: str, body: bytes, timeout: float) -> bytes:
        """Only this member exists."""
        if member_id != self.member_id:
            raise OSError(f"unknown member {member_id:x}")
        return await self.leader_call(method, body)

    async def leader_call(self, method: str, body: bytes, timeout: float | None = None) -> bytes:
        """Run the registered ``method`` here."""
        result = self._calls[method](body)
        return result if isinstance(result, bytes) else await result

    async def wait_published(self) -> None:
        """Nothing to publish."""

    async def start(self) -> None:
        """Become leader of term 1."""
        self._running = True
        self.stats.leader_changes += 1
        self._term = 1

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """:meth:`start`, then serve until cancelled (``await task_group.start(node.run)``),
        then :meth:`stop`."""
        await self.start()
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self.stop()

    async def stop(self) -> None:
        """Stop; later proposals fail with ServerStoppedError."""
        if self._running:
            self._running = False
