"""TLS between members (``--peer-*`` flags, ``https://`` peer URLs), real 3-member clusters."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from cluster.clusterlib import Cluster
from support import (
    grpc_status_ok,
    http_get,
    http_ok,
    json_b64,
    json_unb64,
    wait_for,
)

from coord.server.tls import TLSInfo
from coord.server.transport import discover


def peer_flags(pki: Any) -> list[str]:
    return [*pki.server_flags("peer-"), "--peer-client-cert-auth"]


def test_tls_peer_cluster_elects_leader_and_replicates(tmp_path: Path, pki: Any) -> None:
    cluster = Cluster(tmp_path, 3, peer_scheme="https", extra=peer_flags(pki), timings=()).start()
    procs = cluster.procs()
    try:
        leaders = {http_ok(p.endpoint, "/v3/maintenance/status")["leader"] for p in procs}
        assert len(leaders) == 1
        assert leaders != {None}
        http_ok(
            procs[0].endpoint,
            "/v3/kv/put",
            {"key": json_b64("/tls"), "value": json_b64("replicated")},
        )
        for p in procs[1:]:
            got = http_ok(p.endpoint, "/v3/kv/range", {"key": json_b64("/tls")})
            assert json_unb64(got["kvs"][0]["value"]) == b"replicated"
        members = http_ok(procs[0].endpoint, "/v3/cluster/member/list")["members"]
        assert all(u.startswith("https://") for m in members for u in m["peerURLs"])
        # the peer port really speaks TLS only, and requires a client certificate
        peer_url = members[0]["peerURLs"][0]
        with pytest.raises(OSError, match="could not reach"):  # plaintext: no answer
            anyio.run(discover, [peer_url.replace("https://", "http://")], 2.0)
        no_cert = TLSInfo(trusted_ca_file=str(pki.ca), prefix="peer-").client_context()
        with pytest.raises(OSError, match="could not reach"):
            anyio.run(partial(discover, [peer_url], 2.0, client_ssl=no_cert))
        ours = TLSInfo(
            str(pki.server_cert), str(pki.server_key), str(pki.ca), prefix="peer-"
        ).client_context()
        assert len(anyio.run(partial(discover, [peer_url], 2.0, client_ssl=ours))) > 0
    finally:
        cluster.stop()


def test_member_with_certificate_of_another_ca_cannot_join(
    tmp_path: Path, pki: Any, other_pki: Any
) -> None:
    # member 2 trusts the right CA but presents a certificate signed by another one
    intruder = [
        "--peer-cert-file",
        str(other_pki.server_cert),
        "--peer-key-file",
        str(other_pki.server_key),
    ]
    cluster = Cluster(
        tmp_path,
        3,
        peer_scheme="https",
        extra=peer_flags(pki),
        timings=(),
        member_args={2: intruder},
    ).start(wait=[0, 1])
    procs = cluster.procs()
    try:
        good, bad = procs[0], procs[2]
        http_ok(good.endpoint, "/v3/kv/put", {"key": json_b64("/x"), "value": json_b64("v")})
        # the refusal is visible on the honest members ...
        wait_for(
            lambda: "TLS handshake" in good.output() or "TLS handshake" in procs[1].output(),
            timeout=30,
            what="a refused TLS handshake in the members' logs",
        )
        # ... and the intruder never learns the leader, so it never publishes its attributes
        # and (like etcd before ReadyNotify) never serves clients: its client port is bound
        # from the start (a connection waits in the backlog, as with etcd) but no request is
        # answered (observed over several election timeouts)
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            assert bad.alive()
            assert not grpc_status_ok(bad.client_port)
            assert http_get(f"http://{bad.endpoint}/version", timeout=0.3) == (0, b"")
        assert "published this member's attributes" not in bad.output()
        assert "waiting for this member's attributes" in bad.output()
        # the two honest members still form a working quorum
        got = http_ok(procs[1].endpoint, "/v3/kv/range", {"key": json_b64("/x")})
        assert json_unb64(got["kvs"][0]["value"]) == b"v"
    finally:
        cluster.stop()
