"""Scenario tests: one per Raft behaviour or known Raft bug, each named.

Every scenario runs on the in-memory ``Cluster`` harness, which plays the node driver and checks
election safety, log matching, leader completeness, state machine safety and read
linearizability on every Ready, so each test also guards the global invariants.
"""

from __future__ import annotations

from typing import Any

import pytest
from raft.raft_harness import Cluster

from coord.server.raft import (
    ConfChange,
    ConfChangeType,
    Entry,
    HardState,
    Message,
    MessageType,
    ProposalDropped,
    StateType,
)

MT = MessageType
L, F = StateType.LEADER, StateType.FOLLOWER


def cluster(ids: list[int], **kw: Any) -> Cluster:
    kw.setdefault("fixed_timeouts", True)
    return Cluster(ids, **kw)


def elect(c: Cluster, id_: int) -> None:
    c.campaign(id_)
    assert c.node(id_).state == L, c.node(id_).raft.state


def commit_index(c: Cluster, id_: int) -> int:
    return int(c.node(id_).raft.raft_log.committed)


def log_terms(c: Cluster, id_: int) -> list[tuple[int, int]]:
    log = c.node(id_).raft.raft_log
    return [(e.index, e.term) for e in log.slice(log.first_index(), log.last_index() + 1, None)]


def tick_until(c: Cluster, cond: object, ids: list[int] | None = None, limit: int = 200) -> int:
    assert callable(cond)
    for t in range(limit):
        if cond():
            return t
        for id_ in ids if ids is not None else c.alive():
            c.node(id_).tick()
        c.stabilize()
    raise AssertionError("condition not reached")


# -- elections --------------------------------------------------------------------------------


def test_election_by_campaign() -> None:
    c = cluster([1, 2, 3])
    elect(c, 1)
    assert [c.node(i).term for i in (1, 2, 3)] == [1, 1, 1]
    assert all(c.node(i).lead == 1 for i in (1, 2, 3))
    # The new leader's empty entry commits everywhere.
    assert all(commit_index(c, i) == 1 for i in (1, 2, 3))


def test_election_by_timeout_with_randomized_timeouts() -> None:
    c = Cluster([1, 2, 3, 4, 5], election_tick=10)
    tick_until(c, lambda: c.leader() is not None)
    lead = c.leader()
    assert lead is not None
    assert sum(c.node(i).state == L for i in c.alive()) == 1
    assert c.propose(lead, b"x")
    c.stabilize()
    assert all(c.sm[i].payloads == [b"x"] for i in c.alive())


def test_candidate_votes_once_per_term_and_split_vote_retries() -> None:
    # Identical timeouts everywhere: every node campaigns at once, votes split, and the
    # randomized timeouts of the retry (offsets) break the tie.
    c = cluster([1, 2, 3], timeout_offsets={1: 0, 2: 3, 3: 6}, pre_vote=False)
    tick_until(c, lambda: c.leader() is not None)
    assert c.leader() == 1
    assert c.node(2).raft.vote == 1
    assert c.node(3).raft.vote == 1


def test_single_voter_elects_itself_and_commits_after_persistence() -> None:
    c = cluster([1])
    n = c.node(1)
    n.campaign()
    assert n.state == L
    assert n.term == 1
    rd = n.ready()
    assert [e.index for e in rd.entries] == [1]
    assert rd.committed_entries == []  # not durable yet
    c.storage[1].append(rd.entries)
    assert rd.hard_state is not None
    c.storage[1].set_hard_state(rd.hard_state)
    n.advance(rd)
    n.propose(b"a")
    rd = n.ready()
    assert [e.index for e in rd.committed_entries] == [1]
    assert [e.data for e in rd.entries] == [b"a"]
    c.storage[1].append(rd.entries)
    n.advance(rd)
    rd = n.ready()
    assert [e.data for e in rd.committed_entries] == [b"a"]
    n.advance(rd)


def test_vote_responses_wait_for_persistence() -> None:
    c = cluster([1, 2, 3], pre_vote=False)
    c.node(1).campaign()
    rd = c.node(1).ready()
    # The candidate's own term/vote must be durable before it asks for votes.
    assert rd.messages == []
    assert {m.type for m in rd.msgs_after_append} == {MT.VOTE}
    for m in rd.msgs_after_append:
        c.node(m.to).step(m)
    rd2 = c.node(2).ready()
    assert rd2.messages == []
    assert [m.type for m in rd2.msgs_after_append] == [MT.VOTE_RESP]
    assert rd2.must_sync
    assert rd2.hard_state == HardState(term=1, vote=1, commit=0)


