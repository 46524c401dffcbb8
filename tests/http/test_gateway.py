"""etcd's HTTP/JSON gateway on coord's client port, driven with http.client, curl and sockets.

Every test runs against a real ``coord-server`` process, this module's own, so that its log
holds only what these tests did: at teardown it must hold no ERROR line. Tests that take
``backend`` run the same assertions against coord and a real etcd 3.4;
``test_shapes_match_etcd`` compares the JSON structure (keys and value types) of the answers.
The connection-reuse tests drive one HTTP/1.1 connection the way keep-alive clients (Patroni,
requests, http.client) do, including pipelined requests, which :class:`Pipeline` sends as raw
bytes and reads back with h11.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest
from cluster.clusterlib import ServerCluster
from support import (
    CoordProc,
    CurlStream,
    EtcdProc,
    etcdctl,
    http_ok,
    http_post,
    json_b64,
    json_unb64,
    require_binary,
    wait_for,
)

import coord


def _log_errors(log: Path) -> list[str]:
    """The ERROR lines and tracebacks in a coord-server log."""
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if " ERROR " in line or line.startswith("Traceback")
    ]


@pytest.fixture(scope="module")
def coord_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordProc]:
    """This module's own coord-server; its log must hold no ERROR line when the module ends."""
    proc = CoordProc(tmp_path_factory.mktemp("coord-gateway"))
    yield proc
    proc.stop()
    assert not _log_errors(proc.log_path), proc.log_path.read_text(errors="replace")


@pytest.fixture(scope="module", autouse=True)
def _curl() -> None:
    require_binary("curl")


def put(ep: str, key: str, value: str, **extra: Any) -> Any:
    return http_ok(ep, "/v3/kv/put", {"key": json_b64(key), "value": json_b64(value), **extra})


def test_put_range_prefix_and_delete(coord_server: CoordProc, prefix: str) -> None:
    ep = coord_server.endpoint
    r1 = put(ep, prefix + "a", "1")
    r2 = put(ep, prefix + "b", "2")
    assert int(r2["header"]["revision"]) == int(r1["header"]["revision"]) + 1
    put(ep, prefix + "c", "3")
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    got = http_ok(ep, "/v3/kv/range", {"key": json_b64(prefix), "range_end": json_b64(end)})
    assert got["count"] == "3"
    assert [json_unb64(kv["key"]).decode() for kv in got["kvs"]] == [
        prefix + "a",
        prefix + "b",
        prefix + "c",
    ]
    assert [json_unb64(kv["value"]) for kv in got["kvs"]] == [b"1", b"2", b"3"]
    assert got["kvs"][0]["version"] == "1"
    # lowerCamel input names and enum names work; limit + sort
    got = http_ok(
        ep,
        "/v3/kv/range",
        {"key": json_b64(prefix), "rangeEnd": json_b64(end), "sortOrder": "DESCEND", "limit": 1},
    )
    assert [json_unb64(kv["key"]).decode() for kv in got["kvs"]] == [prefix + "c"]
    assert got["more"] is True
    assert got["count"] == "3"
    # delete one with prev_kv, then the rest
    d = http_ok(ep, "/v3/kv/deleterange", {"key": json_b64(prefix + "a"), "prev_kv": True})
    assert d["deleted"] == "1"
    assert json_unb64(d["prev_kvs"][0]["value"]) == b"1"
    d = http_ok(ep, "/v3/kv/deleterange", {"key": json_b64(prefix), "range_end": json_b64(end)})
    assert d["deleted"] == "2"
    got = http_ok(ep, "/v3/kv/range", {"key": json_b64(prefix), "range_end": json_b64(end)})
    assert "kvs" not in got
    assert "count" not in got


