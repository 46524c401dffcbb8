"""In-process units: commands, wire validation, leases, state machine, config, CLI parser."""

from __future__ import annotations

import betterproto2
import pytest

from coord._pb import etcdserverpb as pb
from coord._protowire import encode_varint as varint
from coord.errors import (
    InvalidArgumentError,
    LeaderChangedError,
    LeaseExistsError,
    LeaseNotFoundError,
    NoSpaceError,
)
from coord.server.api.common import encode_header, header_field, parse
from coord.server.api.kv import check_txn, txn_is_read_only
from coord.server.api.pbcheck import check_message
from coord.server.command import Kind, decode, encode, make_result, split_result
from coord.server.config import Config, parse_initial_cluster
from coord.server.lease import LeaseIdGenerator, LeaseTimer, Lessor, min_lease_ttl
from coord.server.main import build_parser, config_from_args
from coord.server.mvcc import KVStore
from coord.server.statemachine import StateMachine


# -- command & wire ------------------------------------------------------------------------
def test_command_roundtrip() -> None:
    cmd = encode(Kind.PUT, b"\x0a\x01k")
    assert decode(cmd) == (Kind.PUT, b"\x0a\x01k")
    assert split_result(make_result(12345, b"body")) == (12345, b"body")
    with pytest.raises(ValueError):
        decode(b"\xff")


def test_header_matches_betterproto() -> None:
    for ids in [(1, 2, 3, 4), (2**64 - 1, 2**63, 1, 0), (0, 0, 0, 0)]:
        ours = encode_header(*ids)
        ref = pb.ResponseHeader(
            cluster_id=ids[0], member_id=ids[1], revision=ids[2], raft_term=ids[3]
        )
        assert ours == bytes(ref)
        full = pb.RangeResponse.parse(header_field(ours) + b"\x20\x05")
        assert full.count == 5
        assert full.header == ref
    assert varint(-1) == b"\xff" * 9 + b"\x01"


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05ab",  # length past the end
        b"\x0a",  # truncated length
        b"\x08\xff",  # truncated varint
        b"\x0b\x01",  # group wire type
        b"\x00\x01",  # field 0
        b"\x18\x01\x0d\x00",  # fixed32 truncated
        b"\x0a\x01a\x18",  # tag without value
        b"\x1a\x01a",  # field 3 (limit, varint) sent as bytes
        b"garbage bytes!!",
    ],
)
def test_malformed_rejected(data: bytes) -> None:
    with pytest.raises(ValueError):
        check_message(data, pb.RangeRequest)
    with pytest.raises(InvalidArgumentError, match="coord: malformed RangeRequest"):
        parse(pb.RangeRequest, data)


def test_nested_malformed_rejected() -> None:
    good = bytes(pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"k"))]))
    check_message(good, pb.TxnRequest)
    bad = b"\x12\x04\x12\x02\x0a\x05"  # RequestOp > PutRequest with a key length past the end
    with pytest.raises(ValueError, match="field 1"):
        check_message(bad, pb.TxnRequest)


def test_well_formed_accepted() -> None:
    req = pb.RangeRequest(key=b"a", range_end=b"b", limit=3, revision=-1, keys_only=True)
    assert parse(pb.RangeRequest, bytes(req)) == req
    assert parse(pb.RangeRequest, b"\xa0\x06\x01\x0a\x01a").key == b"a"  # unknown field 100


def test_check_txn_counts_like_etcd() -> None:
    def put(k: bytes) -> pb.RequestOp:
        return pb.RequestOp(request_put=pb.PutRequest(key=k))

    check_txn(pb.TxnRequest(success=[put(b"a")] * 4), 4)
    with pytest.raises(InvalidArgumentError, match="too many operations"):
        check_txn(pb.TxnRequest(success=[put(b"a")] * 5), 4)
    nested = pb.TxnRequest(success=[put(b"x")] * 2)
    check_txn(pb.TxnRequest(success=[pb.RequestOp(request_txn=nested)] * 2), 4)
    with pytest.raises(InvalidArgumentError, match="too many operations"):
        check_txn(pb.TxnRequest(success=[pb.RequestOp(request_txn=nested)] * 3), 4)
    with pytest.raises(InvalidArgumentError, match="key not found"):
        check_txn(pb.TxnRequest(success=[pb.RequestOp()]), 4)
    with pytest.raises(InvalidArgumentError, match="key is not provided"):
        check_txn(pb.TxnRequest(compare=[pb.Compare()]), 4)
    rng = pb.RequestOp(request_range=pb.RangeRequest(key=b"a"))
    assert txn_is_read_only(pb.TxnRequest(success=[rng], failure=[rng]))
    assert not txn_is_read_only(pb.TxnRequest(success=[rng], failure=[put(b"a")]))


