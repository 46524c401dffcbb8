"""The blocking facade: thread hops, shutdown, and calls that would deadlock."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from coord import Client, ConnectionFailedError


def test_forgotten_client_does_not_hang_interpreter_exit(backend: str) -> None:
    code = (
        f"from coord import Client\nc = Client({backend!r})\nc.put('/exit-test', 'x')\n"
        "w = c.watch('/exit-test')\nl = c.lease(5)\nprint('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_blocking_call_from_loop_thread_raises_instead_of_deadlocking(
    client: Client, prefix: str
) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def on_lost(_lease: object) -> None:
        try:
            client.get(prefix + "x")  # runs on the loop thread: must not block it
        except RuntimeError as e:
            errors.append(e)
        done.set()

    lease = client.lease(5, on_lost=on_lost)
    client.revoke_lease(lease.id)  # as if someone else revoked it: loss on next keep-alive
    assert done.wait(10)
    assert len(errors) == 1
    assert "deadlock" in str(errors[0])
    assert client.get(prefix + "x") is None  # the client still works


def test_closed_client_raises(backend: str) -> None:
    c = Client(backend)
    c.close()
    c.close()  # idempotent
    with pytest.raises(ConnectionFailedError, match="closed"):
        c.get("/k")


def test_watch_on_unreachable_endpoint_times_out() -> None:
    from support import free_port

    with Client(f"127.0.0.1:{free_port()}", timeout=1) as c:
        with pytest.raises(ConnectionFailedError, match="not created"):
            c.watch("/k")
        assert c.async_client._watch_mux._watches == {}


def test_call_runs_coroutines_and_functions_on_the_loop(client: Client, prefix: str) -> None:
    client.put(prefix + "c", "v")
    kv = client.call(client.async_client.get, prefix + "c")
    assert kv.value == b"v"
    assert client.call(threading.get_ident) != threading.get_ident()

    async def boom() -> None:
        raise ValueError("from the loop")

    with pytest.raises(ValueError, match="from the loop"):
        client.call(boom)