def test_txn_compare_and_swap(coord_server: CoordProc, prefix: str) -> None:
    ep = coord_server.endpoint
    key = json_b64(prefix + "k")
    put(ep, prefix + "k", "old")

    def cas(expect: str, new: str) -> Any:
        return http_ok(
            ep,
            "/v3/kv/txn",
            {
                "compare": [
                    {"key": key, "target": "VALUE", "result": "EQUAL", "value": json_b64(expect)}
                ],
                "success": [{"requestPut": {"key": key, "value": json_b64(new)}}],
                "failure": [{"request_range": {"key": key}}],
            },
        )

    ok = cas("old", "new")
    assert ok["succeeded"] is True
    assert list(ok["responses"][0]) == ["response_put"]
    assert ok["responses"][0]["response_put"]["header"]["revision"] == ok["header"]["revision"]
    failed = cas("old", "newer")
    assert "succeeded" not in failed  # false is omitted, as etcd does
    kv = failed["responses"][0]["response_range"]["kvs"][0]
    assert json_unb64(kv["value"]) == b"new"


def test_lease_grant_put_with_lease_and_revoke(coord_server: CoordProc, prefix: str) -> None:
    ep = coord_server.endpoint
    grant = http_ok(ep, "/v3/lease/grant", {"TTL": 60})
    lease_id = grant["ID"]
    assert isinstance(lease_id, str)
    assert int(lease_id) > 0
    assert grant["TTL"] == "60"
    put(ep, prefix + "l", "v", lease=lease_id)
    ttl = http_ok(ep, "/v3/lease/timetolive", {"ID": lease_id, "keys": True})
    assert ttl["ID"] == lease_id
    assert ttl["grantedTTL"] == "60"
    assert 0 < int(ttl["TTL"]) <= 60
    assert [json_unb64(k).decode() for k in ttl["keys"]] == [prefix + "l"]
    # the legacy /v3/kv/lease/... bindings reach the same RPCs
    leases = http_ok(ep, "/v3/kv/lease/leases", {})
    assert lease_id in [x["ID"] for x in leases["leases"]]
    # keep-alive is a stream: one {"result": ...} line per request
    out = subprocess.run(
        ["curl", "-sS", f"http://{ep}/v3/lease/keepalive", "-d", json.dumps({"ID": lease_id})],
        capture_output=True,
        timeout=30,
        check=True,
        text=True,
    )
    line = json.loads(out.stdout.strip().splitlines()[0])
    assert line["result"]["ID"] == lease_id
    assert line["result"]["TTL"] == "60"
    http_ok(ep, "/v3/lease/revoke", {"ID": lease_id})
    got = http_ok(ep, "/v3/kv/range", {"key": json_b64(prefix + "l")})
    assert "kvs" not in got  # revoking the lease deleted its key
    status, body, _ = http_post(ep, "/v3/lease/revoke", {"ID": lease_id})
    assert status == 404
    assert body == {
        "error": "etcdserver: requested lease not found",
        "message": "etcdserver: requested lease not found",
        "code": 5,
    }


def test_watch_stream_with_curl_receives_later_put(coord_server: CoordProc, prefix: str) -> None:
    ep = coord_server.endpoint
    key = prefix + "w"
    stream = CurlStream(
        [f"http://{ep}/v3/watch", "-d", json.dumps({"create_request": {"key": json_b64(key)}})]
    )
    try:
        created = stream.next_json()
        assert created["result"]["created"] is True
        assert "watch_id" not in created["result"]  # watch id 0 is omitted
        rev = put(ep, key, "hello")["header"]["revision"]
        event = stream.next_json()["result"]
        assert event["header"]["revision"] == rev
        (ev,) = event["events"]
        assert "type" not in ev  # PUT is the zero enum value
        assert json_unb64(ev["kv"]["key"]).decode() == key
        assert json_unb64(ev["kv"]["value"]) == b"hello"
        assert ev["kv"]["create_revision"] == rev
        assert ev["kv"]["version"] == "1"
        http_ok(ep, "/v3/kv/deleterange", {"key": json_b64(key)})
        deleted = stream.next_json()["result"]["events"][0]
        assert deleted["type"] == "DELETE"
    finally:
        stream.close()


