"""Failpoints (server/failpoints.py): terms, counts, blocking and release, the HTTP interface,
and a real server whose WAL fsync is stalled through it."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from support import CoordProc, free_port, wait_for
from unwrap import unwrap

from coord import Client
from coord.server import failpoints


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    for name in list(failpoints.ACTIVE):
        failpoints.disarm(name)


def test_disabled_failpoints_are_an_empty_dict() -> None:
    assert not failpoints.ACTIVE
    failpoints.hit("walBeforeSync")  # unarmed: returns at once


@pytest.mark.parametrize("term", ["sleep", "sleep(x)", "2*", "panic", "block()", ""])
def test_bad_terms_are_refused(term: str) -> None:
    with pytest.raises(failpoints.FailpointError, match="bad term"):
        failpoints.arm("x", term)
    assert "x" not in failpoints.ACTIVE


def test_sleep_and_count() -> None:
    failpoints.arm("x", "2*sleep(50)")
    t0 = time.monotonic()
    failpoints.hit("x")
    failpoints.hit("x")
    assert time.monotonic() - t0 >= 0.1
    assert "x" not in failpoints.ACTIVE  # spent
    t0 = time.monotonic()
    failpoints.hit("x")
    assert time.monotonic() - t0 < 0.05


def test_block_until_disarmed_or_rearmed() -> None:
    failpoints.arm("x", "block")
    done = threading.Event()

    def worker() -> None:
        failpoints.hit("x")
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    assert not done.wait(0.1)
    failpoints.arm("x", "sleep(1)")  # re-arming releases the blocked caller
    assert done.wait(5)
    t.join()


def test_async_block_waits_only_the_task() -> None:
    failpoints.arm("x", "block")
    order: list[str] = []

    async def main() -> None:
        async def blocked() -> None:
            await failpoints.ahit("x")
            order.append("released")

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked)
            await anyio.sleep(0.05)
            order.append("loop ran")
            failpoints.disarm("x")

    anyio.run(main)
    assert order == ["loop ran", "released"]


def _http(port: int, method: str, name: str, body: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/{name}",
        method=method,
        data=body.encode() if body is not None else None,
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_http_interface() -> None:
    server = failpoints.serve_http("127.0.0.1:0")
    port = server.server_address[1]
    try:
        assert _http(port, "PUT", "walBeforeSync", "3*sleep(10)")[0] == 204
        assert _http(port, "GET", "walBeforeSync") == (200, "3*sleep(10)\n")
        assert _http(port, "GET", "") == (200, "walBeforeSync=3*sleep(10)\n")
        code, text = _http(port, "PUT", "walBeforeSync", "explode")
        assert code == 400
        assert "bad term 'explode'" in text
        assert _http(port, "DELETE", "walBeforeSync")[0] == 204
        assert _http(port, "GET", "walBeforeSync")[0] == 404
        assert _http(port, "DELETE", "walBeforeSync")[0] == 404
    finally:
        server.shutdown()
        server.server_close()  # shutdown() only stops the loop; this closes the socket


def test_a_stalled_fsync_stalls_writes_on_a_real_server(tmp_path: Path) -> None:
    fp_port = free_port()
    proc = CoordProc(tmp_path, env={"COORD_FAILPOINTS_HTTP": f"127.0.0.1:{fp_port}"})
    try:
        with Client(proc.endpoint, timeout=10) as c:
            c.put("/fp/a", "1")
            assert _http(fp_port, "PUT", "walBeforeSync", "block")[0] == 204
            result: list[object] = []
            t = threading.Thread(target=lambda: result.append(c.put("/fp/b", "2")))
            t.start()
            t.join(1.0)
            assert t.is_alive()
            assert not result
            assert unwrap(c.get("/fp/a", serializable=True)).value == b"1"  # reads still served
            assert _http(fp_port, "DELETE", "walBeforeSync")[0] == 204
            t.join(10)
            assert result
            assert unwrap(c.get("/fp/b")).value == b"2"
    finally:
        proc.stop()


def test_crash_kills_the_process(tmp_path: Path) -> None:
    proc = CoordProc(tmp_path, env={"COORD_FAILPOINTS": "walBeforeSync=crash"}, wait=False)
    try:
        wait_for(lambda: not proc.alive(), timeout=20, what="a crash at the first fsync")
        assert proc.popen.returncode == -9
    finally:
        proc.stop()
