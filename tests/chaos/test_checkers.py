"""The checkers on small hand-made histories: each must pass the good ones and catch the bad."""

from __future__ import annotations

import math
import random
import time

from .history import FAIL, OK, UNKNOWN, History, Op
from .leasesafety import check_leases
from .linearizable import check_register
from .locksafety import check_locks
from .watchguarantees import check_watch
from .workloads import KeepAlive, LeaseRecord, WatchedEvent, WatchedResponse, WatchSegment


def op(
    p: int,
    f: str,
    value: object,
    t0: float,
    t1: float | None,
    outcome: str = OK,
    result: object = None,
    key: str = "k",
) -> Op:
    return Op(p, f, key, value, t0, math.inf if t1 is None else t1, outcome, result)


def lin(*ops: Op) -> bool:
    h = History()
    for o in ops:
        h.add(o)
    return check_register(h.ops).ok


# -- linearizability ---------------------------------------------------------------------


def test_sequential_register_passes() -> None:
    assert lin(
        op(0, "put", "a", 0, 1),
        op(0, "get", None, 2, 3, result="a"),
        op(1, "cas", ("a", "b"), 4, 5, result=True),
        op(0, "get", None, 6, 7, result="b"),
    )


def test_stale_read_fails() -> None:
    assert not lin(
        op(0, "put", "a", 0, 1), op(0, "put", "b", 2, 3), op(1, "get", None, 4, 5, result="a")
    )


def test_read_of_never_written_value_fails() -> None:
    assert not lin(op(0, "put", "a", 0, 1), op(1, "get", None, 2, 3, result="zzz"))


def test_concurrent_reads_may_see_either() -> None:
    base = (op(0, "put", "a", 0, 1), op(0, "put", "b", 2, 9))
    assert lin(*base, op(1, "get", None, 3, 4, result="b"), op(2, "get", None, 3, 4, result="a"))
    # but once a read returned the new value, a read that starts later cannot see the old one
    assert not lin(
        *base, op(1, "get", None, 3, 4, result="b"), op(2, "get", None, 5, 6, result="a")
    )


def test_unknown_write_may_or_may_not_have_happened() -> None:
    seen = (
        op(0, "put", "a", 0, 1),
        op(1, "put", "x", 2, None, UNKNOWN),
        op(0, "get", None, 10, 11, result="x"),
    )
    unseen = (
        op(0, "put", "a", 0, 1),
        op(1, "put", "x", 2, None, UNKNOWN),
        op(0, "get", None, 10, 11, result="a"),
    )
    assert lin(*seen)
    assert lin(*unseen)
    # once read, it happened: a later read cannot go back to the older value
    assert not lin(*seen, op(0, "get", None, 12, 13, result="a"))


def test_failed_write_did_not_happen() -> None:
    assert not lin(
        op(0, "put", "a", 0, 1),
        op(1, "put", "x", 2, 3, FAIL),
        op(0, "get", None, 10, 11, result="x"),
    )


def test_read_before_invoke_of_write_fails() -> None:
    assert not lin(op(0, "get", None, 0, 1, result="x"), op(1, "put", "x", 2, None, UNKNOWN))


def test_cas_results_are_checked() -> None:
    assert not lin(
        op(0, "put", "a", 0, 1),
        op(1, "cas", ("a", "b"), 2, 3, result=False),
        op(0, "get", None, 4, 5, result="a"),
    )
    assert not lin(op(0, "put", "a", 0, 1), op(1, "cas", ("z", "b"), 2, 3, result=True))
    assert lin(
        op(0, "cas", (None, "a"), 0, 1, result=True),
        op(1, "cas", (None, "b"), 2, 3, result=False),
        op(0, "get", None, 4, 5, result="a"),
    )


def test_keys_are_independent() -> None:
    assert lin(op(0, "put", "a", 0, 1, key="k1"), op(0, "get", None, 2, 3, result=None, key="k2"))
    assert not lin(
        op(0, "put", "a", 0, 1, key="k1"), op(0, "get", None, 2, 3, result="a", key="k2")
    )


def test_violation_is_explained() -> None:
    h = History()
    for o in (
        op(0, "put", "a", 0, 1),
        op(0, "put", "b", 2, 3),
        op(1, "get", None, 4, 5, result="a"),
    ):
        h.add(o)
    res = check_register(h.ops)
    assert not res.ok
    assert "NOT linearizable" in str(res)
    assert "get" in str(res)