def test_watch_body_may_hold_several_requests(coord_server: CoordProc, prefix: str) -> None:
    ep = coord_server.endpoint
    body = (
        json.dumps({"create_request": {"key": json_b64(prefix + "1")}})
        + "\n"
        + json.dumps({"create_request": {"key": json_b64(prefix + "2")}})
    )
    stream = CurlStream([f"http://{ep}/v3/watch", "--data-binary", body])
    try:
        ids = {stream.next_json()["result"].get("watch_id", "0") for _ in range(2)}
        assert ids == {"0", "1"}
        put(ep, prefix + "2", "x")
        event = stream.next_json()["result"]
        assert event["watch_id"] == "1"
        assert json_unb64(event["events"][0]["kv"]["key"]).decode() == prefix + "2"
    finally:
        stream.close()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"key": "Zm9v"', "unexpected EOF"),
        (b'{"key": "Zm9v", "lease": "abc"}', "lease"),
        (b"[1]", "cannot unmarshal array"),
        (b'{"key": 12}', "key"),
        (b"{} {}", "extra data"),
    ],
)
def test_wrong_json_is_400_with_etcd_error_shape(
    coord_server: CoordProc, raw: bytes, message: str
) -> None:
    status, body, headers = http_post(coord_server.endpoint, "/v3/kv/put", raw=raw)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert set(body) == {"error", "code", "message"}
    assert body["code"] == 3
    assert body["error"] == body["message"]
    assert message in body["message"]


def test_grpc_errors_map_to_http_status(coord_server: CoordProc) -> None:
    ep = coord_server.endpoint
    status, body, _ = http_post(ep, "/v3/kv/put", {"value": json_b64("v")})
    assert (status, body["code"], body["message"]) == (400, 3, "etcdserver: key is not provided")
    status, body, _ = http_post(ep, "/v3/kv/range", {"key": json_b64("x"), "revision": 10**9})
    assert (status, body["code"]) == (400, 11)  # OutOfRange -> 400
    assert body["message"] == "etcdserver: mvcc: required revision is a future revision"


def test_unknown_path_and_wrong_method(coord_server: CoordProc) -> None:
    ep = coord_server.endpoint
    assert http_post(ep, "/v3/kv/nothere", {})[0] == 404
    assert http_post(ep, "/v3/kv/range", method="GET")[0] == 405


def test_health_version_status_and_members(coord_server: CoordProc) -> None:
    ep = coord_server.endpoint
    status, body, _ = http_post(ep, "/health", method="GET")
    assert (status, body) == (200, {"health": "true", "reason": ""})
    status, body, _ = http_post(ep, "/version", method="GET")
    assert status == 200
    assert set(body) == {"etcdserver", "etcdcluster", "coord"}  # etcd's two, and coord's
    assert body["coord"] == coord.__version__
    assert body["etcdcluster"].count(".") == 2
    st = http_ok(ep, "/v3/maintenance/status", {})
    assert st["leader"] == st["header"]["member_id"]
    assert isinstance(st["raftIndex"], str)  # uint64 as a JSON string
    assert int(st["raftIndex"]) >= 1
    members = http_ok(ep, "/v3/cluster/member/list", {})["members"]
    assert members[0]["clientURLs"] == [f"http://{ep}"]
    assert members[0]["ID"] == st["header"]["member_id"]
    # an empty body is an empty request, as with grpc-gateway
    assert "header" in http_ok(ep, "/v3/maintenance/status")


@pytest.mark.etcdctl
def test_grpc_and_http_share_the_port(coord_server: CoordProc, prefix: str) -> None:
    ep = coord_server.endpoint
    etcdctl(ep, "put", prefix + "g", "from-grpc")
    got = http_ok(ep, "/v3/kv/range", {"key": json_b64(prefix + "g")})
    assert json_unb64(got["kvs"][0]["value"]) == b"from-grpc"
    put(ep, prefix + "h", "from-http")
    assert etcdctl(ep, "get", prefix + "h", "--print-value-only").stdout.strip() == "from-http"


def test_keep_alive_connection_serves_several_requests(
    coord_server: CoordProc, prefix: str
) -> None:
    host, port = coord_server.endpoint.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for i in range(3):
            conn.request(
                "POST",
                "/v3/kv/put",
                body=json.dumps({"key": json_b64(f"{prefix}{i}"), "value": json_b64("v")}),
            )
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            resp.read()
    finally:
        conn.close()