# -- pre-vote and check-quorum -----------------------------------------------------------------


def test_prevote_partitioned_node_rejoins_without_inflating_terms() -> None:
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.isolate(3)
    for _ in range(100):
        c.tick(3)
        c.process_ready(3)
        c.deliver_all()
    assert c.node(3).term == 1  # pre-vote never bumped the term
    assert c.node(3).state == StateType.PRE_CANDIDATE
    assert c.propose(1, b"while-partitioned")
    c.stabilize()
    c.heal()
    c.tick_all(3)
    assert c.leader() == 1
    assert c.node(1).term == 1
    assert c.sm[3].payloads == [b"while-partitioned"]


def test_without_prevote_rejoining_node_disrupts_leader() -> None:
    """Contrast: without pre-vote the isolated node inflates its term and deposes the leader."""
    c = cluster([1, 2, 3], pre_vote=False, check_quorum=False)
    elect(c, 1)
    c.isolate(3)
    for _ in range(50):
        c.tick(3)
        c.process_ready(3)
        c.deliver_all()
    assert c.node(3).term > 3
    c.heal()
    c.tick_all(12)
    assert c.node(1).term > 1  # the leader was forced to step down


def test_check_quorum_leader_steps_down_without_quorum() -> None:
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.isolate(1)
    for _ in range(10):
        c.tick(1)
        c.stabilize()
    assert c.node(1).state == L  # recent_active from before the partition
    for _ in range(10):
        c.tick(1)
        c.stabilize()
    assert c.node(1).state == F
    assert c.node(1).term == 1


def test_check_quorum_follower_in_lease_ignores_votes() -> None:
    c = cluster([1, 2, 3], pre_vote=False)
    elect(c, 1)
    # Node 3 cannot hear the leader and campaigns at term 2; node 2 heard the leader recently
    # and ignores the request, so the healthy leader keeps leading.
    c.cut.update({(1, 3), (3, 1)})
    for _ in range(12):
        c.tick(3)
        c.stabilize()
    assert c.node(3).term >= 2
    assert c.node(2).term == 1
    assert c.node(2).lead == 1
    assert c.node(1).state == L


def test_prevote_checkquorum_liveness() -> None:
    """etcd #9586 / #8334: followers that lose an isolated leader at different times must still
    elect a new one; a pre-candidate forgets its leader so it can grant pre-votes."""
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.isolate(1)
    for _ in range(10):  # only node 2 times out; node 3 still has a fresh lease
        c.tick(2)
        c.stabilize()
    assert c.node(2).state == StateType.PRE_CANDIDATE
    assert c.node(2).lead == 0
    assert c.node(3).state == F
    assert c.node(3).lead == 1
    for _ in range(10):  # now node 3 times out and asks node 2, which must grant
        c.tick(3)
        c.stabilize()
    assert c.node(3).state == L
    assert c.node(3).term == 2
    c.heal()
    c.tick_all(2)
    assert c.leader() == 3
    assert c.node(1).state == F


def test_granting_prevote_does_not_reset_election_timer() -> None:
    """hashicorp/raft#609: a pre-vote grant must not count as hearing from a leader."""
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.isolate(1)
    c.tick(3, 5)
    elapsed = c.node(3).raft.election_elapsed
    for _ in range(10):
        c.tick(2)
        c.stabilize()
    assert c.node(3).raft.election_elapsed >= elapsed


# -- replication ---------------------------------------------------------------------------------


def _preset(c: Cluster, id_: int, terms: list[int], hs: HardState) -> None:
    """Give ``id_`` a durable log with the given entry terms (index 1..) and restart it."""
    st = c.storage[id_]
    st.append(
        [Entry(term=t, index=i + 1, data=b"t%d-i%d" % (t, i + 1)) for i, t in enumerate(terms)]
    )
    st.set_hard_state(hs)
    c.restart(id_)


