"""RawNode API contract: Ready/advance, forwarding, status, reports, restart."""

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
    ProposalDropped,
    RaftConfig,
    RawNode,
    StateType,
)
from coord.server.raft.progress import ProgressState

MT = MessageType


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="0 as id"):
        RawNode(RaftConfig(id=0), MemoryStorage())
    with pytest.raises(ValueError, match="election tick"):
        RawNode(RaftConfig(id=1, election_tick=1, heartbeat_tick=1), MemoryStorage())


def test_follower_without_leader_drops_proposals() -> None:
    n = RawNode(RaftConfig(id=1, rng=random.Random(1).randrange), MemoryStorage(ConfState([1, 2])))
    with pytest.raises(ProposalDropped):
        n.propose(b"x")


def test_proposal_forwarding_and_disabling_it() -> None:
    c = Cluster([1, 2, 3], fixed_timeouts=True)
    c.campaign(1)
    assert c.propose(2, b"via-follower")
    c.stabilize()
    assert c.sm[1].payloads == [b"via-follower"]
    node = c.node(3)
    node.raft.disable_proposal_forwarding = True
    with pytest.raises(ProposalDropped):
        node.propose(b"refused")


def test_step_ignores_local_messages_and_unknown_peers() -> None:
    c = Cluster([1, 2, 3], fixed_timeouts=True)
    c.campaign(1)
    n = c.node(1)
    n.step(Message(MT.HUP, from_=2))
    n.step(Message(MT.CHECK_QUORUM, from_=2))
    n.step(Message(MT.APP_RESP, from_=99, term=1, index=5))
    assert n.state == StateType.LEADER
    assert n.term == 1


def test_status_reports_progress_on_leader() -> None:
    c = Cluster([1, 2, 3], fixed_timeouts=True)
    c.campaign(1)
    st = c.node(1).status()
    assert (st.id, st.term, st.lead, st.state, st.commit, st.applied) == (
        1,
        1,
        1,
        StateType.LEADER,
        1,
        1,
    )
    assert {i: p.match for i, p in st.progress.items()} == {1: 1, 2: 1, 3: 1}
    assert c.node(2).status().progress == {}
    assert st.conf_state.voters == [1, 2, 3]


def test_report_unreachable_and_snapshot() -> None:
    c = Cluster([1, 2, 3], fixed_timeouts=True)
    c.campaign(1)
    n = c.node(1)
    pr = n.raft.trk.progress[2]

    def state() -> ProgressState:  # read afresh: the calls below change it
        return pr.state

    assert state() == ProgressState.REPLICATE
    n.report_unreachable(2)
    assert state() == ProgressState.PROBE
    pr.become_snapshot(10)
    n.report_snapshot(2, failed=True)
    assert state() == ProgressState.PROBE
    assert pr.msg_app_flow_paused


def test_restart_resumes_from_applied_and_hard_state() -> None:
    st = MemoryStorage(ConfState(voters=[1]))
    st.append([Entry(term=1, index=i, data=b"d%d" % i) for i in range(1, 6)])
    st.set_hard_state(HardState(term=1, vote=1, commit=5))
    n = RawNode(RaftConfig(id=1, applied=3), st)
    assert n.term == 1
    rd = n.ready()
    assert [e.index for e in rd.committed_entries] == [4, 5]
    assert rd.hard_state is None  # unchanged since restart
    n.advance(rd)
    assert not n.has_ready()


def test_ready_splits_immediate_and_after_append_messages() -> None:
    c = Cluster([1, 2, 3], fixed_timeouts=True)
    c.campaign(1)
    leader = c.node(1)
    leader.propose(b"x")
    rd = leader.ready()
    # The leader's term is durable: its appends may go out before its own disk write.
    assert [m.type for m in rd.messages] == [MT.APP, MT.APP]
    assert rd.msgs_after_append == []
    assert rd.must_sync
    for m in rd.messages:
        c.node(m.to).step(m)
    c.storage[1].append(rd.entries)
    leader.advance(rd)
    frd = c.node(2).ready()
    assert [m.type for m in frd.msgs_after_append] == [MT.APP_RESP]  # ack only once durable
    assert frd.messages == []


def test_duplicate_read_context_is_answered_once() -> None:
    c = Cluster([1, 2, 3], fixed_timeouts=True)
    c.campaign(1)
    n = c.node(1)
    n.read_index(b"same")
    n.read_index(b"same")
    c.process_all()
    c.deliver_all()
    c.process_all()
    rd_states: list[bytes] = []
    c.deliver_all()
    while n.has_ready():
        rd = n.ready()
        rd_states += [rs.request_ctx for rs in rd.read_states]
        for m in rd.messages + rd.msgs_after_append:
            c.net.append(m)
        c.storage[1].append(rd.entries)
        n.advance(rd)
    assert rd_states == [b"same"]


def test_rng_may_be_a_callable_or_a_random_like_object() -> None:
    cs = ConfState(voters=[1, 2, 3])
    a = RawNode(RaftConfig(id=1, rng=random.Random(3)), MemoryStorage(cs))
    b = RawNode(RaftConfig(id=1, rng=random.Random(3).randrange), MemoryStorage(cs))
    assert a.raft.randomized_election_timeout == b.raft.randomized_election_timeout
    c = RawNode(RaftConfig(id=1), MemoryStorage(cs))  # deterministic fallback
    assert 10 <= c.raft.randomized_election_timeout < 20
