"""Tests that need a server of their own (killed, or started with special flags)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support import CoordProc, EtcdProc

from coord import Client


def start(kind: str, tmp: Path, progress_interval: float | None = None) -> EtcdProc | CoordProc:
    if kind == "etcd":
        extra = (
            []
            if progress_interval is None
            else [
                "--experimental-watch-progress-notify-interval",
                f"{int(progress_interval * 1000)}ms",
            ]
        )
        return EtcdProc(tmp, extra=extra)
    # coord-server takes this flag as float seconds (etcd: a Go duration such as "200ms")
    args = (
        []
        if progress_interval is None
        else ["--experimental-watch-progress-notify-interval", str(progress_interval)]
    )
    return CoordProc(tmp, args=args)


@pytest.mark.parametrize("kind", ["coord", "etcd"])
def test_lease_loss_when_cluster_unreachable(kind: str, tmp_path: Path) -> None:
    server = start(kind, tmp_path)
    try:
        with Client(server.endpoint, timeout=2) as c:
            lost = threading.Event()
            lease = c.lease(2, on_lost=lambda _l: lost.set())
            assert lease.alive
            server.kill()  # no keep-alive can be confirmed any more
            assert lease.wait(15), "lease loss was never reported"
            assert lost.is_set()
            assert lease.expired
            assert not lease.alive
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["coord", "etcd"])
def test_progress_notify(kind: str, tmp_path: Path) -> None:
    server = start(kind, tmp_path, progress_interval=0.2)
    try:
        with Client(server.endpoint) as c:
            rev = c.put("/p/a", "1")
            with c.watch("/p/", prefix=True, progress_notify=True) as w:
                other = c.put("/q", "x")  # outside the watched range
                resp = w.next_response(timeout=10)
                while resp is not None and (not resp.progress or resp.revision < other):
                    resp = w.next_response(timeout=10)
                assert resp is not None, "no progress notification within 10 s"
                assert resp.events == ()
                assert resp.revision >= other > rev
                # a progress notification for this watch moves its resume point
                assert w.revision >= other
    finally:
        server.stop()