def test_figure8_leader_commits_only_current_term_entries() -> None:
    c = cluster([1, 2, 3, 4, 5], pre_vote=False, check_quorum=False, max_size_per_msg=1)
    # Figure 8 (c): S1 and S2 have (2, term 2); S5 has (2, term 3); terms advanced to 3.
    _preset(c, 1, [1, 2], HardState(term=3, vote=0, commit=1))
    _preset(c, 2, [1, 2], HardState(term=3, vote=0, commit=1))
    _preset(c, 3, [1], HardState(term=3, vote=0, commit=1))
    _preset(c, 4, [1], HardState(term=3, vote=0, commit=1))
    _preset(c, 5, [1, 3], HardState(term=3, vote=5, commit=1))
    c.crash(5)
    # S1 is elected in term 4 and replicates index 2 (term 2) to S3 but not its own entry 3.
    c.node(1).campaign()

    def would_accept_entry3(m: Message) -> bool:
        if c.nodes[m.to] is None:
            return False
        log = c.node(m.to).raft.raft_log
        return (
            m.type == MT.APP
            and any(e.index >= 3 for e in m.entries)
            and log.match_term(m.index, m.log_term)
        )

    for _ in range(50):
        c.process_all()
        c.drop_where(would_accept_entry3)
        if not c.deliver_all():
            break
    assert c.node(1).state == L
    assert c.node(1).term == 4
    assert [t for _, t in log_terms(c, 3)] == [1, 2]  # index 2 is on a majority (S1, S2, S3)
    assert commit_index(c, 1) == 1  # ...but it is from an older term: not committed
    # S1 crashes; S5 (last term 3) wins with S2, S3, S4 and overwrites index 2.
    c.crash(1)
    c.restart(5)
    c.node(5).campaign()  # term 4: loses (everyone already voted in term 4)
    c.stabilize()
    c.node(5).campaign()  # term 5: wins with S2, S3 and S4 (its last term 3 beats their 2)
    c.stabilize()
    assert c.node(5).state == L
    assert c.node(5).term == 5
    for i in (2, 3, 4, 5):
        assert log_terms(c, i)[:2] == [(1, 1), (2, 3)]
        assert commit_index(c, i) == 3


def test_log_conflict_repair_with_fast_backtracking() -> None:
    c = cluster([1, 2, 3, 4, 5], pre_vote=False, check_quorum=False)
    leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    _preset(c, 1, leader_log, HardState(term=7, commit=3))
    _preset(c, 2, [1, 1, 1, 4, 4, 5, 5, 6, 6], HardState(term=6, commit=3))  # missing one
    _preset(c, 3, [1, 1, 1, 4], HardState(term=6, commit=3))  # far behind
    _preset(c, 4, [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3] + [3] * 40, HardState(term=6, commit=3))
    _preset(c, 5, [1, 1, 1, 4, 4, 4, 4], HardState(term=6, commit=3))  # extra uncommitted
    rejections: list[int] = []
    c.log = lambda line: (
        rejections.append(1) if "MsgAppResp" in line and "Rejected" in line else None
    )
    c.node(1).campaign()
    c.stabilize()
    assert c.node(1).state == L
    want = log_terms(c, 1)
    assert len(want) == 11
    for i in (2, 3, 4, 5):
        assert log_terms(c, i) == want, i
    # Node 4's 51 conflicting entries are skipped a term at a time, not one by one.
    assert len(rejections) <= 8


def test_slow_follower_after_compaction_gets_snapshot() -> None:
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.isolate(3)
    for i in range(30):
        assert c.propose(1, b"e%d" % i)
        c.stabilize()
    c.compact(1)
    c.compact(2)
    assert c.storage[1].first_index() > 10
    c.heal()
    c.tick_all(3)
    assert c.sent.get(MT.SNAP, 0) >= 1
    assert c.sm[3].payloads == c.sm[1].payloads
    assert c.sm[3].applied_index == c.sm[1].applied_index
    assert c.propose(1, b"after")
    c.stabilize()
    assert c.sm[3].payloads[-1] == b"after"


def test_flow_control_limits_inflight_messages() -> None:
    c = cluster([1, 2], max_size_per_msg=1, max_inflight_msgs=3)
    elect(c, 1)
    c.isolate(2)
    c.heal()
    for i in range(10):
        c.propose(1, b"x%d" % i)
    c.process_ready(1)
    apps = [m for m in c.net if m.type == MT.APP and m.to == 2]
    assert len(apps) == 3  # the window is full
    assert all(len(m.entries) == 1 for m in apps)
    c.stabilize()
    assert len(c.sm[2].payloads) == 10


# -- membership --------------------------------------------------------------------------------


