"""``hasleader`` streams (Watch, LeaseKeepAlive) end with ``etcdserver: no leader`` when the
member loses its leader."""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import unquote

import pytest
from cluster.clusterlib import Cluster
from support import Proc, close_channel, etcdctl, require_binary, wait_for

pytestmark = pytest.mark.etcdctl


def test_watch_on_follower_ends_when_quorum_is_lost(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    watch: Proc | None = None
    try:
        leader = c.wait_leader()
        follower, other = [m for m in c.members if m is not leader]
        watch = Proc(
            [require_binary("etcdctl"), f"--endpoints={follower.endpoint}", "watch", "/rl/k"],
            tmp_path / "watch.log",
            env={"ETCDCTL_API": "3"},
        )

        def established() -> bool:
            etcdctl(leader.endpoint, "put", "/rl/k", "marker")
            return "marker" in watch.output()

        wait_for(established, timeout=15, what="watch established", interval=0.2)
        c.kill(leader)
        c.kill(other)
        wait_for(
            lambda: not watch.alive() or "no leader" in watch.output(),
            timeout=30,
            what="watch canceled for lack of a leader",
        )
        assert "etcdserver: no leader" in watch.output()
    finally:
        if watch is not None:
            watch.kill()
            watch.stop()
        c.stop()


def test_keepalive_stream_on_follower_ends_when_quorum_is_lost(tmp_path: Path) -> None:
    import asyncio

    from grpclib.client import Channel
    from grpclib.const import Cardinality
    from grpclib.exceptions import StreamTerminatedError

    from coord._pb import etcdserverpb as pb

    c = Cluster(tmp_path).start()
    try:
        leader = c.wait_leader()
        follower, other = [m for m in c.members if m is not leader]

        async def scenario() -> str:
            ch = Channel("127.0.0.1", follower.client_port)
            try:
                stub = pb.LeaseStub(ch)
                lease = await stub.lease_grant(pb.LeaseGrantRequest(ttl=30))
                outcome = "the stream went on"
                try:
                    async with ch.request(
                        "/etcdserverpb.Lease/LeaseKeepAlive",
                        Cardinality.STREAM_STREAM,
                        pb.LeaseKeepAliveRequest,
                        pb.LeaseKeepAliveResponse,
                        metadata={"hasleader": "true"},
                    ) as st:
                        await st.send_message(pb.LeaseKeepAliveRequest(id=lease.id))
                        first = await asyncio.wait_for(st.recv_message(), 10)
                        assert first is not None
                        assert first.ttl > 0
                        c.kill(leader)
                        c.kill(other)
                        # the request side stays open: only the server can end this; read
                        # its trailers directly (grpclib may surface the reset that follows)
                        with contextlib.suppress(StreamTerminatedError):
                            await asyncio.wait_for(st.recv_message(), 20)
                        raw = st._stream
                        assert raw is not None
                        trailers = dict(await asyncio.wait_for(raw.recv_trailers(), 5))
                        outcome = unquote(trailers.get("grpc-message", "no grpc-message"))
                        raise _Done  # leave without grpclib's "outgoing stream not ended" check
                except _Done:
                    pass
                return outcome
            finally:
                await close_channel(ch)

        assert asyncio.run(scenario()) == "etcdserver: no leader"
    finally:
        c.stop()


class _Done(Exception):
    """Leaves a grpclib client stream early."""