def test_a_few_thousand_ops_are_fast() -> None:
    """A valid concurrent history, 4 processes, 3000 ops, some unknown writes: < 10 s."""
    rng = random.Random(7)
    h = History()
    state: str | None = None
    t = 0.0
    n = 0
    pending_unknown = 0
    for i in range(3000):
        # a sequential schedule whose intervals overlap their neighbours a little
        p = i % 4
        t += 1.0
        r = rng.random()
        if r < 0.4:
            h.add(op(p, "get", None, t - 0.4, t + 0.4, result=state))
        elif r < 0.95 or pending_unknown > 3:
            n += 1
            state = f"v{n}"
            h.add(op(p, "put", state, t - 0.4, t + 0.4))
        else:
            n += 1
            pending_unknown += 1
            h.add(op(p, "put", f"lost{n}", t - 0.4, None, UNKNOWN))
    start = time.monotonic()
    res = check_register(h.ops)
    assert res.ok, str(res)
    assert time.monotonic() - start < 10


# -- lock safety -----------------------------------------------------------------------


def grant(pid: int, token: int, start: float, end: float) -> dict[str, object]:
    return {"pid": pid, "token": token, "start": start, "end": end}


def write(t: float, token: int, accepted: bool = True) -> dict[str, object]:
    return {"t": t, "pid": 1, "token": token, "value": "v", "accepted": accepted}


def test_lock_sequential_grants_pass() -> None:
    res = check_locks(
        [grant(1, 10, 0, 1), grant(2, 12, 1.5, 2), grant(1, 15, 3, 4)],
        [write(0.5, 10), write(1.6, 12), write(1.7, 10, False), write(3.5, 15)],
    )
    assert res.ok, str(res)
    assert (res.writes_accepted, res.writes_rejected) == (3, 1)


def test_lock_two_holders_fail() -> None:
    res = check_locks([grant(1, 10, 0, 5), grant(2, 12, 3, 6)], [])
    assert not res.ok
    assert "two holders" in str(res)


def test_lock_stale_grant_and_token_fail() -> None:
    res = check_locks([grant(1, 10, 0, 1), grant(2, 8, 2, 3)], [])
    assert not res.ok
    assert "stale grant" in str(res)
    res = check_locks([grant(1, 10, 0, 1)], [write(0.5, 12), write(0.7, 10)])
    assert not res.ok
    assert "stale token accepted" in str(res)


def test_lock_duplicate_token_fails() -> None:
    res = check_locks([grant(1, 10, 0, 1), grant(2, 10, 0.5, 2)], [])
    assert not res.ok
    assert "duplicate token" in str(res)


# -- lease safety ----------------------------------------------------------------------


def lease(lid: int, key: str, sent: float, ttl: int = 3) -> LeaseRecord:
    return LeaseRecord(lid, key, ttl, sent, True)


def test_lease_expiry_after_keepalives_stop_passes() -> None:
    kas = [KeepAlive(1, 1.0, 1.01, 3), KeepAlive(1, 2.0, 2.01, 3)]
    assert check_leases([lease(1, "/l1", 0.0)], kas, {"/l1": 5.5}).ok


def test_lease_deleted_while_kept_alive_fails() -> None:
    kas = [KeepAlive(1, 1.0, 1.01, 3), KeepAlive(1, 4.0, 4.01, 3)]
    res = check_leases([lease(1, "/l1", 0.0)], kas, {"/l1": 5.0})
    assert not res.ok
    assert "early deletion" in str(res)


def test_lease_alive_after_revoke_fails() -> None:
    kas = [KeepAlive(1, 1.0, 1.01, 3), KeepAlive(1, 6.0, 6.01, 3)]
    res = check_leases([lease(1, "/l1", 0.0)], kas, {"/l1": 4.5})
    assert not res.ok
    assert "alive after revoke" in str(res)


def test_live_lease_reported_lost_fails() -> None:
    res = check_leases([lease(1, "/l1", 0.0)], [KeepAlive(1, 1.0, 1.01, 0)], {})
    assert not res.ok
    assert "reported lost" in str(res)
    assert check_leases([lease(1, "/l1", 0.0)], [KeepAlive(1, 3.5, 3.51, 0)], {}).ok


