"""``GET /health``, ``/livez`` and ``/readyz`` of a 3-member cluster before and after it
loses quorum."""

from __future__ import annotations

from pathlib import Path

from cluster.clusterlib import Cluster
from support import http_get, http_ok, http_post, json_b64, json_unb64, wait_for


def test_health_before_and_after_losing_quorum(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 3, timings=()).start()
    procs = cluster.procs()
    try:
        for p in procs:
            assert http_post(p.endpoint, "/health", method="GET")[:2] == (
                200,
                {"health": "true", "reason": ""},
            )
            assert http_get(f"http://{p.endpoint}/readyz", timeout=10) == (200, b"ok\n")
        # the gateway of any member serves linearizable reads of the replicated store
        http_ok(procs[0].endpoint, "/v3/kv/put", {"key": json_b64("/h"), "value": json_b64("v")})
        got = http_ok(procs[2].endpoint, "/v3/kv/range", {"key": json_b64("/h")})
        assert json_unb64(got["kvs"][0]["value"]) == b"v"

        procs[1].kill()
        procs[2].kill()
        survivor = procs[0].endpoint
        wait_for(
            lambda: http_post(survivor, "/health", method="GET")[0] == 503,
            timeout=30,
            what="/health to report the lost quorum",
        )
        status, body, _ = http_post(survivor, "/health", method="GET")
        assert status == 503
        assert body["health"] == "false"
        assert body["reason"]  # e.g. "RAFT NO LEADER" or "QGET ERROR: ..."
        # the survivor is alive (a local read works) but not ready (no read through consensus)
        assert http_get(f"http://{survivor}/livez", timeout=10) == (200, b"ok\n")
        status, text = http_get(f"http://{survivor}/readyz", timeout=10)
        assert status == 503
        lines = text.decode().splitlines()
        assert lines[:2] == ["[+]data_corruption ok", "[+]serializable_read ok"], lines
        assert lines[2].startswith("[-]linearizable_read failed: "), lines
        # writes are refused with etcd's error shape while there is no quorum
        status, body, _ = http_post(
            survivor, "/v3/kv/put", {"key": json_b64("/h"), "value": json_b64("w")}
        )
        assert status in (503, 504)
        assert set(body) == {"error", "code", "message"}
    finally:
        cluster.stop()