def test_learner_add_and_promote() -> None:
    c = cluster([1, 2, 3], spares=[4])
    elect(c, 1)
    c.propose(1, b"before")
    assert c.propose_conf_change(1, ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4))
    c.stabilize()
    cs = c.node(1).raft.trk.conf_state()
    assert cs.voters == [1, 2, 3]
    assert cs.learners == [4]
    assert c.sm[4].payloads == [b"before"]
    # A learner never campaigns, and it is not needed for commitment.
    c.isolate(4)
    c.tick(4, 50)
    c.stabilize()
    assert c.node(4).state == F
    assert c.node(4).term == 1
    c.heal()
    assert c.propose_conf_change(1, ConfChange(ConfChangeType.ADD_NODE, 4))
    c.stabilize()
    c.tick_all(1)
    assert c.node(1).raft.trk.conf_state().voters == [1, 2, 3, 4]
    assert c.sm[4].conf_state.voters == [1, 2, 3, 4]
    # Now commitment needs 3 of 4.
    c.crash(2)
    c.crash(3)
    c.propose(1, b"needs-4")
    c.stabilize()
    assert b"needs-4" not in c.sm[1].payloads
    c.restart(2)
    c.tick_all(2)
    assert b"needs-4" in c.sm[1].payloads


def test_learner_that_became_voter_must_vote() -> None:
    """etcd PR #10998 / campaign_learner_must_vote.txt."""
    c = cluster([1, 2], learners=[3])
    elect(c, 1)
    c.tick_all(1)
    c.isolate(3)
    assert c.propose_conf_change(1, ConfChange(ConfChangeType.ADD_NODE, 3))
    c.stabilize()
    assert c.sm[2].conf_state.voters == [1, 2, 3]  # applied by 1 and 2, unknown to 3
    assert c.sm[3].conf_state.learners == [3]
    c.crash(1)
    c.heal()
    for _ in range(12):  # node 3's lease expires (it no longer hears node 1)
        c.tick(3)
    c.node(2).campaign()  # needs 2 of {1,2,3}: its own vote and node 3's
    c.stabilize()
    assert c.node(2).state == L
    c.stabilize()
    assert c.sm[3].conf_state.voters == [1, 2, 3]


def test_one_conf_change_at_a_time() -> None:
    c = cluster([1, 2, 3], spares=[4, 5])
    elect(c, 1)
    c.isolate(2)
    c.isolate(3)
    assert c.propose_conf_change(1, ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4))
    with pytest.raises(ProposalDropped):
        c.node(1).propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER_NODE, 5))
    c.heal()
    c.stabilize()
    assert c.propose_conf_change(1, ConfChange(ConfChangeType.ADD_LEARNER_NODE, 5))
    c.stabilize()
    assert c.node(1).raft.trk.conf_state().learners == [4, 5]


def test_add_and_remove_members_including_the_leader() -> None:
    c = cluster([1, 2, 3], spares=[4], timeout_offsets={2: 0, 3: 4, 4: 7})
    elect(c, 1)
    assert c.propose_conf_change(1, ConfChange(ConfChangeType.ADD_NODE, 4))
    c.stabilize()
    assert c.node(1).raft.trk.conf_state().voters == [1, 2, 3, 4]
    assert c.propose_conf_change(1, ConfChange(ConfChangeType.REMOVE_NODE, 3))
    c.stabilize()
    assert all(c.sm[i].conf_state.voters == [1, 2, 4] for i in (1, 2, 4))
    # Remove the leader itself: it steps down once it applies the change.
    assert c.propose(1, b"last-from-1")
    assert c.propose_conf_change(1, ConfChange(ConfChangeType.REMOVE_NODE, 1))
    c.stabilize()
    assert c.node(1).state == F
    tick_until(c, lambda: c.leader() in (2, 4))
    lead = c.leader()
    assert lead is not None
    assert c.node(lead).raft.trk.conf_state().voters == [2, 4]
    assert c.propose(lead, b"after-removal")
    c.stabilize()
    assert c.sm[2].payloads == c.sm[4].payloads == [b"last-from-1", b"after-removal"]
    # The removed nodes never campaign again.
    term = c.node(lead).term
    c.tick_all(50)
    assert c.node(1).state == F
    assert c.node(lead).term == term


def test_joint_consensus_replace_voter() -> None:
    from coord.server.raft import ConfChangeV2

    c = cluster([1, 2, 3], spares=[4])
    elect(c, 1)
    cc = ConfChangeV2(
        changes=[
            ConfChange(ConfChangeType.ADD_NODE, 4),
            ConfChange(ConfChangeType.REMOVE_NODE, 3),
        ]
    )
    assert c.propose_conf_change(1, cc)
    c.stabilize()
    c.tick_all(2)  # auto-leave is proposed by the leader once the joint config is applied
    cs = c.node(1).raft.trk.conf_state()
    assert cs.voters == [1, 2, 4]
    assert cs.voters_outgoing == []
    assert all(c.sm[i].conf_state.voters == [1, 2, 4] for i in (1, 2, 4))