def test_keepalive_answered_after_the_promise_may_report_lost() -> None:
    """Chaos seed 12: a keep-alive sent at 25.7 s through a follower SIGSTOPped from 25.24 s to
    28.40 s reached the leader after the lease's deadline (27.7 s) and rightly returned TTL 0;
    the lease's key had been deleted at 27.7 s."""
    kas = [KeepAlive(1, 24.7, 24.71, 3), KeepAlive(1, 25.7, 28.45, 0)]
    assert check_leases([lease(1, "/l1", 24.0)], kas, {"/l1": 27.75}).ok


def test_lease_reported_lost_but_kept_alive_fails() -> None:
    """Bug 4: a paused leader answers TTL 0 after the deadline it knew, but the next leader
    had extended the lease: its key is deleted seconds after the answer."""
    kas = [KeepAlive(1, 1.0, 1.01, 3), KeepAlive(1, 2.0, 4.2, 0)]
    res = check_leases([lease(1, "/l1", 0.0)], kas, {"/l1": 7.5})
    assert not res.ok
    assert "deleted only later" in str(res)


# -- watch guarantees ------------------------------------------------------------------


def put(
    key: str,
    value: str,
    rev: int,
    create: int,
    version: int,
    prev: tuple[str, int, int, int] | None,
) -> WatchedEvent:
    return WatchedEvent("PUT", key, value, rev, create, version, prev)


def delete(key: str, rev: int, prev: tuple[str, int, int, int]) -> WatchedEvent:
    return WatchedEvent("DELETE", key, "", rev, 0, 0, prev)


E2 = put("/a", "1", 2, 2, 1, None)
E3 = put("/a", "2", 3, 2, 2, ("1", 2, 2, 1))
E4a = put("/b", "x", 4, 4, 1, None)
E4b = put("/c", "y", 4, 4, 1, None)
E5 = delete("/a", 5, ("2", 3, 2, 2))
E6 = put("/a", "3", 6, 6, 1, None)
REF = [E2, E3, E4a, E4b, E5, E6]


def seg(start: int, *batches: tuple[WatchedEvent, ...], ended: str = "resume") -> WatchSegment:
    s = WatchSegment(start, ended=ended)
    for b in batches:
        s.responses.append(WatchedResponse(0.0, b[-1].mod_revision, b))
    return s


def wcheck(*segments: WatchSegment) -> list[str]:
    return check_watch("w", list(segments), REF, (1, 6), acked=[("/a", "3", 6)]).violations


def test_watch_complete_stream_passes() -> None:
    assert wcheck(seg(1, (E2,), (E3,), (E4a, E4b), (E5,), (E6,))) == []


def test_watch_resumed_without_gap_passes() -> None:
    assert wcheck(seg(1, (E2,), (E3,)), seg(4, (E4a, E4b), (E5, E6))) == []


def test_watch_gap_fails() -> None:
    assert any("reliable" in v for v in wcheck(seg(1, (E2,), (E3,)), seg(5, (E5,), (E6,))))


def test_watch_missing_acked_write_fails() -> None:
    ref = REF[:-1]
    got = check_watch(
        "w",
        [seg(1, (E2,), (E3,), (E4a, E4b), (E5,)), seg(6, (put("/z", "q", 7, 7, 1, None),))],
        ref,
        (1, 5),
        acked=[("/a", "3", 6)],
    ).violations
    assert any("acknowledged put /a=3@6" in v for v in got)


def test_watch_duplicate_and_disorder_fail() -> None:
    assert any(
        "unique" in v for v in wcheck(seg(1, (E2,), (E3,)), seg(3, (E3,), (E4a, E4b), (E5,), (E6,)))
    )
    assert any("ordered" in v for v in wcheck(seg(1, (E2,), (E4a, E4b), (E3,), (E5,), (E6,))))


def test_watch_split_revision_fails() -> None:
    assert any("atomic" in v for v in wcheck(seg(1, (E2,), (E3,), (E4a,), (E4b,), (E5,), (E6,))))
    # half a revision, the rest never delivered
    assert any("atomic" in v for v in wcheck(seg(1, (E2,), (E3,), (E4a,), (E5,), (E6,))))


def test_watch_wrong_prev_kv_fails() -> None:
    bad = put("/a", "2", 3, 2, 2, ("0", 1, 1, 1))
    assert any("prev_kv" in v for v in wcheck(seg(1, (E2,), (bad,), (E4a, E4b), (E5,), (E6,))))


def test_watch_compaction_gap_is_excused() -> None:
    assert wcheck(seg(1, (E2,), ended="compacted:4"), seg(4, (E4a, E4b), (E5,), (E6,))) == []
