"""etcd's JSON gateway bindings: which HTTP path calls which gRPC method with which messages
(etcd's ``api/etcdserverpb/gw/rpc.pb.gw.go`` and the v3lock/v3election gateways), how a gRPC
status maps to an HTTP status (grpc-gateway v1.16, as etcd 3.4/3.5 serve it) and the shape of
a unary error body. Plain data for :mod:`.gateway`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import betterproto2

from coord._pb import etcdserverpb as pb
from coord._pb import v3electionpb as electionpb
from coord._pb import v3lockpb as lockpb

__all__ = ["HTTP_STATUS", "ROUTES", "Route", "dumps", "error_body"]

#: grpc-gateway's gRPC code -> HTTP status map (v1.16, as served by etcd 3.4/3.5).
HTTP_STATUS: dict[int, int] = {
    0: 200,
    1: 408,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}


@dataclass(frozen=True)
class Route:
    """One HTTP binding: the gRPC method it calls and the message classes of both sides."""

    grpc_path: str
    request: type[betterproto2.Message]
    response: type[betterproto2.Message]
    streaming: bool = False


def _routes() -> dict[str, Route]:
    r: dict[str, Route] = {}

    def add(http: str, grpc: str, req: Any, resp: Any, streaming: bool = False) -> None:
        r[http] = Route(grpc, req, resp, streaming)

    add("/v3/kv/range", "/etcdserverpb.KV/Range", pb.RangeRequest, pb.RangeResponse)
    add("/v3/kv/put", "/etcdserverpb.KV/Put", pb.PutRequest, pb.PutResponse)
    add(
        "/v3/kv/deleterange",
        "/etcdserverpb.KV/DeleteRange",
        pb.DeleteRangeRequest,
        pb.DeleteRangeResponse,
    )
    add("/v3/kv/txn", "/etcdserverpb.KV/Txn", pb.TxnRequest, pb.TxnResponse)
    add(
        "/v3/kv/compaction", "/etcdserverpb.KV/Compact", pb.CompactionRequest, pb.CompactionResponse
    )
    add("/v3/watch", "/etcdserverpb.Watch/Watch", pb.WatchRequest, pb.WatchResponse, True)
    add(
        "/v3/lease/grant",
        "/etcdserverpb.Lease/LeaseGrant",
        pb.LeaseGrantRequest,
        pb.LeaseGrantResponse,
    )
    for prefix in ("/v3/lease", "/v3/kv/lease"):
        add(
            f"{prefix}/revoke",
            "/etcdserverpb.Lease/LeaseRevoke",
            pb.LeaseRevokeRequest,
            pb.LeaseRevokeResponse,
        )
        add(
            f"{prefix}/timetolive",
            "/etcdserverpb.Lease/LeaseTimeToLive",
            pb.LeaseTimeToLiveRequest,
            pb.LeaseTimeToLiveResponse,
        )
        add(
            f"{prefix}/leases",
            "/etcdserverpb.Lease/LeaseLeases",
            pb.LeaseLeasesRequest,
            pb.LeaseLeasesResponse,
        )
    add(
        "/v3/lease/keepalive",
        "/etcdserverpb.Lease/LeaseKeepAlive",
        pb.LeaseKeepAliveRequest,
        pb.LeaseKeepAliveResponse,
        True,
    )
    for name, req, resp in [
        ("add", pb.MemberAddRequest, pb.MemberAddResponse),
        ("remove", pb.MemberRemoveRequest, pb.MemberRemoveResponse),
        ("update", pb.MemberUpdateRequest, pb.MemberUpdateResponse),
        ("list", pb.MemberListRequest, pb.MemberListResponse),
        ("promote", pb.MemberPromoteRequest, pb.MemberPromoteResponse),
    ]:
        add(
            f"/v3/cluster/member/{name}",
            f"/etcdserverpb.Cluster/Member{name.capitalize()}",
            req,
            resp,
        )
    for name, rpc, req, resp in [
        ("alarm", "Alarm", pb.AlarmRequest, pb.AlarmResponse),
        ("status", "Status", pb.StatusRequest, pb.StatusResponse),
        ("defragment", "Defragment", pb.DefragmentRequest, pb.DefragmentResponse),
        ("hash", "Hash", pb.HashRequest, pb.HashResponse),
        ("hashkv", "HashKV", pb.HashKvRequest, pb.HashKvResponse),
        ("transfer-leadership", "MoveLeader", pb.MoveLeaderRequest, pb.MoveLeaderResponse),
    ]:
        add(f"/v3/maintenance/{name}", f"/etcdserverpb.Maintenance/{rpc}", req, resp)
    for path, rpc, base in [
        ("enable", "AuthEnable", "AuthEnable"),
        ("disable", "AuthDisable", "AuthDisable"),
        ("status", "AuthStatus", "AuthStatus"),
        ("authenticate", "Authenticate", "Authenticate"),
        ("user/add", "UserAdd", "AuthUserAdd"),
        ("user/get", "UserGet", "AuthUserGet"),
        ("user/list", "UserList", "AuthUserList"),
        ("user/delete", "UserDelete", "AuthUserDelete"),
        ("user/changepw", "UserChangePassword", "AuthUserChangePassword"),
        ("user/grant", "UserGrantRole", "AuthUserGrantRole"),
        ("user/revoke", "UserRevokeRole", "AuthUserRevokeRole"),
        ("role/add", "RoleAdd", "AuthRoleAdd"),
        ("role/get", "RoleGet", "AuthRoleGet"),
        ("role/list", "RoleList", "AuthRoleList"),
        ("role/delete", "RoleDelete", "AuthRoleDelete"),
        ("role/grant", "RoleGrantPermission", "AuthRoleGrantPermission"),
        ("role/revoke", "RoleRevokePermission", "AuthRoleRevokePermission"),
    ]:
        add(
            f"/v3/auth/{path}",
            f"/etcdserverpb.Auth/{rpc}",
            getattr(pb, base + "Request"),
            getattr(pb, base + "Response"),
        )
    add("/v3/lock/lock", "/v3lockpb.Lock/Lock", lockpb.LockRequest, lockpb.LockResponse)
    add("/v3/lock/unlock", "/v3lockpb.Lock/Unlock", lockpb.UnlockRequest, lockpb.UnlockResponse)
    for name, rpc, req, resp, streaming in [
        ("campaign", "Campaign", electionpb.CampaignRequest, electionpb.CampaignResponse, False),
        ("proclaim", "Proclaim", electionpb.ProclaimRequest, electionpb.ProclaimResponse, False),
        ("leader", "Leader", electionpb.LeaderRequest, electionpb.LeaderResponse, False),
        ("observe", "Observe", electionpb.LeaderRequest, electionpb.LeaderResponse, True),
        ("resign", "Resign", electionpb.ResignRequest, electionpb.ResignResponse, False),
    ]:
        add(f"/v3/election/{name}", f"/v3electionpb.Election/{rpc}", req, resp, streaming)
    return r


#: HTTP path -> gRPC method binding (etcd's api/etcdserverpb/gw/rpc.pb.gw.go).
ROUTES: dict[str, Route] = _routes()


def error_body(code: int, message: str) -> bytes:
    """grpc-gateway v1's unary error body (etcd 3.4/3.5): ``{"error", "message", "code"}``."""
    return dumps({"error": message, "message": message, "code": code})


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