# -- leases ----------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lessor_grant_revoke_invariants() -> None:
    lessor = Lessor()
    lessor.grant(5, 10)
    with pytest.raises(LeaseExistsError):
        lessor.grant(5, 10)
    assert lessor.ttl(5) == 10
    assert lessor.exists(5)
    lessor._check()
    lessor.revoke(5)
    with pytest.raises(LeaseNotFoundError):
        lessor.revoke(5)
    lessor._check()


class Authority:
    """The term the timer may act for (the Raft state in the server); 0: not the leader."""

    def __init__(self) -> None:
        self.term = 0

    def __call__(self) -> int:
        return self.term


def test_timer_expiry_keepalive_promote() -> None:
    lessor, clock, auth = Lessor(), Clock(), Authority()
    timer = LeaseTimer(lessor, clock, auth, extend=1.0)
    lessor.grant(1, 5)
    assert not timer.active
    with pytest.raises(LeaderChangedError):  # follower: never answers from its timer
        timer.remaining(1)
    with pytest.raises(LeaderChangedError):
        timer.renew(1)
    assert timer.expired() == []
    timer._check()
    auth.term = 2  # Raft made this member leader of term 2: the next call promotes
    assert timer.remaining(1) == 6
    timer._check()
    lessor.grant(2, 3)
    clock.now += 3.5
    assert timer.expired() == [2]
    assert timer.expired() == []  # already being revoked
    assert timer.is_expired(2)
    assert timer.renew(2) == 0  # expired: keep-alive answers TTL 0
    assert timer.renew(1) == 5
    assert timer.remaining(1) == 5
    clock.now += 2.5
    assert timer.expired() == [2]  # revoke not applied yet: retried
    lessor.revoke(2)
    timer._check()
    assert timer.remaining(2) == -1
    assert timer.renew(99) == 0
    auth.term = 0  # Raft stepped down (no Ready needed): the timer stops at once
    assert timer.expired() == []
    assert not timer.is_expired(1)
    timer._check()
    assert min_lease_ttl(1000) == 2
    assert min_lease_ttl(100) == 1


def test_timer_follows_the_raft_term_not_a_cached_flag() -> None:
    """Issue 12 bug 1: leadership lost and regained in a later term (keep-alives went to
    another leader meanwhile) must not revive the old term's deadlines."""
    lessor, clock, auth = Lessor(), Clock(), Authority()
    timer = LeaseTimer(lessor, clock, auth, extend=1.0)
    auth.term = 3
    lessor.grant(1, 5)
    assert timer.term == 3
    clock.now += 4.9
    auth.term = 5  # another leader led term 4 and renewed lease 1 there
    clock.now += 0.2
    assert timer.expired() == []  # re-promoted for term 5: now + extend + TTL
    assert timer.remaining(1) == 6
    timer._check()


def test_timer_promote_uses_checkpoint_and_lists_checkpoints() -> None:
    """etcd #9888: a new leader starts a lease from its checkpointed remaining TTL."""
    lessor, clock, auth = Lessor(), Clock(), Authority()
    timer = LeaseTimer(lessor, clock, auth, extend=1.0)
    lessor.grant(1, 10)
    lessor.grant(2, 10)
    auth.term = 1
    assert timer.checkpoints() == []  # nothing has run down yet
    clock.now += 6.5
    assert timer.renew(2) == 10
    assert timer.checkpoints() == [(1, 5)]  # only the lease not renewed (4.5 s, rounded up)
    lessor.checkpoint(1, 5)
    lessor._check()
    assert lessor.remaining(1) == 5
    assert lessor.checkpointed(1)
    auth.term = 2  # leader change
    assert timer.remaining(1) == 6  # extend + checkpointed remaining, not extend + TTL
    assert timer.remaining(2) == 11
    clock.now += 6.0
    assert timer.expired() == [1]
    lessor.checkpoint(1, 0)  # a renew clears the checkpoint
    assert not lessor.checkpointed(1)
    assert lessor.remaining(1) == 10
    lessor.checkpoint(1, 10)  # not below the TTL: no checkpoint
    assert not lessor.checkpointed(1)
    restored = Lessor()
    lessor.checkpoint(1, 3)
    restored.restore([list(row) for row in lessor.snapshot()])
    assert restored.remaining(1) == 3
    assert restored.remaining(2) == 10
    restored.restore([[7, 5]])  # a snapshot from before checkpoints
    assert restored.remaining(7) == 5
    timer._check()


