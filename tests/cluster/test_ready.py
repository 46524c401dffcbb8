"""Client serving starts only after this member's attributes are published (etcd ReadyNotify)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from grpclib.client import Channel
from support import (
    CoordProc,
    close_channel,
    free_port,
    grpc_status_ok,
    http_get,
    port_open,
    wait_for,
)

from coord._pb import etcdserverpb as pb


def member_list(port: int) -> pb.MemberListResponse:
    async def call() -> pb.MemberListResponse:
        ch = Channel("127.0.0.1", port)
        try:
            return await asyncio.wait_for(
                pb.ClusterStub(ch).member_list(pb.MemberListRequest()), 5.0
            )
        finally:
            await close_channel(ch)

    return asyncio.run(call())


def test_first_answer_lists_own_client_urls(tmp_path: Path) -> None:
    proc = CoordProc(tmp_path, name="fresh", wait=False)
    try:
        wait_for(
            lambda: port_open(proc.client_port), timeout=30, interval=0.005, what="client port open"
        )
        members = member_list(proc.client_port).members
        assert [list(m.client_ur_ls) for m in members] == [[f"http://{proc.endpoint}"]]
        proc.wait_ready()
        assert "published this member's attributes" in proc.output()
    finally:
        proc.stop()


def test_member_without_quorum_does_not_serve_clients(tmp_path: Path) -> None:
    peers = [free_port() for _ in range(3)]
    cluster = ",".join(f"q{i}=http://127.0.0.1:{p}" for i, p in enumerate(peers))
    procs: list[CoordProc] = []

    def start(i: int) -> CoordProc:
        url = f"http://127.0.0.1:{peers[i]}"
        return CoordProc(
            tmp_path,
            name=f"q{i}",
            wait=False,
            args=[
                "--listen-peer-urls",
                url,
                "--initial-advertise-peer-urls",
                url,
                "--initial-cluster",
                cluster,
                "--initial-cluster-token",
                f"rq-{peers[0]}",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ],
        )

    try:
        procs.append(start(0))
        wait_for(
            lambda: "waiting for this member's attributes" in procs[0].output(),
            timeout=30,
            what="the waiting-to-publish log line",
        )
        # the peer port is up (so others can reach it); the client port is bound (a connection
        # waits in the backlog, as with etcd) but no request is answered
        assert port_open(peers[0])
        assert procs[0].alive()
        assert not grpc_status_ok(procs[0].client_port)
        assert http_get(f"http://{procs[0].endpoint}/version", timeout=0.3) == (0, b"")
        procs += [start(1), start(2)]
        for p in procs:
            p.wait_ready(timeout=60)
        for p in procs:
            members = member_list(p.client_port).members
            assert sorted(m.name for m in members) == ["q0", "q1", "q2"]
            assert all(m.client_ur_ls for m in members), members
    finally:
        for p in procs:
            p.stop()
