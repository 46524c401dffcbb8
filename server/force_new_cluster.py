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

A member that already is the only member changes nothing. A member without data (a new
data directory) ignores the flag, as etcd does: it bootstraps from its ``--initial-*`` flags
as usual.
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

__all__ = ["effective_member_ids", "force_new_cluster", "force_new_cluster_entries"]

log = logging.getLogger("coord.server.force_new_cluster")


def effective_member_ids(snapshot: Snapshot, entries: Sequence[Entry]) -> list[int]:
    """Members (voters and learners) after ``snapshot`` and the conf changes in ``entries``
    (etcd's GetEffectiveNodeIDsFromWALEntries), sorted."""
    cs = snapshot.metadata.conf_state
    ids = set(cs.voters) | set(cs.learners) | set(cs.voters_outgoing) | set(cs.learners_next)
    for e in entries:
        if e.type != EntryType.CONF_CHANGE:
            continue
        cc = decode_conf_change(e.data)
        for c in cc.changes if isinstance(cc, ConfChangeV2) else [cc]:
            if c.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
                ids.add(c.node_id)
            elif c.type == ConfChangeType.REMOVE_NODE:
                ids.discard(c.node_id)
    return sorted(ids)


def force_new_cluster_entries(ids: Sequence[int], me: Member, term: int,
                              index: int) -> list[Entry]:
    """Conf-change entries ``index + 1..`` of ``term`` that leave ``me`` the only member of
    ``ids`` (ADD_NODE of ``me`` first when it is not among them: Raft refuses an empty
    configuration)."""
    changes: list[ConfChange] = []
    if me.id not in ids:
        changes.append(ConfChange(ConfChangeType.ADD_NODE, me.id,
                                  encode_context(ChangeContext(0, 0, me))))
    changes += [ConfChange(ConfChangeType.REMOVE_NODE, i) for i in ids if i != me.id]
    return [Entry(term=term, index=index + 1 + k, type=EntryType.CONF_CHANGE,
                  data=encode_conf_change(c)) for k, c in enumerate(changes)]


def force_new_cluster(storage: DurableStorage, me: Member) -> None:
    """Rewrite ``storage``'s log so that ``me`` becomes a one-member cluster (see the module
    docstring); durable (fsynced) when this returns."""
    hs = storage.hard_state
    commit = hs.commit
    first = storage.first_index()
    committed = storage.entries(first, commit + 1) if commit >= first else []
    dropped = storage.last_index() - commit
    ids = effective_member_ids(storage.snapshot(), committed)
    ents = force_new_cluster_entries(ids, me, hs.term, commit)
    if not ents:  # its own log commits whatever it holds when it elects itself
        log.warning("--force-new-cluster: member %x is already the only member; nothing to "
                    "change", me.id)
        return
    new_hs = HardState(term=hs.term, vote=hs.vote, commit=commit + len(ents))
    storage.save(new_hs, ents, sync=True)  # the new entries replace the uncommitted suffix
    log.warning("--force-new-cluster: member %x now forms a one-member cluster: removed "
                "members %s, dropped %d uncommitted entr%s, commit index %d -> %d", me.id,
                ",".join(f"{i:x}" for i in ids if i != me.id) or "none", dropped,
                "y" if dropped == 1 else "ies", commit, new_hs.commit)