def _shape(value: Any) -> Any:
    """Keys and JSON types of a value (ids, revisions and such replaced by their type)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.etcd
def test_shapes_match_etcd(coord_server: CoordProc, etcd_server: EtcdProc, prefix: str) -> None:
    """The same requests produce the same JSON structure from coord and from etcd 3.4."""

    def run(ep: str) -> list[Any]:
        out: list[Any] = []
        key, end = json_b64(prefix + "s"), json_b64(prefix + "t")
        out.append(http_ok(ep, "/v3/kv/put", {"key": key, "value": json_b64("v1")}))
        out.append(
            http_ok(ep, "/v3/kv/put", {"key": key, "value": json_b64("v2"), "prev_kv": True})
        )
        out.append(http_ok(ep, "/v3/kv/range", {"key": key, "range_end": end}))
        out.append(http_ok(ep, "/v3/kv/range", {"key": key, "count_only": True}))
        out.append(
            http_ok(
                ep,
                "/v3/kv/txn",
                {
                    "compare": [
                        {"key": key, "target": "VERSION", "result": "GREATER", "version": 0}
                    ],
                    "success": [
                        {"request_put": {"key": key, "value": json_b64("v3")}},
                        {"request_range": {"key": key}},
                        {"request_delete_range": {"key": json_b64(prefix + "none")}},
                    ],
                },
            )
        )
        grant = http_ok(ep, "/v3/lease/grant", {"TTL": 60})
        out.append(grant)
        out.append(http_ok(ep, "/v3/lease/timetolive", {"ID": grant["ID"]}))
        out.append(http_ok(ep, "/v3/lease/revoke", {"ID": grant["ID"]}))
        out.append(http_ok(ep, "/v3/kv/deleterange", {"key": key, "prev_kv": True}))
        out.append(http_post(ep, "/v3/kv/put", {"value": json_b64("v")})[1])
        out.append(http_post(ep, "/v3/kv/put", raw=b'{"key": "Zm9v"')[1])
        return out

    coord = run(coord_server.endpoint)
    etcd = run(etcd_server.endpoint)
    for c, e in zip(coord, etcd, strict=True):
        assert _shape(c) == _shape(e), (c, e)
    assert coord[-1] == etcd[-1]  # same bad-JSON error text too


def test_expect_100_continue_and_head(coord_server: CoordProc, prefix: str) -> None:
    host, port = coord_server.endpoint.split(":")
    body = json.dumps({"key": json_b64(prefix + "big"), "value": json_b64("x" * 4096)}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        first = s.recv(1024)  # the server must answer 100 before we send the body
        assert first.startswith(b"HTTP/1.1 100 ")
        s.sendall(body)
        rest = b""
        while b"revision" not in rest:
            chunk = s.recv(65536)
            assert chunk, rest
            rest += chunk
        assert rest.startswith(b"HTTP/1.1 200 ")
    got = http_ok(coord_server.endpoint, "/v3/kv/range", {"key": json_b64(prefix + "big")})
    assert json_unb64(got["kvs"][0]["value"]) == b"x" * 4096
    status, data, headers = http_post(coord_server.endpoint, "/health", method="HEAD")
    assert status == 200
    assert data is None
    assert int(headers["content-length"]) > 0


# ---- one connection for many requests: streamed responses must leave it usable ----


def _connect(endpoint: str) -> http.client.HTTPConnection:
    host, port = endpoint.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=10)


def _request(
    conn: http.client.HTTPConnection, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn.request("POST", path, body=json.dumps(body), headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.read()


def _lines(data: bytes) -> list[Any]:
    """The JSON objects of a streamed (newline-delimited) response body."""
    return [json.loads(line) for line in data.splitlines() if line.strip()]


class Pipeline:
    """One raw HTTP/1.1 connection: requests are written at once, possibly several before any
    answer (pipelining), and each answer is read back in order with an h11 client parser."""

    def __init__(self, endpoint: str) -> None:
        host, port = endpoint.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=15)
        self._parser = h11.Connection(h11.CLIENT)
        self._sent: list[tuple[h11.Request, bytes]] = []

    def send(self, *requests: tuple[str, Any], headers: dict[str, str] | None = None) -> None:
        """Write each (path, JSON body) request, all in one write."""
        raw = b""
        for path, body in requests:
            data = json.dumps(body).encode()
            request = h11.Request(
                method="POST",
                target=path,
                headers=[
                    ("Host", "gateway-test"),
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(data))),
                    *(headers or {}).items(),
                ],
            )
            raw += h11.Connection(h11.CLIENT).send(request) + data
            self._sent.append((request, data))
        self.sock.sendall(raw)

    def _next(self) -> Any:
        while (event := self._parser.next_event()) is h11.NEED_DATA:
            self._parser.receive_data(self.sock.recv(65536))
        if isinstance(event, h11.ConnectionClosed):
            raise AssertionError("the server closed the connection instead of answering")
        return event

    def status(self) -> int:
        """Start reading the next answer: its HTTP status."""
        request, data = self._sent.pop(0)  # tell the parser which request this answers
        self._parser.send(request)
        self._parser.send(h11.Data(data=data))
        self._parser.send(h11.EndOfMessage())
        event = self._next()
        assert isinstance(event, h11.Response), event
        return int(event.status_code)

    def chunk(self) -> bytes | None:
        """The next piece of the answer's body, None at its end (and then the connection must
        stay open for the next request)."""
        event = self._next()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        assert isinstance(event, h11.EndOfMessage), event
        assert self._parser.their_state is h11.DONE
        self._parser.start_next_cycle()
        return None

    def response(self) -> tuple[int, bytes]:
        """The next whole answer: (status, body)."""
        status = self.status()
        body = b""
        while (piece := self.chunk()) is not None:
            body += piece
        return status, body

    def close(self) -> None:
        self.sock.close()


def test_keepalive_then_range_on_one_connection(backend: str, prefix: str) -> None:
    """The issue's reproduction, as a PostgreSQL HA manager drives the gateway."""
    conn = _connect(backend)
    try:
        status, body = _request(conn, "/v3/lease/grant", {"TTL": 30})
        assert status == 200, body
        lease_id = json.loads(body)["ID"]
        status, body = _request(conn, "/v3/lease/keepalive", {"ID": lease_id})
        assert status == 200, body
        (result,) = _lines(body)
        assert result["result"]["ID"] == lease_id
        assert int(result["result"]["TTL"]) > 0
        status, body = _request(conn, "/v3/kv/range", {"key": json_b64(prefix + "k")})
        assert status == 200, body
        assert "revision" in json.loads(body)["header"]
    finally:
        conn.close()