# -- leadership transfer -----------------------------------------------------------------------


def test_leader_transfer() -> None:
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.node(1).transfer_leader(2)
    c.stabilize()
    assert c.node(2).state == L
    assert c.node(2).term == 2
    assert c.node(1).state == F
    assert c.node(1).lead == 2


def test_leader_transfer_requested_on_a_follower_is_forwarded() -> None:
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.node(2).transfer_leader(3)  # asked on node 2, for node 3
    c.stabilize()
    assert c.node(3).state == L
    assert c.node(3).term == 2


def test_leader_transfer_to_lagging_follower_catches_it_up_first() -> None:
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.isolate(3)
    for i in range(5):
        c.propose(1, b"x%d" % i)
    c.stabilize()
    c.heal()
    c.node(1).transfer_leader(3)
    c.stabilize()
    assert c.node(3).state == L
    assert c.sm[3].payloads == [b"x%d" % i for i in range(5)]


def test_proposals_refused_while_transfer_pending_and_transfer_times_out() -> None:
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.isolate(2)
    c.node(1).transfer_leader(2)
    c.stabilize()
    assert c.node(1).raft.lead_transferee == 2
    with pytest.raises(ProposalDropped):
        c.node(1).propose(b"refused")
    c.tick(1, 10)  # one election timeout
    c.stabilize()
    assert c.node(1).raft.lead_transferee == 0
    assert c.propose(1, b"accepted")
    c.stabilize()
    assert c.sm[3].payloads == [b"accepted"]


def test_cannot_transfer_to_learner() -> None:
    c = cluster([1, 2], learners=[3])
    elect(c, 1)
    c.node(1).transfer_leader(3)
    c.stabilize()
    assert c.node(1).state == L
    assert c.node(1).raft.lead_transferee == 0


# -- ReadIndex ---------------------------------------------------------------------------------


def test_read_index_on_leader_and_follower() -> None:
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.propose(1, b"a")
    c.stabilize()
    r1 = c.read_index(1)
    r2 = c.read_index(2)
    c.stabilize()
    assert c.reads_done[r1] == commit_index(c, 1) == 2
    assert c.reads_done[r2] == 2


def test_read_index_waits_for_new_leader_to_commit_in_its_term() -> None:
    c = cluster([1, 2, 3])
    elect(c, 1)
    c.node(2).campaign()  # a new leader in term 2 (pre-vote passes: 1 and 3 are out of lease?)
    c.stabilize()
    c.tick_all(12)
    lead = c.leader()
    assert lead is not None
    # Block everything so the new leader's empty entry cannot commit, then ask for a read.
    c.node(lead).raft.raft_log.committed  # noqa: B018
    for other in c.nodes:
        if other != lead:
            c.cut.update({(lead, other), (other, lead)})
    c.node(lead).campaign()  # no-op for a leader
    ctx = c.read_index(lead)
    c.stabilize()
    assert ctx not in c.reads_done
    c.heal()
    c.tick_all(2)
    assert c.reads_done[ctx] >= 1


def test_read_index_on_deposed_leader_never_succeeds() -> None:
    # Without check-quorum the isolated leader keeps believing it leads.
    c = cluster([1, 2, 3], check_quorum=False, pre_vote=False, timeout_offsets={2: 0, 3: 5})
    elect(c, 1)
    c.isolate(1)
    tick_until(c, lambda: c.node(2).state == L, ids=[2, 3])
    assert c.propose(2, b"new-leader-write")
    c.stabilize()
    assert c.node(1).state == L  # deposed but unaware
    ctxs = [c.read_index(1) for _ in range(3)]
    for _ in range(20):
        c.tick(1)
        c.stabilize()
    assert not any(ctx in c.reads_done for ctx in ctxs)
    c.heal()
    c.tick_all(3)
    assert c.node(1).state == F
    # Even after healing, the old requests never produce read states (they were dropped).
    assert not any(ctx in c.reads_done for ctx in ctxs)
    fresh = c.read_index(1)  # a retry uses a fresh context and goes to the new leader
    c.stabilize()
    assert c.reads_done[fresh] >= 3
