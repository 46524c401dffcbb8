"""AuthStore (server/auth/store.py): etcd's auth state rules, applied commands, snapshots; the
guard's identity and rule table (server/auth/guard.py); tokens (server/auth/tokens.py)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from multidict import MultiDict
from support import jwt_keys

from coord._pb import authpb
from coord._pb import etcdserverpb as pb
from coord.errors import (
    AuthOldRevisionError,
    CoordError,
    InvalidAuthMgmtError,
    InvalidAuthTokenError,
    PermissionDeniedError,
    PermissionNotGrantedError,
    RoleAlreadyExistError,
    RoleNotFoundError,
    RoleNotGrantedError,
    RootRoleNotExistError,
    RootUserNotExistError,
    UserAlreadyExistError,
    UserEmptyError,
    UserNotFoundError,
)
from coord.server.auth import AuthStore, Guard, Op
from coord.server.auth.store import login_payload
from coord.server.auth.tokens import JwtTokens, SimpleTokens, parse_auth_token

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()


def cmd(op: Op, req: Any = None) -> bytes:
    return bytes((op,)) + (bytes(req) if req is not None else b"")


def add_user(s: AuthStore, name: str) -> None:
    s.apply(cmd(Op.USER_ADD, pb.AuthUserAddRequest(name=name, hashed_password=HASH)))


def grant(s: AuthStore, role: str, t: int, key: bytes, end: bytes = b"") -> None:
    perm = authpb.Permission(perm_type=authpb.PermissionType(t), key=key, range_end=end)
    s.apply(cmd(Op.ROLE_GRANT_PERMISSION, pb.AuthRoleGrantPermissionRequest(name=role, perm=perm)))


def enabled_store() -> AuthStore:
    s = AuthStore()
    add_user(s, "root")
    s.apply(cmd(Op.USER_GRANT_ROLE, pb.AuthUserGrantRoleRequest(user="root", role="root")))
    add_user(s, "app")
    s.apply(cmd(Op.ROLE_ADD, pb.AuthRoleAddRequest(name="app")))
    grant(s, "app", 2, b"/app/", b"/app0")
    s.apply(cmd(Op.USER_GRANT_ROLE, pb.AuthUserGrantRoleRequest(user="app", role="app")))
    s.apply(cmd(Op.ENABLE))
    s._check()
    return s


def test_enable_needs_root_user_with_root_role() -> None:
    s = AuthStore()
    with pytest.raises(RootUserNotExistError):
        s.apply(cmd(Op.ENABLE))
    add_user(s, "root")
    with pytest.raises(RootRoleNotExistError):
        s.apply(cmd(Op.ENABLE))
    s.apply(cmd(Op.USER_GRANT_ROLE, pb.AuthUserGrantRoleRequest(user="root", role="root")))
    rev = s.revision
    s.apply(cmd(Op.ENABLE))
    assert s.enabled
    assert s.revision == rev + 1
    s._check()


def test_root_cannot_be_weakened_while_enabled() -> None:
    s = enabled_store()
    with pytest.raises(InvalidAuthMgmtError):
        s.apply(cmd(Op.USER_DELETE, pb.AuthUserDeleteRequest(name="root")))
    with pytest.raises(InvalidAuthMgmtError):
        s.apply(cmd(Op.USER_REVOKE_ROLE, pb.AuthUserRevokeRoleRequest(name="root", role="root")))
    with pytest.raises(InvalidAuthMgmtError):
        s.apply(cmd(Op.ROLE_DELETE, pb.AuthRoleDeleteRequest(role="root")))
    s.apply(cmd(Op.DISABLE))
    s.apply(cmd(Op.USER_REVOKE_ROLE, pb.AuthUserRevokeRoleRequest(name="root", role="root")))
    s._check()


def test_errors_are_etcds() -> None:
    s = enabled_store()
    with pytest.raises(UserEmptyError):
        s.apply(cmd(Op.USER_ADD, pb.AuthUserAddRequest(name="")))
    with pytest.raises(UserAlreadyExistError):
        add_user(s, "app")
    with pytest.raises(UserNotFoundError):
        s.apply(cmd(Op.USER_DELETE, pb.AuthUserDeleteRequest(name="nobody")))
    with pytest.raises(RoleAlreadyExistError):
        s.apply(cmd(Op.ROLE_ADD, pb.AuthRoleAddRequest(name="app")))
    with pytest.raises(RoleNotFoundError):
        s.apply(cmd(Op.USER_GRANT_ROLE, pb.AuthUserGrantRoleRequest(user="app", role="nope")))
    with pytest.raises(RoleNotGrantedError):
        s.apply(cmd(Op.USER_REVOKE_ROLE, pb.AuthUserRevokeRoleRequest(name="app", role="x")))
    req = pb.AuthRoleRevokePermissionRequest(role="app", key=b"/other/")
    with pytest.raises(PermissionNotGrantedError):
        s.apply(cmd(Op.ROLE_REVOKE_PERMISSION, req))
    with pytest.raises(InvalidAuthMgmtError):  # an inverted range, as etcd 3.5
        grant(s, "app", 0, b"/b", b"/a")
    rev = s.revision
    with pytest.raises(CoordError):
        add_user(s, "app")
    assert s.revision == rev, "a failed change must not bump the auth revision"


def test_role_delete_removes_it_from_users_and_perms_follow() -> None:
    s = enabled_store()
    perms = s.perms("app")
    assert perms is not None
    assert perms.allowed(b"/app/x", b"", True)
    s.apply(cmd(Op.ROLE_DELETE, pb.AuthRoleDeleteRequest(role="app")))
    assert s.users["app"].roles == []
    perms = s.perms("app")
    assert perms is not None
    assert not perms.allowed(b"/app/x", b"", False)
    s._check()


def test_login_is_refused_at_a_stale_revision_and_heard_by_listeners() -> None:
    s = enabled_store()
    heard: list[tuple[str, str, int]] = []
    s.add_login_listener(lambda *a: heard.append(a))
    s.apply(cmd(Op.AUTHENTICATE) + login_payload("app", "tok", s.revision))
    assert heard == [("app", "tok", s.revision)]
    with pytest.raises(AuthOldRevisionError):
        s.apply(cmd(Op.AUTHENTICATE) + login_payload("app", "tok2", s.revision - 1))
    assert len(heard) == 1


def test_random_changes_keep_invariants_and_snapshots_round_trip() -> None:
    rng = random.Random(16)
    names = ["root", "a", "b", "c"]
    for _round in range(30):
        s = AuthStore()
        for _ in range(60):
            name, role = rng.choice(names), rng.choice(names)
            key = rng.choice([b"/a", b"/b", b"/a/"])
            end = rng.choice([b"", b"\x00", b"/c", b"/a"])
            ops: list[bytes] = [
                cmd(Op.USER_ADD, pb.AuthUserAddRequest(name=name, hashed_password=HASH)),
                cmd(Op.USER_DELETE, pb.AuthUserDeleteRequest(name=name)),
                cmd(Op.USER_GRANT_ROLE, pb.AuthUserGrantRoleRequest(user=name, role=role)),
                cmd(Op.USER_REVOKE_ROLE, pb.AuthUserRevokeRoleRequest(name=name, role=role)),
                cmd(Op.ROLE_ADD, pb.AuthRoleAddRequest(name=role)),
                cmd(Op.ROLE_DELETE, pb.AuthRoleDeleteRequest(role=role)),
                cmd(
                    Op.ROLE_GRANT_PERMISSION,
                    pb.AuthRoleGrantPermissionRequest(
                        name=role,
                        perm=authpb.Permission(
                            perm_type=authpb.PermissionType(rng.randrange(3)),
                            key=key,
                            range_end=end,
                        ),
                    ),
                ),
                cmd(
                    Op.ROLE_REVOKE_PERMISSION,
                    pb.AuthRoleRevokePermissionRequest(role=role, key=key, range_end=end),
                ),
                cmd(Op.ENABLE),
                cmd(Op.DISABLE),
            ]
            try:
                s.apply(rng.choice(ops))
            except CoordError:
                pass
            s._check()
        copy = AuthStore()
        copy.restore(s.snapshot())
        copy._check()
        assert copy.snapshot() == s.snapshot()
        assert (copy.enabled, copy.revision) == (s.enabled, s.revision)


# -- tokens ------------------------------------------------------------------------------------


def test_simple_tokens_expire_after_their_last_use_and_at_a_new_revision() -> None:
    now = [100.0]
    t = SimpleTokens(ttl=10, clock=lambda: now[0])
    tok = t.new("app", 3)
    t.learn("app", tok, 3)
    now[0] += 8
    assert t.user(tok, 3) == "app"  # use refreshes it
    now[0] += 8
    assert t.user(tok, 3) == "app"
    with pytest.raises(InvalidAuthTokenError):
        t.user(tok, 4)  # auth state changed since the login
    t.learn("app", tok, 3)
    now[0] += 11
    with pytest.raises(InvalidAuthTokenError):
        t.user(tok, 3)
    with pytest.raises(InvalidAuthTokenError):
        t.user("never-issued", 3)
    t._check()


def test_jwt_tokens(tmp_path: Path) -> None:
    priv, pub = jwt_keys(tmp_path)
    tokens = parse_auth_token(f"jwt,pub-key={pub},priv-key={priv},sign-method=ES256", 300)
    assert isinstance(tokens, JwtTokens)
    assert not tokens.replicated
    tok = tokens.new("app", 7)
    assert tokens.user(tok, 7) == "app"
    with pytest.raises(InvalidAuthTokenError):
        tokens.user(tok, 8)
    with pytest.raises(InvalidAuthTokenError):
        tokens.user(tok[:-4] + "AAAA", 7)  # forged signature
    verify_only = parse_auth_token(f"jwt,pub-key={pub},sign-method=ES256", 300)
    assert verify_only.user(tok, 7) == "app"
    expired = JwtTokens("ES256", priv.read_bytes(), pub.read_bytes(), ttl=-10)
    with pytest.raises(InvalidAuthTokenError):
        tokens.user(expired.new("app", 7), 7)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "unknown token type"),
        ("jwt,sign-method=HS256,pub-key=x", "sign-method must be one of"),
        ("jwt,sign-method=ES256", "needs pub-key"),
        ("jwt,sign-method=ES256,pub-key=/nonexistent", "cannot read key"),
        ("jwt,color=blue", "unknown jwt option"),
    ],
)
def test_bad_auth_token_flags_are_explained(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_auth_token(spec, 300)


# -- guard -------------------------------------------------------------------------------------


class _Stream:
    def __init__(self, token: str | None = None) -> None:
        self.metadata = MultiDict({"token": token} if token else {})
        self.peer = None


def test_guard_checks_every_kind_of_request() -> None:
    s = enabled_store()
    tokens = SimpleTokens(ttl=60)
    s.add_login_listener(tokens.learn)
    keys = {5: [b"/app/l", b"/other/l"], 6: [b"/app/m"]}
    guard = Guard(s, tokens, False, lambda i: keys.get(i, []))
    for name, tok in (("app", "t-app"), ("root", "t-root")):
        s.apply(cmd(Op.AUTHENTICATE) + login_payload(name, tok, s.revision))
    app, root = _Stream("t-app"), _Stream("t-root")

    def allowed(stream: Any, path: str, req: Any) -> bool:
        try:
            guard.authorize(stream, path, bytes(req))
            return True
        except PermissionDeniedError:
            return False

    kv = "/etcdserverpb.KV/"
    assert allowed(app, kv + "Range", pb.RangeRequest(key=b"/app/", range_end=b"/app0"))
    assert not allowed(app, kv + "Range", pb.RangeRequest(key=b"/app/", range_end=b"\x00"))
    assert allowed(app, kv + "Put", pb.PutRequest(key=b"/app/x"))
    assert not allowed(app, kv + "Put", pb.PutRequest(key=b"/other"))
    assert not allowed(app, kv + "DeleteRange", pb.DeleteRangeRequest(key=b"/a", range_end=b"/b"))
    nested = pb.TxnRequest(
        success=[
            pb.RequestOp(
                request_txn=pb.TxnRequest(
                    failure=[pb.RequestOp(request_put=pb.PutRequest(key=b"/other"))]
                )
            )
        ]
    )
    assert not allowed(app, kv + "Txn", nested)
    cmp_outside = pb.TxnRequest(compare=[pb.Compare(key=b"/other")])
    assert not allowed(app, kv + "Txn", cmp_outside)
    ok_txn = pb.TxnRequest(
        compare=[pb.Compare(key=b"/app/a")],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=b"/app/b"))],
    )
    assert allowed(app, kv + "Txn", ok_txn)
    lease = "/etcdserverpb.Lease/"
    assert not allowed(app, lease + "LeaseRevoke", pb.LeaseRevokeRequest(id=5))
    assert allowed(app, lease + "LeaseRevoke", pb.LeaseRevokeRequest(id=6))
    assert allowed(app, lease + "LeaseGrant", pb.LeaseGrantRequest(ttl=5))
    assert allowed(app, lease + "LeaseTimeToLive", pb.LeaseTimeToLiveRequest(id=5))
    assert not allowed(app, lease + "LeaseTimeToLive", pb.LeaseTimeToLiveRequest(id=5, keys=True))
    assert allowed(app, lease + "LeaseTimeToLive", pb.LeaseTimeToLiveRequest(id=6, keys=True))
    assert not allowed(app, kv + "Compact", pb.CompactionRequest(revision=1))
    assert allowed(root, kv + "Compact", pb.CompactionRequest(revision=1))
    auth = "/etcdserverpb.Auth/"
    assert allowed(app, auth + "UserGet", pb.AuthUserGetRequest(name="app"))
    assert not allowed(app, auth + "UserGet", pb.AuthUserGetRequest(name="root"))
    assert allowed(app, auth + "RoleGet", pb.AuthRoleGetRequest(role="app"))
    assert not allowed(app, auth + "UserList", pb.AuthUserListRequest())
    get_alarms = pb.AlarmRequest(action=pb.AlarmRequestAlarmAction.GET)
    assert allowed(app, "/etcdserverpb.Maintenance/Alarm", get_alarms)
    disarm = pb.AlarmRequest(action=pb.AlarmRequestAlarmAction.DEACTIVATE)
    assert not allowed(app, "/etcdserverpb.Maintenance/Alarm", disarm)
    with pytest.raises(PermissionDeniedError):
        guard.authorize_watch(app, b"/other", b"")
    guard.authorize_watch(app, b"/app/", b"/app0")
    # identity: none, a bad token, and nothing needed for MemberList
    with pytest.raises(UserEmptyError):
        guard.authorize(_Stream(), kv + "Range", bytes(pb.RangeRequest(key=b"/app/x")))
    with pytest.raises(InvalidAuthTokenError):
        guard.authorize(_Stream("nope"), kv + "Range", bytes(pb.RangeRequest(key=b"/app/x")))
    guard.authorize(_Stream(), "/etcdserverpb.Cluster/MemberList", b"")
    # a change of auth state invalidates tokens
    s.apply(cmd(Op.ROLE_ADD, pb.AuthRoleAddRequest(name="other")))
    with pytest.raises(InvalidAuthTokenError):
        guard.authorize(app, kv + "Range", bytes(pb.RangeRequest(key=b"/app/x")))
    # disabled: nothing is checked
    s.apply(cmd(Op.DISABLE))
    guard.authorize(_Stream(), kv + "Compact", b"")
