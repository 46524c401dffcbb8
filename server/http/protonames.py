"""Proto field names that betterproto2 renamed (``peerURLs`` -> ``peer_ur_ls``, ``ID`` -> ``id``).

betterproto2 keeps only Python attribute names, but etcd's JSON gateway speaks the names written in
the .proto files. For every field whose proto name differs from its Python name this table gives
the proto name, keyed by the message's full proto name (as registered in the betterproto2 message
pool). All other fields are spelled the same in both. ``tests/http/test_jsonpb.py`` re-derives the
table from ``proto/*.proto`` so it cannot drift after a regeneration.
"""

from __future__ import annotations

__all__ = ["PROTO_NAMES"]

PROTO_NAMES: dict[str, dict[str, str]] = {
    "authpb.Permission": {"perm_type": "permType"},
    "authpb.Role": {"key_permission": "keyPermission"},
    "etcdserverpb.AlarmMember": {"member_id": "memberID"},
    "etcdserverpb.AlarmRequest": {"member_id": "memberID"},
    "etcdserverpb.AuthStatusResponse": {"auth_revision": "authRevision"},
    "etcdserverpb.AuthUserAddRequest": {"hashed_password": "hashedPassword"},
    "etcdserverpb.AuthUserChangePasswordRequest": {"hashed_password": "hashedPassword"},
    "etcdserverpb.DowngradeInfo": {"target_version": "targetVersion"},
    "etcdserverpb.LeaseCheckpoint": {"id": "ID"},
    "etcdserverpb.LeaseGrantRequest": {"id": "ID", "ttl": "TTL"},
    "etcdserverpb.LeaseGrantResponse": {"id": "ID", "ttl": "TTL"},
    "etcdserverpb.LeaseKeepAliveRequest": {"id": "ID"},
    "etcdserverpb.LeaseKeepAliveResponse": {"id": "ID", "ttl": "TTL"},
    "etcdserverpb.LeaseRevokeRequest": {"id": "ID"},
    "etcdserverpb.LeaseStatus": {"id": "ID"},
    "etcdserverpb.LeaseTimeToLiveRequest": {"id": "ID"},
    "etcdserverpb.LeaseTimeToLiveResponse": {"granted_ttl": "grantedTTL", "id": "ID", "ttl": "TTL"},
    "etcdserverpb.Member": {
        "client_ur_ls": "clientURLs",
        "id": "ID",
        "is_learner": "isLearner",
        "peer_ur_ls": "peerURLs",
    },
    "etcdserverpb.MemberAddRequest": {"is_learner": "isLearner", "peer_ur_ls": "peerURLs"},
    "etcdserverpb.MemberPromoteRequest": {"id": "ID"},
    "etcdserverpb.MemberRemoveRequest": {"id": "ID"},
    "etcdserverpb.MemberUpdateRequest": {"id": "ID", "peer_ur_ls": "peerURLs"},
    "etcdserverpb.MoveLeaderRequest": {"target_id": "targetID"},
    "etcdserverpb.StatusResponse": {
        "db_size": "dbSize",
        "db_size_in_use": "dbSizeInUse",
        "db_size_quota": "dbSizeQuota",
        "downgrade_info": "downgradeInfo",
        "is_learner": "isLearner",
        "raft_applied_index": "raftAppliedIndex",
        "raft_index": "raftIndex",
        "raft_term": "raftTerm",
        "storage_version": "storageVersion",
    },
}
