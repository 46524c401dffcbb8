"""The consensus node: a Raft member driving the Raft core against disk, network and the state
machine, in the spirit of etcd-io/raft's node and etcd's raftNode.

Theory of operation: one module per concept, each with its own theory of operation.

* :mod:`.protocol` -- the Node protocol: what the API layer needs from a consensus member.
* :mod:`.raftnode` -- :class:`RaftNode` put together from the parts below, and
  :meth:`RaftNode.open` (peer ports, data-directory lock, storage).
* :mod:`.bootstrap` -- recover, bootstrap a new cluster, or join one (discovery,
  :func:`refuse_if_bootstrapped`).
* :mod:`.driver` -- the lifetime (``await task_group.start(node.run)``), the ticker, the Ready
  loop, publishing this member's attributes, stopping on removal or a fatal error.
* :mod:`.proposals` -- the proposal envelope, sequence numbers and waiting proposers.
* :mod:`.readindex` -- the linearizable-read batcher and leadership confirmation rounds.
* :mod:`.reconfig` -- conf changes, member add/remove/promote/update, leader transfer.
* :mod:`.leadercall` -- leader-only requests forwarded from followers.
* :mod:`.snapshots` -- snapshot data, taking, installing and sending snapshots.
* :mod:`.state` -- the state the parts share; :mod:`.waiter` -- the one-shot result they
  hand each other (anyio on asyncio throughout).
"""

from __future__ import annotations

from coord.server.membership import MemberInfo

from .bootstrap import BootstrapError, refuse_if_bootstrapped
from .protocol import Node
from .raftnode import RaftNode
from .snapshots import SnapshotData
from .state import FatalError
from .waiter import Waiter

__all__ = [
    "BootstrapError",
    "FatalError",
    "MemberInfo",
    "Node",
    "RaftNode",
    "SnapshotData",
    "Waiter",
    "refuse_if_bootstrapped",
]
