"""A client that goes away (Ctrl-C or kill -9) mid-stream is normal: the server logs no ERROR
and no traceback (it used to log grpclib's "Failed to handle cancellation" with a traceback
when a watch or keep-alive stream was reset while the server was writing to it)."""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import pytest
from support import CoordProc, Proc, etcdctl, require_binary, wait_for

from coord import Client

pytestmark = pytest.mark.etcdctl

ROUNDS = 3


def _etcdctl(tmp: Path, endpoint: str, log: str, *args: str) -> Proc:
    return Proc(
        [require_binary("etcdctl"), f"--endpoints={endpoint}", *args],
        tmp / log,
        env={"ETCDCTL_API": "3"},
    )


def test_killed_watch_lock_and_keepalive_clients_log_no_error(tmp_path: Path) -> None:
    server = CoordProc(tmp_path, name="dc")
    stop = threading.Event()

    def writer() -> None:  # keeps the watch streams busy sending (bounded: 120 s at most)
        deadline = time.monotonic() + 120
        with Client(server.endpoint, timeout=10) as c:
            i = 0
            while not stop.is_set() and time.monotonic() < deadline:
                c.put("/dc/w", str(i))
                i += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        for n, sig in enumerate((signal.SIGINT, signal.SIGKILL) * ROUNDS, start=1):
            watch = _etcdctl(tmp_path, server.endpoint, f"watch{n}.log", "watch", "/dc/w")

            def watched(w: Proc = watch) -> bool:
                return w.output().count("PUT") >= 3

            wait_for(watched, timeout=20, what="watch events")
            watch.kill(sig)

            holder = _etcdctl(tmp_path, server.endpoint, f"holder{n}.log", "lock", f"/dc/lock{n}")

            def held(h: Proc = holder, n: int = n) -> bool:
                return f"/dc/lock{n}/" in h.output()

            wait_for(held, timeout=20, what="the lock holder")
            waiter = _etcdctl(tmp_path, server.endpoint, f"waiter{n}.log", "lock", f"/dc/lock{n}")

            def waiting(n: int = n) -> bool:
                keys = etcdctl(server.endpoint, "get", "--prefix", "--keys-only", f"/dc/lock{n}/")
                return len(keys.stdout.split()) == 2

            wait_for(waiting, timeout=20, what="the lock waiter's key")
            waiter.kill(sig)
            holder.kill(sig)

            out = etcdctl(server.endpoint, "lease", "grant", "3").stdout
            m = re.search(r"lease ([0-9a-f]+) granted", out)
            assert m is not None, out
            keeper = _etcdctl(
                tmp_path, server.endpoint, f"keepalive{n}.log", "lease", "keep-alive", m.group(1)
            )

            def kept_alive(k: Proc = keeper) -> bool:
                return k.output().count("keepalived") >= 2

            wait_for(kept_alive, timeout=20, what="keep-alive responses")
            keeper.kill(sig)
        stop.set()
        thread.join(30)
        # the server still serves, and its log stays clean for a while after the last kill
        etcdctl(server.endpoint, "put", "/dc/after", "ok")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            log = server.output()
            assert " ERROR " not in log, log
            assert "Traceback" not in log, log
            time.sleep(0.1)
        assert server.alive()
    finally:
        stop.set()
        server.stop()
