"""Unit and property tests of the Raft building blocks: storage, log, progress, quorum,
conf-change codec and changer, and the public API surface."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

import coord.server.raft as raft
from coord.server.raft import (
    CompactedError,
    ConfChange,
    ConfChangeError,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    MemoryStorage,
    UnavailableError,
    decode_conf_change,
    encode_conf_change,
)
from coord.server.raft.confchange import Changer, restore
from coord.server.raft.inflights import Inflights
from coord.server.raft.log import RaftLog
from coord.server.raft.progress import Progress, ProgressState, ProgressTracker
from coord.server.raft.quorum import (
    VoteResult,
    joint_committed_index,
    majority_committed_index,
    majority_vote_result,
)

# -- public API ---------------------------------------------------------------------------------


def test_public_api_is_pinned() -> None:
    assert sorted(raft.__all__) == sorted(
        [
            "CompactedError", "ConfChange", "ConfChangeError", "ConfChangeType",
            "ConfChangeV2", "ConfState", "Entry", "EntryType", "HardState", "MemoryStorage",
            "Message", "MessageType", "Progress", "ProgressState", "ProposalDropped",
            "RaftConfig", "RaftError", "RawNode", "ReadState",
            "Ready", "Snapshot", "SnapshotMetadata", "SnapshotOutOfDateError",
            "SnapshotTemporarilyUnavailable", "SoftState", "StateType", "Status", "Storage",
            "UnavailableError", "decode_conf_change", "encode_conf_change",
        ]
    )  # fmt: skip
    for name in raft.__all__:
        assert hasattr(raft, name), name


def test_message_type_values_match_contract() -> None:
    assert [m.value for m in raft.MessageType] == list(range(19))
    # (member, the contract's number): each IntEnum member compares equal to its number
    contract: list[tuple[int, int]] = [
        (raft.MessageType.PRE_VOTE_RESP, 18),
        (raft.EntryType.CONF_CHANGE, 1),
        (raft.ConfChangeType.ADD_LEARNER_NODE, 3),
    ]
    for member, number in contract:
        assert member == number, member


# -- conf-change codec -------------------------------------------------------------------------

single = st.builds(
    ConfChange,
    st.sampled_from(list(ConfChangeType)),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=20),
)


@given(single)
def test_conf_change_codec_roundtrip(cc: ConfChange) -> None:
    assert decode_conf_change(encode_conf_change(cc)) == cc


@given(
    st.builds(ConfChangeV2, st.lists(single, max_size=5), st.integers(0, 2), st.binary(max_size=9))
)
def test_conf_change_v2_codec_roundtrip(cc: ConfChangeV2) -> None:
    assert decode_conf_change(encode_conf_change(cc)) == cc


@given(st.binary(max_size=40))
def test_conf_change_decode_never_crashes_unexpectedly(data: bytes) -> None:
    try:
        decode_conf_change(data)
    except ValueError:
        pass


def test_conf_change_decode_rejects_truncation() -> None:
    data = encode_conf_change(ConfChange(ConfChangeType.ADD_NODE, 7, b"ctx"))
    for cut in range(len(data)):
        with pytest.raises(ValueError, match=r"."):
            decode_conf_change(data[:cut])
    with pytest.raises(ValueError, match="trailing"):
        decode_conf_change(data + b"x")


# -- MemoryStorage -------------------------------------------------------------------------------


def ents(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(term=t, index=start + i) for i, t in enumerate(terms)]


def test_memory_storage_append_compact_and_bounds() -> None:
    s = MemoryStorage()
    s.append(ents(1, 1, 2, 3))
    assert (s.first_index(), s.last_index()) == (1, 4)
    s.append(ents(4, 4, start=3))  # truncates the conflicting suffix
    assert [e.term for e in s.entries(1, 5)] == [1, 1, 4, 4]
    s.compact(2)
    assert s.first_index() == 3
    assert s.term(2) == 1
    with pytest.raises(CompactedError):
        s.term(1)
    with pytest.raises(CompactedError):
        s.entries(2, 3)
    with pytest.raises(UnavailableError):
        s.entries(3, 6)
    with pytest.raises(CompactedError):
        s.compact(2)
    s._check()


def test_memory_storage_append_extends_in_place() -> None:
    # an append costs O(its entries), not O(the log): the log is not copied (it grows to
    # --snapshot-count entries, and copying it made every Put slower as it grew)
    s = MemoryStorage()
    s.append(ents(*[1] * 1000))
    log = s._ents
    s.append(ents(1, start=1001))
    s.append(ents(2, 2, start=1000))  # a conflicting suffix is cut in place too
    assert s._ents is log
    assert [e.term for e in s.entries(998, 1002)] == [1, 1, 2, 2]
    s._check()


def test_memory_storage_entries_max_bytes_returns_at_least_one() -> None:
    s = MemoryStorage()
    s.append([Entry(term=1, index=i, data=b"x" * 100) for i in range(1, 6)])
    assert len(s.entries(1, 6, max_bytes=1)) == 1
    assert len(s.entries(1, 6, max_bytes=250)) == 2
    assert len(s.entries(1, 6)) == 5


def test_memory_storage_snapshot() -> None:
    s = MemoryStorage(ConfState(voters=[1, 2, 3]))
    s.append(ents(1, 1, 2))
    snap = s.create_snapshot(2, None, b"state")
    assert snap.metadata.term == 1
    assert snap.metadata.conf_state.voters == [1, 2, 3]
    t = MemoryStorage()
    t.apply_snapshot(snap)
    assert (t.first_index(), t.last_index(), t.term(2)) == (3, 2, 1)
    assert t.initial_state()[1].voters == [1, 2, 3]
    with pytest.raises(raft.SnapshotOutOfDateError):
        t.apply_snapshot(snap)


# -- RaftLog -------------------------------------------------------------------------------------


def test_raft_log_unstable_and_stable_parts() -> None:
    s = MemoryStorage()
    s.append(ents(1, 1, 2))
    log = RaftLog(s)
    assert log.last_index() == 3
    assert log.maybe_append(3, 2, 3, ents(3, 3, start=4)) == 5
    assert log.committed == 3
    assert [e.index for e in log.unstable_entries()] == [4, 5]
    # A conflicting append at 3 is refused: 3 is committed.
    with pytest.raises(AssertionError):
        log.maybe_append(2, 1, 3, ents(9, start=3))
    # Conflict in the unstable part truncates it.
    assert log.maybe_append(4, 3, 3, ents(5, start=5)) == 5
    assert log.term(5) == 5
    assert log.maybe_append(4, 9, 3, []) is None  # mismatch
    log._check()


def test_raft_log_find_conflict_by_term() -> None:
    s = MemoryStorage()
    s.append(ents(1, 1, 2, 2, 2, 5, 5))
    log = RaftLog(s)
    assert log.find_conflict_by_term(7, 4) == (5, 2)
    assert log.find_conflict_by_term(7, 5) == (7, 5)
    assert log.find_conflict_by_term(3, 1) == (2, 1)
    assert log.find_conflict_by_term(7, 0) == (0, 0)


def test_raft_log_maybe_commit_requires_current_term() -> None:
    s = MemoryStorage()
    s.append(ents(1, 2, 3))
    log = RaftLog(s)
    assert not log.maybe_commit(2, 3)  # entry 2 is from term 2 (Figure 8)
    assert log.maybe_commit(3, 3)
    assert log.committed == 3


def test_raft_log_next_committed_entries_respects_size_and_snapshot() -> None:
    s = MemoryStorage()
    s.append([Entry(term=1, index=i, data=b"y" * 50) for i in range(1, 6)])
    log = RaftLog(s, max_next_ents_size=100)
    log.commit_to(5)
    assert [e.index for e in log.next_committed_ents()] == [1]
    log.applied_to(1)
    assert [e.index for e in log.next_committed_ents()] == [2]


# -- Progress / Inflights -------------------------------------------------------------------------


def test_inflights_window() -> None:
    inf = Inflights(3, max_bytes=0)
    for i in (5, 7, 9):
        inf.add(i, 10)
    assert inf.full()
    inf.free_le(7)
    assert len(inf) == 1
    assert inf.bytes == 10
    inf._check()
    b = Inflights(10, max_bytes=25)
    b.add(1, 20)
    assert not b.full()
    b.add(2, 20)
    assert b.full()


def test_progress_state_transitions() -> None:
    pr = Progress(6, 2)
    pr.match = 5
    assert not pr.is_paused()
    pr.sent_entries(1, 10, 6)
    assert pr.is_paused()  # probe: one in flight
    assert pr.maybe_update(6)
    pr.become_replicate()
    pr.sent_entries(2, 10, 8)
    pr.sent_entries(1, 10, 9)
    assert pr.is_paused()  # window of 2 is full
    assert pr.next == 10
    pr.inflights.free_le(8)
    assert not pr.is_paused()
    assert pr.maybe_decr_to(9, 6)
    assert pr.next == 7  # replicate falls back to match+1
    pr.become_snapshot(20)
    assert pr.state == ProgressState.SNAPSHOT
    assert pr.is_paused()
    pr.become_probe()
    assert pr.next == 21
    pr._check()


def test_progress_probe_ignores_stale_rejections() -> None:
    pr = Progress(10, 4)
    assert not pr.maybe_decr_to(5, 3)  # we did not probe at 5
    assert pr.maybe_decr_to(9, 3)
    assert pr.next == 4


# -- quorum (properties) ---------------------------------------------------------------------------

ids = st.sets(st.integers(1, 9), min_size=1, max_size=7)


@given(ids, st.dictionaries(st.integers(1, 9), st.integers(0, 100)))
def test_majority_committed_index_is_acked_by_a_majority(
    voters: set[int], acks: dict[int, int]
) -> None:
    idx = majority_committed_index(voters, lambda v: acks.get(v, 0))
    assert sum(1 for v in voters if acks.get(v, 0) >= idx) > len(voters) // 2
    # ...and no larger index is.
    assert sum(1 for v in voters if acks.get(v, 0) >= idx + 1) <= len(voters) // 2


@given(ids, ids, st.dictionaries(st.integers(1, 9), st.integers(0, 100)))
def test_joint_committed_index_is_min(a: set[int], b: set[int], acks: dict[int, int]) -> None:
    f = lambda v: acks.get(v, 0)  # noqa: E731
    assert joint_committed_index((a, b), f) == min(
        majority_committed_index(a, f), majority_committed_index(b, f)
    )


@given(ids, st.dictionaries(st.integers(1, 9), st.booleans()))
def test_majority_vote_result(voters: set[int], votes: dict[int, bool]) -> None:
    res = majority_vote_result(voters, votes)
    yes = sum(1 for v in voters if votes.get(v) is True)
    no = sum(1 for v in voters if votes.get(v) is False)
    q = len(voters) // 2 + 1
    if res == VoteResult.WON:
        assert yes >= q
    elif res == VoteResult.LOST:
        assert no > len(voters) - q
    else:
        assert yes < q
        assert no <= len(voters) - q


# -- confchange ----------------------------------------------------------------------------------


def tracker(voters: list[int], learners: Sequence[int] = ()) -> ProgressTracker:
    return restore(ProgressTracker(8), ConfState(voters=voters, learners=list(learners)), 10)


def test_simple_change_allows_one_voter_at_a_time() -> None:
    t = tracker([1, 2, 3])
    nt = Changer(t, 10).simple([ConfChange(ConfChangeType.ADD_NODE, 4)])
    assert nt.conf_state().voters == [1, 2, 3, 4]
    with pytest.raises(ConfChangeError):
        Changer(t, 10).simple(
            [ConfChange(ConfChangeType.ADD_NODE, 4), ConfChange(ConfChangeType.ADD_NODE, 5)]
        )
    with pytest.raises(ConfChangeError):
        Changer(tracker([1]), 10).simple([ConfChange(ConfChangeType.REMOVE_NODE, 1)])
    assert t.conf_state().voters == [1, 2, 3]  # the original is untouched


def test_joint_enter_and_leave_with_demotion() -> None:
    t = tracker([1, 2, 3])
    nt = Changer(t, 10).enter_joint(
        True,
        [ConfChange(ConfChangeType.ADD_LEARNER_NODE, 3), ConfChange(ConfChangeType.ADD_NODE, 4)],
    )
    cs = nt.conf_state()
    assert cs.voters == [1, 2, 4]
    assert cs.voters_outgoing == [1, 2, 3]
    assert cs.learners_next == [3]
    assert cs.auto_leave
    # Restoring the ConfState gives the same configuration.
    assert restore(ProgressTracker(8), cs, 10).conf_state() == cs
    with pytest.raises(ConfChangeError):
        Changer(nt, 10).enter_joint(False, [])
    left = Changer(nt, 10).leave_joint().conf_state()
    assert left.voters == [1, 2, 4]
    assert left.learners == [3]
    assert left.voters_outgoing == []
    assert left.learners_next == []


@given(st.lists(st.tuples(st.sampled_from(list(ConfChangeType)), st.integers(1, 6)), max_size=12))
def test_changer_preserves_invariants(ops: list[tuple[ConfChangeType, int]]) -> None:
    t = tracker([1, 2, 3])
    for typ, id_ in ops:
        try:
            t = Changer(t, 10).simple([ConfChange(typ, id_)])
        except ConfChangeError:
            continue
        t._check()
        cs = t.conf_state()
        assert cs.voters
        assert restore(ProgressTracker(8), cs, 10).conf_state() == cs