def test_two_requests_pipelined_behind_a_keepalive_are_answered(backend: str, prefix: str) -> None:
    lease_id = http_ok(backend, "/v3/lease/grant", {"TTL": 30})["ID"]
    key = json_b64(prefix + "piped")
    pipe = Pipeline(backend)
    try:
        pipe.send(
            ("/v3/lease/keepalive", {"ID": lease_id}),
            ("/v3/kv/put", {"key": key, "value": json_b64("v"), "lease": lease_id}),
            ("/v3/kv/range", {"key": key}),
        )
        status, body = pipe.response()
        assert status == 200, body
        assert [r["result"]["ID"] for r in _lines(body)] == [lease_id]
        status, body = pipe.response()
        assert status == 200, body
        revision = json.loads(body)["header"]["revision"]
        status, body = pipe.response()
        assert status == 200, body
        (kv,) = json.loads(body)["kvs"]
        assert (json_unb64(kv["value"]), kv["mod_revision"], kv["lease"]) == (
            b"v",
            revision,
            lease_id,
        )
    finally:
        pipe.close()


def test_a_thousand_alternating_keepalives_and_txns_on_one_connection(
    backend: str, prefix: str
) -> None:
    key = json_b64(prefix + "counter")
    conn = _connect(backend)
    try:
        status, body = _request(conn, "/v3/lease/grant", {"TTL": 60})
        assert status == 200, body
        lease_id = json.loads(body)["ID"]
        version = 0
        for i in range(1000):
            if i % 2 == 0:
                status, body = _request(conn, "/v3/lease/keepalive", {"ID": lease_id})
                assert status == 200, (i, body)
                assert [r["result"]["ID"] for r in _lines(body)] == [lease_id]
            else:  # compare-and-swap on the key's version: each one must see the last
                status, body = _request(
                    conn,
                    "/v3/kv/txn",
                    {
                        "compare": [
                            {"key": key, "target": "VERSION", "result": "EQUAL", "version": version}
                        ],
                        "success": [{"request_put": {"key": key, "value": json_b64(str(i))}}],
                    },
                )
                assert status == 200, (i, body)
                assert json.loads(body).get("succeeded") is True, (i, body)
                version += 1
        got = http_ok(backend, "/v3/kv/range", {"key": key})
        assert got["kvs"][0]["version"] == str(version) == "500"
    finally:
        conn.close()


