"""``--event-loop``: coord-server serves alike on asyncio's loop and on uvloop.

uvloop is the default when installed (the test extra installs it, so most of the suite runs
on it); these tests run the same member on each loop explicitly: gRPC (etcdctl) and the JSON
gateway over plain TCP and over TLS with client certificates, a watch, and a refused TLS
handshake logged with its reason. Asking for uvloop without it installed is one clear error.
"""

from __future__ import annotations

import importlib.util
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import CoordProc, etcdctl, free_port, make_pki, require_binary, wait_for

LOOPS = ["asyncio", "uvloop"]


def _lines(proc: subprocess.Popen[bytes], n: int, timeout: float) -> list[str]:
    """The first ``n`` lines ``proc`` prints, within ``timeout`` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    out = b""
    while out.count(b"\n") < n:
        left = deadline - time.monotonic()
        assert left > 0, f"only {out!r} within {timeout}s"
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"etcdctl exited after {out!r}"
            out += chunk
    return out.decode().splitlines()[:n]


def _uvloop_or_skip() -> None:
    if importlib.util.find_spec("uvloop") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("uvloop is not installed (the test extra installs it)")
        pytest.skip("uvloop is not installed")


@pytest.mark.etcdctl
@pytest.mark.parametrize("loop", LOOPS)
def test_member_serves_plain_and_tls_on_each_loop(tmp_path: Path, loop: str) -> None:
    if loop == "uvloop":
        _uvloop_or_skip()
    pki = make_pki(tmp_path / "pki", "loop")
    plain, secure, peer = free_port(), free_port(), free_port()
    proc = CoordProc(
        tmp_path,
        client_port=plain,
        args=[
            "--event-loop",
            loop,
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            f"default=http://127.0.0.1:{peer}",
            "--listen-client-urls",
            f"http://127.0.0.1:{plain},https://127.0.0.1:{secure}",
            *pki.server_flags(),
            "--client-cert-auth",
        ],
    )
    try:
        wait_for(lambda: f"event loop: {loop}" in proc.output(), 10, "the event loop log line")
        tls = [f"--cacert={pki.ca}", f"--cert={pki.client_cert}", f"--key={pki.client_key}"]
        https = f"https://127.0.0.1:{secure}"
        etcdctl(https, *tls, "put", "/loop/k", loop)
        etcdctl(proc.endpoint, "put", "/loop/w", "event")
        watch = subprocess.Popen(  # from revision 1: the put above is replayed at once
            [require_binary("etcdctl"), f"--endpoints={proc.endpoint}", "watch", "--rev=1",
             "/loop/w"],
            stdout=subprocess.PIPE, env={**os.environ, "ETCDCTL_API": "3"},
        )  # fmt: skip
        try:
            assert _lines(watch, 3, 10) == ["PUT", "/loop/w", "event"]
            out = etcdctl(proc.endpoint, "get", "/loop/k", "--print-value-only")
            assert out.stdout.strip() == loop
            curl = require_binary("curl")
            answer = subprocess.run(
                [
                    curl, "-sS", "--max-time", "10", "--cacert", str(pki.ca),
                    "--cert", str(pki.client_cert), "--key", str(pki.client_key),
                    "-d", '{"key": "L2xvb3Av", "range_end": "L2xvb3Aw"}', f"{https}/v3/kv/range",
                ],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert '"count":"2"' in answer.stdout, answer.stdout
            # without a client certificate: refused, and the reason is logged
            refused = subprocess.run(
                [curl, "-sS", "--max-time", "10", "--cacert", str(pki.ca), f"{https}/health"],
                capture_output=True, text=True,
            )  # fmt: skip
            assert refused.returncode != 0
            wait_for(
                lambda: "tls: client didn't provide a certificate" in proc.output(),
                10,
                "the refused handshake in the log",
            )
        finally:
            watch.kill()
            watch.communicate()
        assert "Traceback" not in proc.output()
    finally:
        proc.stop()


def test_uvloop_asked_for_but_missing_is_one_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "site"
    (fake / "uvloop").mkdir(parents=True)
    (fake / "uvloop" / "__init__.py").write_text("raise ImportError('no uvloop here')\n")
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-m", "coord.server", "--event-loop", "uvloop",
         "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "coord-server: --event-loop uvloop: uvloop is not installed (pip install 'coord[uvloop]')"
    )
    assert "Traceback" not in out.stderr
