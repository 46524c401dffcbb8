"""Bootstrap: a member's storage and identity, from its data directory or its flags.

Theory of operation: a restart recovers from the data directory and ignores the
``--initial-*`` flags (``--force-new-cluster`` rewrites the recovered log first).  Otherwise:

* ``--initial-cluster-state new`` writes the initial members as ADD_NODE conf-change entries
  1..n of term 1 into every member's log (identical bytes everywhere, IDs derived as etcd
  does) with commit = n; the first Ready applies them.  Before that it asks its peers
  (:func:`refuse_if_bootstrapped`): a member whose data directory was wiped and that is
  started again with its bootstrap flags refuses ("member ... has already been bootstrapped")
  when a peer already lists it with published client URLs.
* ``existing`` (joining) learns the cluster and its own ID from a peer
  (:func:`~coord.server.transport.discover`) and starts with an empty log that the leader
  fills.

The caller has locked the data directory; the member directory is created atomically
(:mod:`coord.server.storage.fileutil`, :meth:`DurableStorage.create`, architecture rule 10).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from coord.server.config import Config, parse_initial_cluster
from coord.server.force_new_cluster import force_new_cluster
from coord.server.membership import (
    ChangeContext,
    Member,
    Membership,
    bootstrap_members,
    compute_member_id,
    encode_context,
)
from coord.server.raft.confchange_codec import encode_conf_change
from coord.server.raft.types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Snapshot,
)
from coord.server.storage import DurableStorage
from coord.server.transport import discover

__all__ = [
    "DISCOVERY_TIMEOUT",
    "BootstrapError",
    "OpenedMember",
    "open_member",
    "refuse_if_bootstrapped",
]

log = logging.getLogger("coord.server.node")

#: Seconds to wait for each peer asked for the member list.
DISCOVERY_TIMEOUT = 2.0


class BootstrapError(OSError):
    """The member cannot start with this configuration (the message says why)."""


@dataclass
class OpenedMember:
    """A member's storage and identity, before its Raft state is built."""

    storage: DurableStorage
    member_id: int
    cluster_id: int
    membership: Membership
    #: The recovered snapshot to install (restart only).
    snapshot: Snapshot | None = None


async def refuse_if_bootstrapped(
    member_id: int, peer_urls: Sequence[str], client_ssl: ssl.SSLContext | None = None
) -> None:
    """Before bootstrapping a new cluster, ask the peers whether it already exists.

    A member that finds no data directory (wiped, or a new disk) but is started again with
    ``--initial-cluster-state new`` must not bootstrap a second time under the same member ID:
    its fresh log would contradict entries the cluster has committed.  As etcd does
    (server/etcdserver/bootstrap.go, cluster_util.go ``isMemberBootstrapped``): if a peer
    answers and its member list has this member with published client URLs, refuse; if no peer
    answers, the cluster is being bootstrapped now, so go on.

    Raises:
        BootstrapError: "member <id> has already been bootstrapped".
    """
    if not peer_urls:
        return
    try:
        doc = Membership.from_document(
            await discover(peer_urls, timeout=DISCOVERY_TIMEOUT, client_ssl=client_ssl)
        )
    except (OSError, ValueError, msgspec.DecodeError):
        return
    me = doc.members.get(member_id)
    if me is not None and me.client_urls:
        raise BootstrapError(f"member {member_id:x} has already been bootstrapped")


async def open_member(cfg: Config) -> OpenedMember:
    """Recover, bootstrap or join (see the module docstring); the data directory is locked."""
    data_dir = Path(cfg.data_dir)
    if DurableStorage.exists(data_dir):
        storage = DurableStorage.open(data_dir)
        md = storage.metadata
        member_id, cluster_id = md["member_id"], md["cluster_id"]
        if cfg.force_new_cluster:
            force_new_cluster(
                storage,
                Member(
                    id=member_id, name=cfg.name, peer_urls=sorted(cfg.initial_advertise_peer_urls)
                ),
            )
        snap = storage.snapshot()
        log.info(
            "restarting member %x of cluster %x from %s (ignoring --initial-* flags)",
            member_id,
            cluster_id,
            data_dir,
        )
        return OpenedMember(
            storage,
            member_id,
            cluster_id,
            Membership(cluster_id),
            None if snap.is_empty() else snap,
        )
    if cfg.force_new_cluster:
        log.warning(
            "--force-new-cluster has no effect: %s holds no member data, so this "
            "member bootstraps from its --initial-* flags",
            data_dir,
        )
    token = cfg.initial_cluster_token
    initial = parse_initial_cluster(cfg.initial_cluster)
    my_urls = list(cfg.initial_advertise_peer_urls)
    others = [u for urls in initial.values() for u in urls if u not in my_urls]
    client_ssl = cfg.peer_tls.client_context()
    if cfg.initial_cluster_state == "new":
        members = bootstrap_members(initial, token)
        member_id = compute_member_id(my_urls, token)
        if member_id not in {m.id for m in members}:
            raise BootstrapError(
                f"--initial-cluster has no member with this member's peer URLs "
                f"{my_urls} (--initial-advertise-peer-urls)"
            )
        await refuse_if_bootstrapped(member_id, others, client_ssl)
        cluster_id = Membership.bootstrap(members).cluster_id
        ents = [
            Entry(
                term=1,
                index=i + 1,
                type=EntryType.CONF_CHANGE,
                data=encode_conf_change(
                    ConfChange(
                        ConfChangeType.ADD_NODE, m.id, encode_context(ChangeContext(0, 0, m))
                    )
                ),
            )
            for i, m in enumerate(members)
        ]
        # atomic: a crash leaves a complete member directory or none (architecture rule 10)
        storage = DurableStorage.create(
            data_dir,
            {"member_id": member_id, "cluster_id": cluster_id},
            HardState(term=1, vote=0, commit=len(ents)),
            ents,
        )
        log.info(
            "bootstrapped member %x of new cluster %x with %d members",
            member_id,
            cluster_id,
            len(members),
        )
        return OpenedMember(storage, member_id, cluster_id, Membership(cluster_id))
    doc = Membership.from_document(
        await discover(others, timeout=DISCOVERY_TIMEOUT, client_ssl=client_ssl)
    )
    me = doc.find_by_peer_urls(my_urls)
    if me is None:
        raise BootstrapError(
            f"this member ({my_urls}) is not in the existing cluster's member "
            f"list; add it first (etcdctl member add)"
        )
    storage = DurableStorage.create(data_dir, {"member_id": me.id, "cluster_id": doc.cluster_id})
    log.info("joining cluster %x as member %x", doc.cluster_id, me.id)
    return OpenedMember(storage, me.id, doc.cluster_id, doc)
