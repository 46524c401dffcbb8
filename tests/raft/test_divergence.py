"""A follower never answers an append in a way that hides divergence from a committed entry.

etcd-io/raft panics when an append conflicts with a committed entry (log.go ``maybeAppend``:
"entry %d conflict with committed entry").  A leader's log holds every committed entry
(Leader Completeness), so an append from the current leader that contradicts our committed
prefix means the logs have diverged (for example a wiped member bootstrapped a fresh log).
The follower must then fail loudly (AssertionError naming the index and terms) instead of
answering "matched up to my commit index" (which lets the leader count it as holding entries
it does not have) or sending a reject hint below its commit index (which makes the leader
probe, and overwrite, committed entries).
"""

from __future__ import annotations

import random

import pytest
from raft.raft_harness import Cluster

from coord.server.raft import (
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftConfig,
    RawNode,
)

MT = MessageType
LEADER = 2


def follower(terms: list[int], commit: int, term: int) -> RawNode:
    """Member 1 of {1, 2, 3} with a durable log of ``terms`` (index 1..) committed to ``commit``."""
    st = MemoryStorage(ConfState([1, 2, 3]))
    st.append([Entry(term=t, index=i + 1, data=b"e%d" % (i + 1)) for i, t in enumerate(terms)])
    st.set_hard_state(HardState(term=term, vote=0, commit=commit))
    return RawNode(RaftConfig(id=1, rng=random.Random(1).randrange), st)


def app(
    term: int, index: int, log_term: int, entries: list[tuple[int, int]], commit: int
) -> Message:
    return Message(
        MT.APP,
        from_=LEADER,
        to=1,
        term=term,
        index=index,
        log_term=log_term,
        commit=commit,
        entries=[Entry(term=t, index=i, data=b"x") for i, t in entries],
    )


def responses(n: RawNode) -> list[Message]:
    if not n.has_ready():
        return []
    rd = n.ready()
    out = [m for m in (*rd.messages, *rd.msgs_after_append) if m.type == MT.APP_RESP]
    n.advance(rd)
    return out


def test_append_below_commit_matching_committed_entries_acks_commit_index() -> None:
    n = follower([1, 1, 2], commit=3, term=2)
    n.step(app(3, 1, 1, [(2, 1), (3, 2), (4, 3)], commit=3))
    [resp] = responses(n)
    assert (resp.reject, resp.index) == (False, 3)  # etcd: answer with the commit index


def test_append_below_commit_contradicting_a_committed_entry_fails() -> None:
    n = follower([1, 1, 2], commit=3, term=2)
    # The leader's entry 3 has term 3, ours (committed) has term 2.
    with pytest.raises(
        AssertionError, match=r"entry 3 \(term 3\) conflicts with committed entry 3 \(term 2\)"
    ):
        n.step(app(3, 2, 1, [(3, 3), (4, 3)], commit=4))
    assert responses(n) == []


def test_append_whose_previous_entry_contradicts_our_commit_fails() -> None:
    n = follower([1, 1, 2], commit=3, term=2)
    with pytest.raises(
        AssertionError, match=r"entry 3 \(term 3\) conflicts with committed entry 3 \(term 2\)"
    ):
        n.step(app(3, 3, 3, [(4, 3)], commit=4))
    assert responses(n) == []


def test_reject_hint_never_points_below_the_commit_index() -> None:
    n = follower([1, 1, 2, 2], commit=3, term=2)
    # Healthy mismatch above the commit index: the hint stays at or above it.
    n.step(app(3, 5, 3, [], commit=3))
    [resp] = responses(n)
    assert (resp.reject, resp.reject_hint, resp.log_term) == (True, 4, 2)
    # A leader claiming term 1 at index 4 cannot hold our committed entry 3 of term 2: a hint
    # (2, 1) would make it probe and overwrite committed entries.
    with pytest.raises(AssertionError, match=r"conflicts with committed entry 3 \(term 2\)"):
        n.step(app(3, 4, 1, [], commit=3))
    assert responses(n) == []


def test_leader_refuses_an_ack_beyond_its_log() -> None:
    # A follower acks at most what the leader sent, or its own commit index; an ack beyond
    # the leader's last entry means the follower holds committed entries the leader lacks.
    c = Cluster([1, 2, 3], fixed_timeouts=True)
    c.campaign(1)
    n = c.node(1)
    last = n.raft.raft_log.last_index()
    with pytest.raises(AssertionError, match=rf"acknowledged entry {last + 5} beyond"):
        n.step(Message(MT.APP_RESP, from_=2, to=1, term=n.term, index=last + 5))
    assert n.raft.trk.progress[2].match <= last
