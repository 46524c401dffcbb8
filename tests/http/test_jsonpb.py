"""Unit tests of etcd's JSON mapping (server/http/jsonpb.py) and of the proto-name table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from betterproto2 import ProtoClassMetadata

from coord._pb import authpb, mvccpb, v3electionpb, v3lockpb  # noqa: F401 - register all
from coord._pb import etcdserverpb as pb
from coord._pb.message_pool import default_message_pool
from coord.server.http.jsonpb import JsonMappingError, from_json, to_json
from coord.server.http.protonames import PROTO_NAMES

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"


def test_output_uses_proto_names_strings_for_int64_base64_and_omits_zeros() -> None:
    resp = pb.RangeResponse(
        header=pb.ResponseHeader(cluster_id=2**64 - 1, member_id=7, revision=3, raft_term=2),
        kvs=[
            mvccpb.KeyValue(key=b"foo", value=b"bar", create_revision=2, mod_revision=3, version=2)
        ],
        count=1,
    )
    assert to_json(resp) == {
        "header": {
            "cluster_id": "18446744073709551615",
            "member_id": "7",
            "revision": "3",
            "raft_term": "2",
        },
        "kvs": [
            {
                "key": "Zm9v",
                "create_revision": "2",
                "mod_revision": "3",
                "version": "2",
                "value": "YmFy",
            }
        ],
        "count": "1",
    }
    assert to_json(pb.PutResponse()) == {}
    # renamed proto fields come back with etcd's spelling
    member = pb.Member(
        id=5, name="a", peer_ur_ls=["http://p"], client_ur_ls=["http://c"], is_learner=True
    )
    assert to_json(member) == {
        "ID": "5",
        "name": "a",
        "peerURLs": ["http://p"],
        "clientURLs": ["http://c"],
        "isLearner": True,
    }
    assert to_json(pb.LeaseGrantResponse(id=1, ttl=30)) == {"ID": "1", "TTL": "30"}


def test_enums_are_names_and_first_value_is_omitted() -> None:
    assert to_json(mvccpb.Event(type=mvccpb.EventEventType.PUT)) == {}
    assert to_json(mvccpb.Event(type=mvccpb.EventEventType.DELETE)) == {"type": "DELETE"}
    req = from_json(pb.RangeRequest, {"sort_order": "DESCEND", "sortTarget": 3})
    assert req.sort_order == pb.RangeRequestSortOrder.DESCEND
    assert req.sort_target == pb.RangeRequestSortTarget.MOD


def test_input_accepts_proto_and_camel_names_strings_or_numbers_and_ignores_unknown() -> None:
    req = from_json(
        pb.RangeRequest,
        {
            "key": "Zm9v",
            "rangeEnd": "Zm9w",
            "limit": "5",
            "revision": 2,
            "keys_only": True,
            "bogus": 1,
        },
    )
    assert (req.key, req.range_end, req.limit, req.revision, req.keys_only) == (
        b"foo",
        b"fop",
        5,
        2,
        True,
    )
    assert from_json(pb.LeaseGrantRequest, {"TTL": "5", "ID": 7}).ttl == 5
    assert from_json(pb.MemberAddRequest, {"peerURLs": ["http://x"]}).peer_ur_ls == ["http://x"]


def test_bytes_accept_url_safe_and_unpadded_base64() -> None:
    assert from_json(pb.PutRequest, {"key": "Zm8"}).key == b"fo"
    assert from_json(pb.PutRequest, {"key": "-_8="}).key == b"\xfb\xff"
    assert from_json(pb.PutRequest, {"key": "+/8="}).key == b"\xfb\xff"


def test_oneof_members_are_emitted_even_when_empty_and_round_trip() -> None:
    body = {
        "compare": [{"key": "Zm9v", "target": "VALUE", "result": "EQUAL", "value": "YmFy"}],
        "success": [{"requestPut": {"key": "Zm9v", "value": "YmF6"}}],
        "failure": [{"request_range": {}}],
    }
    txn = from_json(pb.TxnRequest, body)
    assert txn.success[0].request_put is not None
    assert txn.success[0].request_put.value == b"baz"
    assert txn.failure[0].request_range is not None
    out = to_json(txn)
    assert out["failure"] == [{"request_range": {}}]
    assert out["success"] == [{"request_put": {"key": "Zm9v", "value": "YmF6"}}]
    # EQUAL is the enum's zero value: omitted, like etcd
    assert out["compare"] == [{"target": "VALUE", "key": "Zm9v", "value": "YmFy"}]
    assert from_json(pb.TxnRequest, out) == txn


@pytest.mark.parametrize(
    ("cls", "value", "fragment"),
    [
        (pb.PutRequest, [1], "cannot unmarshal array"),
        (pb.PutRequest, {"key": 5}, "base64"),
        (pb.PutRequest, {"key": "!!!"}, "invalid base64"),
        (pb.PutRequest, {"lease": "abc"}, "invalid integer"),
        (pb.PutRequest, {"lease": True}, "expected an integer"),
        (pb.PutRequest, {"prev_kv": "yes"}, "true or false"),
        (pb.RangeRequest, {"sort_order": "SIDEWAYS"}, "invalid value"),
        (pb.TxnRequest, {"success": {"request_put": {}}}, "JSON array"),
        (pb.RequestOp, {"request_put": {}, "request_range": {}}, "more than one"),
        (pb.LeaseGrantRequest, {"TTL": 2**63}, "out of range"),
    ],
)
def test_malformed_input_raises(cls: type, value: object, fragment: str) -> None:
    with pytest.raises(JsonMappingError, match=fragment):
        from_json(cls, value)


def _derive_proto_names() -> dict[str, dict[str, str]]:
    """Re-derive PROTO_NAMES from proto/*.proto (field number -> betterproto2 attribute)."""
    rx_pkg = re.compile(r"^\s*package\s+(\w+)\s*;")
    rx_msg = re.compile(r"^\s*message\s+(\w+)\s*\{")
    rx_field = re.compile(
        r"^\s*(?:repeated\s+|optional\s+)?(?:map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*(\d+)"
    )
    out: dict[str, dict[str, str]] = {}
    for path in sorted(PROTO_DIR.glob("*/*.proto")):
        stack: list[str | None] = []
        pkg = ""
        for raw in path.read_text().splitlines():
            line = raw.split("//")[0]
            if m := rx_pkg.match(line):
                pkg = m.group(1)
                continue
            if m := rx_msg.match(line):
                stack.append(m.group(1))
                continue
            s = line.strip()
            if re.match(r"(enum|oneof)\s", s) and s.endswith("{"):
                stack.append(None)
                continue
            if s.startswith("}") and stack:
                stack.pop()
                continue
            fm = rx_field.match(line)
            if fm and stack and stack[-1] is not None:
                name = ".".join(x for x in stack if x)
                cls = default_message_pool.url_to_type[f"type.googleapis.com/{pkg}.{name}"]
                # getattr: mypy cannot bind the classproperty's type[Self] on a type[Message]
                meta: ProtoClassMetadata = getattr(cls, "_betterproto")  # noqa: B009
                py = meta.field_name_by_number[int(fm.group(2))]
                if py != fm.group(1):
                    out.setdefault(f"{pkg}.{name}", {})[py] = fm.group(1)
    return out


def test_proto_name_table_matches_the_proto_files() -> None:
    if not PROTO_DIR.is_dir():
        pytest.fail(f"proto sources not found at {PROTO_DIR}")
    derived = _derive_proto_names()
    assert derived, "no renamed fields found: the parser is broken"
    assert derived == PROTO_NAMES
