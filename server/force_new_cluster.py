"""``--force-new-cluster``: restart a member as a one-member cluster from its own data.

Theory of operation
-------------------
Disaster recovery when a quorum is lost for good, done as etcd does (server/etcdserver/
bootstrap.go ``bootstrapWALFromSnapshot``, server/storage/util.go ``CreateConfigChangeEnts``).
On a restart with the flag, before the Raft core is created, :func:`force_new_cluster`
rewrites the member's recovered log:

1. entries after the hard state's commit index are dropped (overwritten by step 3): they were
   never known committed, and no other member will ever vote on them again;
2. the members of the configuration as of the commit index are computed from the snapshot's
   ConfState and the conf changes committed after it (:func:`effective_member_ids`; voters
   and learners alike);
3. conf-change entries are appended in the current term -- first an ADD_NODE of this member if
   it is not among them, then a REMOVE_NODE of every other member -- and the hard state's
   commit is moved to the last of them; entries and hard state are written to the WAL with
   one fsync.

Nothing else changes: member and cluster ID, every committed entry and the snapshot stay. The
node then starts as after any restart; its first Ready applies the committed entries, the new
conf changes included (the member list loses the others, which are remembered as removed so
their connections are refused), this member is the only voter and elects itself. The
entries are ordinary log entries, so a later restart without the flag replays them and stays
a one-member cluster. Other members are added back as new members (``etcdctl member add``
with an empty data directory).

A learner refuses (:class:`ForceNewClusterError`: the server exits 1 with "cannot serve:
..."; etcd would panic). A member that already is the only member changes nothing. A member
without data (a new data directory) ignores the flag, as etcd does: it bootstraps from its
``--initial-*`` flags as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from coord.server.membership import ChangeContext, Member, encode_context
from coord.server.raft.confchange_codec import decode_conf_change, encode_conf_change
from coord.server.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfChangeV2,
    Entry,
    EntryType,
    HardState,
    Snapshot,
)
from coord.server.storage import DurableStorage

__all__ = [
    "ForceNewClusterError",
    "effective_member_ids",
    "effective_members",
    "force_new_cluster",
    "force_new_cluster_entries",
]

log = logging.getLogger("coord.server.force_new_cluster")


class ForceNewClusterError(OSError):
    """The member cannot form a one-member cluster (the message says why); nothing was
    written."""


def effective_members(snapshot: Snapshot, entries: Sequence[Entry]) -> dict[int, bool]:
    """``member id -> is learner`` after ``snapshot`` and the conf changes in ``entries``."""
    cs = snapshot.metadata.conf_state
    members = dict.fromkeys((*cs.voters, *cs.voters_outgoing), False)
    members.update(dict.fromkeys((*cs.learners, *cs.learners_next), True))
    for e in entries:
        if e.type != EntryType.CONF_CHANGE:
            continue
        cc = decode_conf_change(e.data)
        for c in cc.changes if isinstance(cc, ConfChangeV2) else [cc]:
            if c.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
                members[c.node_id] = c.type == ConfChangeType.ADD_LEARNER_NODE
            elif c.type == ConfChangeType.REMOVE_NODE:
                members.pop(c.node_id, None)
    return members


def effective_member_ids(snapshot: Snapshot, entries: Sequence[Entry]) -> list[int]:
    """Members (voters and learners) after ``snapshot`` and the conf changes in ``entries``
    (etcd's GetEffectiveNodeIDsFromWALEntries), sorted."""
    return sorted(effective_members(snapshot, entries))


def force_new_cluster_entries(ids: Sequence[int], me: Member, term: int, index: int) -> list[Entry]:
    """Conf-change entries ``index + 1..`` of ``term`` that leave ``me`` the only member of
    ``ids`` (ADD_NODE of ``me`` first when it is not among them: Raft refuses an empty
    configuration)."""
    changes: list[ConfChange] = []
    if me.id not in ids:
        changes.append(
            ConfChange(ConfChangeType.ADD_NODE, me.id, encode_context(ChangeContext(0, 0, me)))
        )
    changes += [ConfChange(ConfChangeType.REMOVE_NODE, i) for i in ids if i != me.id]
    return [
        Entry(
            term=term, index=index + 1 + k, type=EntryType.CONF_CHANGE, data=encode_conf_change(c)
        )
        for k, c in enumerate(changes)
    ]


def force_new_cluster(storage: DurableStorage, me: Member) -> None:
    """Rewrite ``storage``'s log so that ``me`` becomes a one-member cluster (see the module
    docstring); durable (fsynced) when this returns.

    Raises:
        ForceNewClusterError: ``me`` is a learner (it would be left without a voter).
    """
    hs = storage.hard_state
    commit = hs.commit
    first = storage.first_index()
    committed = storage.entries(first, commit + 1) if commit >= first else []
    dropped = storage.last_index() - commit
    members = effective_members(storage.snapshot(), committed)
    if members.get(me.id):
        raise ForceNewClusterError(
            f"--force-new-cluster: member {me.id:x} is a learner, which cannot form a cluster "
            f"alone; restart a voting member with --force-new-cluster instead"
        )
    ids = sorted(members)
    ents = force_new_cluster_entries(ids, me, hs.term, commit)
    if not ents:  # its own log commits whatever it holds when it elects itself
        log.warning(
            "--force-new-cluster: member %x is already the only member; nothing to change", me.id
        )
        return
    new_hs = HardState(term=hs.term, vote=hs.vote, commit=commit + len(ents))
    storage.save(new_hs, ents, sync=True)  # the new entries replace the uncommitted suffix
    log.warning(
        "--force-new-cluster: member %x now forms a one-member cluster: removed "
        "members %s, dropped %d uncommitted entr%s, commit index %d -> %d",
        me.id,
        ",".join(f"{i:x}" for i in ids if i != me.id) or "none",
        dropped,
        "y" if dropped == 1 else "ies",
        commit,
        new_hs.commit,
    )