def test_lease_ids_unique_positive() -> None:
    gen = LeaseIdGenerator(0xABCDEF, lambda: 1_700_000_000_000)
    taken = {gen.next()}
    ids = [gen.next(taken.__contains__) for _ in range(1000)]
    assert len(set(ids) | taken) == 1001
    assert all(0 < i < 2**63 for i in ids)
    assert all(i >> 48 == 0xCDEF & 0x7FFF for i in ids)  # masked to 63 bits


# -- state machine -----------------------------------------------------------------------------
def _apply(sm: StateMachine, kind: Kind, msg: betterproto2.Message) -> bytes:
    result = sm.apply(sm.applied_index + 1, encode(kind, bytes(msg)))
    assert isinstance(result, bytes), result
    return result


def test_lease_revoke_deletes_keys_in_one_revision() -> None:
    sm = StateMachine()
    _apply(sm, Kind.LEASE_GRANT, pb.LeaseGrantRequest(id=7, ttl=5))
    for k in (b"a", b"b", b"c"):
        _apply(sm, Kind.PUT, pb.PutRequest(key=k, value=b"v", lease=7))
    _apply(sm, Kind.PUT, pb.PutRequest(key=b"free", value=b"v"))
    rev = sm.kv.rev
    rev_after, _ = split_result(_apply(sm, Kind.LEASE_REVOKE, pb.LeaseRevokeRequest(id=7)))
    assert rev_after == rev + 1
    assert not sm.lessor.exists(7)
    resp = pb.RangeResponse.parse(sm.kv.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00")))
    assert [kv.key for kv in resp.kvs] == [b"free"]
    err = sm.apply(
        sm.applied_index + 1, encode(Kind.LEASE_REVOKE, bytes(pb.LeaseRevokeRequest(id=7)))
    )
    assert isinstance(err, LeaseNotFoundError)
    err = sm.apply(sm.applied_index + 1, encode(Kind.PUT, bytes(pb.PutRequest(key=b"x", lease=7))))
    assert isinstance(err, LeaseNotFoundError)
    sm._check()


def test_nospace_blocks_puts_not_deletes() -> None:
    sm = StateMachine()
    _apply(sm, Kind.PUT, pb.PutRequest(key=b"k", value=b"v"))
    _apply(
        sm,
        Kind.ALARM,
        pb.AlarmRequest(
            action=pb.AlarmRequestAlarmAction.ACTIVATE, member_id=9, alarm=pb.AlarmType.NOSPACE
        ),
    )
    assert sm.alarm_list() == [(9, 1)]
    put = encode(Kind.PUT, bytes(pb.PutRequest(key=b"k", value=b"v")))
    assert isinstance(sm.apply(sm.applied_index + 1, put), NoSpaceError)
    txn = pb.TxnRequest(failure=[pb.RequestOp(request_put=pb.PutRequest(key=b"z"))])
    assert isinstance(sm.apply(sm.applied_index + 1, encode(Kind.TXN, bytes(txn))), NoSpaceError)
    grant = encode(Kind.LEASE_GRANT, bytes(pb.LeaseGrantRequest(id=1, ttl=5)))
    assert isinstance(sm.apply(sm.applied_index + 1, grant), NoSpaceError)
    _apply(sm, Kind.DELETE_RANGE, pb.DeleteRangeRequest(key=b"k"))
    _apply(
        sm,
        Kind.ALARM,
        pb.AlarmRequest(
            action=pb.AlarmRequestAlarmAction.DEACTIVATE, member_id=9, alarm=pb.AlarmType.NOSPACE
        ),
    )
    assert sm.alarm_list() == []
    assert isinstance(sm.apply(sm.applied_index + 1, put), bytes)
    sm._check()


def test_snapshot_restore_roundtrip() -> None:
    sm = StateMachine()
    _apply(sm, Kind.LEASE_GRANT, pb.LeaseGrantRequest(id=3, ttl=60))
    _apply(sm, Kind.PUT, pb.PutRequest(key=b"a", value=b"1", lease=3))
    _apply(sm, Kind.PUT, pb.PutRequest(key=b"b", value=b"2"))
    _apply(
        sm,
        Kind.ALARM,
        pb.AlarmRequest(
            action=pb.AlarmRequestAlarmAction.ACTIVATE, member_id=1, alarm=pb.AlarmType.NOSPACE
        ),
    )
    data = sm.snapshot()
    other = StateMachine()
    seen: list[KVStore] = []
    other.add_restore_listener(seen.append)
    other.restore(data)
    assert seen == [other.kv]
    assert other.kv.rev == sm.kv.rev
    assert other.applied_index == sm.applied_index
    assert other.lessor.snapshot() == [(3, 60, 0)]
    assert other.alarm_list() == [(1, 1)]
    assert other.kv.keys_for_lease(3) == [b"a"]
    assert other.kv.hash() == sm.kv.hash()
    other._check()


def test_bad_command_is_an_error_not_a_crash() -> None:
    sm = StateMachine()
    assert isinstance(sm.apply(1, b"\x63junk"), InvalidArgumentError)
    assert sm.applied_index == 1


# -- config / CLI ------------------------------------------------------------------------------
def test_cli_defaults_like_etcd() -> None:
    cfg = config_from_args(build_parser().parse_args([]))
    assert cfg.name == "default"
    assert cfg.data_dir == "default.coord"
    assert cfg.listen_client_urls == ("http://127.0.0.1:2379",)
    assert cfg.max_txn_ops == 128
    assert cfg.max_request_bytes == 1572864
    assert cfg.max_recv_bytes == 1572864 + 512 * 1024
    assert cfg.quota_bytes == 2 * 1024**3
    assert cfg.min_lease_ttl == 2
    assert cfg.initial_cluster == "default=http://127.0.0.1:2380"


def test_cli_flags() -> None:
    args = build_parser().parse_args(
        [
            "--name",
            "n1",
            "--listen-client-urls",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--initial-cluster",
            "n1=http://127.0.0.1:3,n2=http://127.0.0.1:4",
            "--initial-cluster-state",
            "existing",
            "--election-timeout",
            "3000",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.data_dir == "n1.coord"
    assert cfg.listen_client_urls == ("http://127.0.0.1:1", "http://127.0.0.1:2")
    assert parse_initial_cluster(cfg.initial_cluster) == {
        "n1": ["http://127.0.0.1:3"],
        "n2": ["http://127.0.0.1:4"],
    }
    assert cfg.min_lease_ttl == 5
    with pytest.raises(ValueError, match="invalid URL"):
        Config(listen_client_urls=("localhost",))
    with pytest.raises(ValueError, match="name=url"):
        Config(initial_cluster="nourl")
    help_text = build_parser().format_help()
    for flag in (
        "--name",
        "--data-dir",
        "--listen-client-urls",
        "--advertise-client-urls",
        "--quota-backend-bytes",
        "--max-txn-ops",
        "--max-request-bytes",
        "--heartbeat-interval",
        "--election-timeout",
        "--snapshot-count",
        "--listen-peer-urls",
        "--initial-advertise-peer-urls",
        "--initial-cluster",
        "--initial-cluster-state",
        "--initial-cluster-token",
        "--log-level",
    ):
        assert flag in help_text


def test_api_header_cache_follows_term() -> None:
    import asyncio

    from fakes import FakeNode

    from coord.server.api.common import ApiContext, scan
    from coord.server.membership import MemberInfo

    sm = StateMachine()
    node = FakeNode(sm, MemberInfo(id=77, name="n"), cluster_id=2**63 + 5)
    ctx = ApiContext(Config(), node, sm)
    assert ctx.header(9) == bytes(pb.ResponseHeader(cluster_id=2**63 + 5, member_id=77, revision=9))
    asyncio.run(node.start())
    for rev in (0, 1, 127, 128, 2**40):
        assert ctx.header(rev) == bytes(
            pb.ResponseHeader(cluster_id=2**63 + 5, member_id=77, revision=rev, raft_term=1)
        )
    fields = scan(
        pb.PutRequest, bytes(pb.PutRequest(key=b"k", value=b"vv", lease=-1, ignore_lease=True))
    )
    assert fields == {1: 1, 2: 2, 3: 2**64 - 1, 6: 1}


def test_hasleader_without_leader_is_no_leader() -> None:
    from fakes import FakeNode

    from coord.errors import NoLeaderError
    from coord.server.api.common import ApiContext
    from coord.server.membership import MemberInfo

    class FakeStream:
        metadata = {"hasleader": "true"}

    sm = StateMachine()
    ctx = ApiContext(Config(), FakeNode(sm, MemberInfo(id=1, name="n"), 2), sm)
    with pytest.raises(NoLeaderError, match="etcdserver: no leader"):
        ctx.check_leader(FakeStream())  # type: ignore[arg-type]
    FakeStream.metadata = {}
    ctx.check_leader(FakeStream())  # type: ignore[arg-type]


def test_duration_flags_accept_go_syntax() -> None:
    from coord.server.main import parse_duration

    def interval(value: str) -> float:
        args = build_parser().parse_args(["--experimental-watch-progress-notify-interval", value])
        return float(config_from_args(args).watch_progress_notify_interval)

    assert interval("200ms") == pytest.approx(0.2)
    assert interval("10s") == 10.0
    assert interval("1m30s") == 90.0
    assert interval("1.5h") == 5400.0
    assert interval("250us") == pytest.approx(0.00025)
    assert interval("2") == 2.0  # a plain number: seconds
    assert parse_duration("0") == 0.0
    for bad in ("10x", "ms", "1m30", "-1s", ""):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--experimental-watch-progress-notify-interval", "5 min"])


def test_lease_checkpoint_is_applied_and_kept_in_snapshots() -> None:
    sm = StateMachine()
    _apply(sm, Kind.LEASE_GRANT, pb.LeaseGrantRequest(id=7, ttl=60))
    _apply(
        sm,
        Kind.LEASE_CHECKPOINT,
        pb.LeaseCheckpointRequest(
            checkpoints=[
                pb.LeaseCheckpoint(id=7, remaining_TTL=12),
                pb.LeaseCheckpoint(id=99, remaining_TTL=5),
            ]
        ),
    )
    assert sm.lessor.remaining(7) == 12
    assert not sm.lessor.exists(99)  # a checkpoint never creates a lease
    other = StateMachine()
    other.restore(sm.snapshot())
    assert other.lessor.remaining(7) == 12
    _apply(
        other,
        Kind.LEASE_CHECKPOINT,
        pb.LeaseCheckpointRequest(checkpoints=[pb.LeaseCheckpoint(id=7, remaining_TTL=0)]),
    )  # what a renew replicates
    assert other.lessor.remaining(7) == 60
    other._check()


def test_expired_unrevoked_lease_is_not_reported_lost() -> None:
    """Chaos seed 2004: a leader paused between confirming its leadership and renewing found
    the lease's deadline passed on resume and answered TTL 0, although the new leader had
    extended the lease. As etcd's Lessor.Renew, a renew of an expired lease waits for its
    revoke to apply (then TTL 0) or for this member to stop deciding expiry (then
    LeaderChangedError, so the client retries elsewhere): it never reports it lost early."""
    import anyio
    from fakes import FakeNode

    from coord.server.api.common import ApiContext
    from coord.server.api.lease import LeaseService
    from coord.server.membership import MemberInfo

    async def main() -> None:
        sm = StateMachine()
        node = FakeNode(sm, MemberInfo(id=1, name="n"), 2)
        await node.start()
        clock, auth = Clock(), Authority()
        auth.term = node.leader_term()
        timer = LeaseTimer(sm.lessor, clock, auth, extend=0.0)
        service = LeaseService(ApiContext(Config(), node, sm), timer)
        for lease_id in (7, 8):
            await node.propose(
                encode(Kind.LEASE_GRANT, bytes(pb.LeaseGrantRequest(id=lease_id, ttl=5)))
            )
        assert await service.renew_here(7, 0) == 5
        clock.now += 6  # both expired here, neither revoked yet
        results: dict[int, object] = {}

        async def renew(lease_id: int) -> None:
            try:
                results[lease_id] = await service.renew_here(lease_id, 0)
            except LeaderChangedError as e:
                results[lease_id] = e

        async with anyio.create_task_group() as tg:
            tg.start_soon(renew, 7)
            await anyio.sleep(0.2)
            assert 7 not in results  # neither "lost" nor renewed: it waits
            await node.propose(encode(Kind.LEASE_REVOKE, bytes(pb.LeaseRevokeRequest(id=7))))
        assert results[7] == 0  # revoked: now it is gone

        async with anyio.create_task_group() as tg:
            tg.start_soon(renew, 8)
            await anyio.sleep(0.2)
            assert 8 not in results
            auth.term = 0  # another member leads now; it may still extend the lease
        assert isinstance(results[8], LeaderChangedError)
        assert sm.lessor.exists(8)

    anyio.run(main)