def test_client_leaving_during_a_stream_is_a_debug_line(tmp_path: Path, prefix: str) -> None:
    """Watch clients that go away mid-stream end their calls quietly: a DEBUG line each, no
    ERROR, and the server goes on serving."""
    server = CoordProc(tmp_path, args=["--log-level", "debug"])
    try:
        ep = server.endpoint
        for _ in range(3):
            pipe = Pipeline(ep)
            pipe.send(("/v3/watch", {"create_request": {"key": json_b64(prefix)}}))
            assert pipe.status() == 200
            assert pipe.chunk()  # the stream is open: "created"
            pipe.close()
        wait_for(
            lambda: server.output().count("closed the connection during") >= 3,
            what="a debug line for each watch client that left",
        )
        put(ep, prefix + "w", "after")
        got = http_ok(ep, "/v3/kv/range", {"key": json_b64(prefix + "w")})
        assert json_unb64(got["kvs"][0]["value"]) == b"after"
    finally:
        server.stop()
    assert not _log_errors(server.log_path), server.log_path.read_text(errors="replace")


@pytest.fixture(params=["etcd", "coord"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerCluster]:
    """Two members: stopping either leaves the other without a leader."""
    if request.param == "etcd":
        require_binary("etcd")
    cluster = ServerCluster(request.param, tmp_path, size=2)
    yield cluster
    cluster.stop()
    if cluster.kind == "coord":
        for m in cluster.members:
            log = tmp_path / f"{m.name}.log"
            assert not _log_errors(log), log.read_text(errors="replace")


def test_watch_the_server_cancels_then_put_on_the_same_connection(
    pair: ServerCluster, prefix: str
) -> None:
    """A ``hasleader`` watch ends with etcd's "no leader" error chunk once its member loses the
    leader; a serializable read pipelined behind it during the stream is answered, and once the
    leader is back a put on the same connection succeeds."""
    ep = pair.members[0].endpoint
    key = json_b64(prefix + "k")
    http_ok(ep, "/v3/kv/put", {"key": key, "value": json_b64("before")})
    pipe = Pipeline(ep)
    try:
        # clientv3.WithRequireLeader over the gateway: grpc-gateway turns Grpc-Metadata-*
        # headers into gRPC metadata, and "hasleader: true" is what etcd's interceptor reads.
        pipe.send(
            ("/v3/watch", {"create_request": {"key": key}}),
            headers={"Grpc-Metadata-Hasleader": "true"},
        )
        assert pipe.status() == 200
        body = pipe.chunk() or b""
        assert _lines(body)[0]["result"]["created"] is True
        pipe.send(("/v3/kv/range", {"key": key, "serializable": True}))  # while it streams
        pair.kill(1)
        while (piece := pipe.chunk()) is not None:
            body += piece
        created, error = _lines(body)
        assert created["result"]["created"] is True
        assert error == {
            "error": {
                "grpc_code": 14,
                "http_code": 503,
                "message": "etcdserver: no leader",
                "http_status": "Service Unavailable",
            }
        }
        status, body = pipe.response()
        assert status == 200, body
        assert json_unb64(json.loads(body)["kvs"][0]["value"]) == b"before"
        # without a leader such a watch is refused at once, with the error's HTTP status
        pipe.send(
            ("/v3/watch", {"create_request": {"key": key}}),
            headers={"Grpc-Metadata-Hasleader": "true"},
        )
        status, body = pipe.response()
        assert (status, _lines(body)) == (503, [error])

        pair.restart(1)
        pair.ready()
        pipe.send(
            ("/v3/kv/put", {"key": key, "value": json_b64("after")}), ("/v3/kv/range", {"key": key})
        )
        status, body = pipe.response()
        assert status == 200, body
        status, body = pipe.response()
        assert status == 200, body
        assert json_unb64(json.loads(body)["kvs"][0]["value"]) == b"after"
    finally:
        pipe.close()
