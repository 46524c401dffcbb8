"""The operator's endpoints of a 3-member cluster: ``/dashboard/api/cluster`` (the
dashboard's data), etcd v2's ``/v2/stats/self`` and ``/v2/stats/leader``,
``--listen-metrics-urls`` and ``--metrics`` (issue 15)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cluster.clusterlib import Cluster
from support import (
    CoordProc,
    http_get,
    http_ok,
    json_b64,
    make_pki,
    scrape_metrics,
    wait_for,
)

from coord import Client


def get_json(endpoint: str, path: str) -> tuple[int, Any]:
    status, body = http_get(f"http://{endpoint}{path}", timeout=10)
    return status, json.loads(body) if body else None


def test_cluster_overview_and_v2_stats(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 3, timings=()).start()  # etcd's timings: a stable leader
    try:
        leader = cluster.wait_leader()
        followers = [m for m in cluster.members if m is not leader]
        ids = {m.name: f"{m.id:x}" for m in cluster.members}
        http_ok(leader.endpoint, "/v3/kv/put", {"key": json_b64("/ops/k"), "value": json_b64("v")})

        # the dashboard's data, asked of a follower: every member, and the leader's view
        def overview() -> dict[str, Any]:
            status, data = get_json(followers[0].endpoint, "/dashboard/api/cluster")
            assert status == 200, data
            return dict(data)

        def measured() -> bool:
            data = overview()
            return len(data["followers"]) == 2 and all(f["rtt"] for f in data["followers"])

        wait_for(measured, timeout=30, what="the leader's round trips to both followers")
        data = overview()
        assert data["self"] == ids[followers[0].name]
        assert data["leader"] == ids[leader.name]
        rows = {r["name"]: r for r in data["members"]}
        assert set(rows) == {"m1", "m2", "m3"}
        assert [r["role"] for r in data["members"]].count("leader") == 1
        assert rows[leader.name]["role"] == "leader"
        for r in data["members"]:
            assert r["up"] is True, r
            assert r["id"] == ids[r["name"]]
            assert r["client_urls"] == [f"http://{cluster.members[int(r['name'][1]) - 1].endpoint}"]
            assert r["term"] >= 1
            assert r["applied"] >= 1
            assert r["commit"] >= r["applied"]
            assert r["db_size"] > 0
        assert {f["id"] for f in data["followers"]} == {ids[m.name] for m in followers}
        for f in data["followers"]:
            assert f["name"] in {m.name for m in followers}
            rtt = f["rtt"]
            assert 0 < rtt["min"] <= rtt["average"] <= rtt["max"] < 5, rtt
            assert f["success"] >= 1
            assert f["lag_entries"] >= 0
            assert f["since_heard"] is not None
            assert f["since_heard"] < 5
        assert data["state"]["keys"] >= 1
        assert data["state"]["revision"] >= 2
        assert data["counters"]["puts"] >= 1
        hist = data["histograms"]["request"]
        assert len(hist["counts"]) == len(hist["bounds"]) + 1
        assert sum(data["histograms"]["fsync"]["counts"]) > 0

        # etcd v2's stats: the leader answers for its followers, a follower refuses
        status, stats = get_json(leader.endpoint, "/v2/stats/leader")
        assert status == 200
        assert stats["leader"] == ids[leader.name]
        assert set(stats["followers"]) == {ids[m.name] for m in followers}
        for f in stats["followers"].values():
            assert f["counts"]["success"] >= 1
            assert f["latency"]["average"] > 0  # milliseconds, as v2
        assert get_json(followers[0].endpoint, "/v2/stats/leader") == (
            403,
            {"message": "not current leader"},
        )
        status, self_stats = get_json(leader.endpoint, "/v2/stats/self")
        assert status == 200
        assert self_stats["state"] == "StateLeader"
        assert self_stats["id"] == ids[leader.name]
        assert self_stats["name"] == leader.name
        assert self_stats["leaderInfo"]["leader"] == ids[leader.name]
        assert self_stats["sendAppendRequestCnt"] > 0
        status, self_stats = get_json(followers[1].endpoint, "/v2/stats/self")
        assert self_stats["state"] == "StateFollower"
        assert self_stats["recvAppendRequestCnt"] > 0

        # a member that is down is shown as down, with the reason
        cluster.kill(followers[1])
        data = overview()
        down = {r["name"]: r for r in data["members"]}[followers[1].name]
        assert down["up"] is False
        assert down["role"] == "unknown"
        assert down["error"]
    finally:
        cluster.stop()


def test_listen_metrics_urls_serve_only_metrics_and_health(tmp_path: Path) -> None:
    server = CoordProc(
        tmp_path, args=["--listen-metrics-urls", "http://127.0.0.1:0", "--metrics", "extensive"]
    )
    try:
        urls = json.loads(server.port_file.read_text())["metrics"]
        assert len(urls) == 1
        metrics = urls[0].removeprefix("http://")
        with Client(server.endpoint) as c:
            c.put("/m", "v")
        types, samples = scrape_metrics(metrics)
        assert types["etcd_server_has_leader"] == "gauge"
        assert types["grpc_server_handling_seconds"] == "histogram"  # --metrics extensive
        put = 'grpc_server_handling_seconds_count{grpc_method="Put",'
        assert samples[put + 'grpc_service="etcdserverpb.KV",grpc_type="unary"}'] >= 1
        assert http_get(f"http://{metrics}/health", timeout=10)[0] == 200
        assert http_get(f"http://{metrics}/readyz", timeout=10) == (200, b"ok\n")
        for path in ("/v3/kv/range", "/dashboard", "/version", "/v2/stats/self"):
            assert http_get(f"http://{metrics}{path}", timeout=10)[0] == 404, path
        assert "listening for metrics on http://127.0.0.1:" in server.output()
    finally:
        server.stop()


def test_metrics_off_counts_nothing_and_serves_no_metrics(tmp_path: Path) -> None:
    server = CoordProc(tmp_path, args=["--metrics", "off"])
    try:
        with Client(server.endpoint) as c:
            c.put("/m", "v")
            assert c.get("/m") is not None
        assert http_get(f"http://{server.endpoint}/metrics", timeout=10)[0] == 404
        assert get_json(server.endpoint, "/v2/stats/self")[0] == 200  # the rest stays
    finally:
        server.stop()


def test_dashboard_and_metrics_over_https(tmp_path: Path) -> None:
    """Behind a TLS client port the dashboard, its data and /metrics are served over HTTPS,
    and so is an https:// --listen-metrics-urls (with the client certificate flags)."""
    pki = make_pki(tmp_path / "pki", "ops")
    server = CoordProc(
        tmp_path,
        args=[
            "--listen-client-urls",
            "http://127.0.0.1:0,https://127.0.0.1:0",
            "--listen-metrics-urls",
            "https://127.0.0.1:0",
            "--cert-file",
            str(pki.server_cert),
            "--key-file",
            str(pki.server_key),
        ],
    )
    try:
        ports = json.loads(server.port_file.read_text())
        secure, metrics = ports["client"][1], ports["metrics"][0]
        assert secure.startswith("https://")
        assert metrics.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(pki.ca))

        def fetch(url: str) -> tuple[int, bytes, str]:
            with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
                return resp.status, resp.read(), resp.headers["Content-Type"]

        status, page, ctype = fetch(f"{secure}/dashboard")
        assert (status, ctype) == (200, "text/html; charset=utf-8")
        assert b"/dashboard/dashboard.js" in page
        status, body, ctype = fetch(f"{secure}/dashboard/dashboard.js")
        assert (status, ctype) == (200, "text/javascript; charset=utf-8")
        status, body, _ = fetch(f"{secure}/dashboard/api/cluster")
        data = json.loads(body)
        assert [m["role"] for m in data["members"]] == ["leader"]
        assert data["members"][0]["client_urls"] == [ports["client"][0]]  # as advertised
        for url in (secure, metrics):
            status, body, _ = fetch(f"{url}/metrics")
            assert status == 200
            assert b"\netcd_server_has_leader 1.0\n" in body
        with pytest.raises(urllib.error.HTTPError) as e:
            fetch(f"{secure}/dashboard/nothing-here.js")
        assert e.value.code == 404
        e.value.close()
    finally:
        server.stop()
