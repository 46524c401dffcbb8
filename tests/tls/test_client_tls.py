"""TLS on client URLs with etcd's flags, against real coord-server processes.

One server listens on a plain URL (used to wait for readiness, and to show that plain and TLS
listeners coexist as in etcd) and on an https URL with ``--client-cert-auth``. etcdctl, curl
and a grpclib client must present a certificate of the trusted CA; without one, or with one
from another CA, the TLS handshake is refused.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import CoordProc, close_channel, etcdctl, free_port, http_ok, json_b64, require_binary


class TlsServer(CoordProc):
    """A coord-server that also serves TLS clients at ``tls_endpoint``."""

    tls_endpoint: str


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Any) -> Iterator[TlsServer]:
    plain, secure, peer = free_port(), free_port(), free_port()
    proc = TlsServer(
        tmp_path_factory.mktemp("tls"),
        name="tls",
        client_port=plain,
        args=[
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--listen-client-urls",
            f"http://127.0.0.1:{plain},https://127.0.0.1:{secure}",
            "--advertise-client-urls",
            f"https://127.0.0.1:{secure}",
            *pki.server_flags(),
            "--client-cert-auth",
        ],
    )
    proc.tls_endpoint = f"127.0.0.1:{secure}"
    yield proc
    proc.stop()


def tls_args(pki: Any, cert: bool = True) -> list[str]:
    args = [f"--cacert={pki.ca}"]
    if cert:
        args += [f"--cert={pki.client_cert}", f"--key={pki.client_key}"]
    return args


@pytest.mark.etcdctl
def test_etcdctl_with_client_certificate(tls_server: TlsServer, pki: Any, prefix: str) -> None:
    ep = "https://" + tls_server.tls_endpoint
    etcdctl(ep, *tls_args(pki), "put", prefix + "k", "secure")
    out = etcdctl(ep, *tls_args(pki), "get", prefix + "k", "--print-value-only")
    assert out.stdout.strip() == "secure"
    # the plain listener of the same server sees the same data
    assert (
        etcdctl(tls_server.endpoint, "get", prefix + "k", "--print-value-only").stdout.strip()
        == "secure"
    )


@pytest.mark.etcdctl
def test_etcdctl_without_client_certificate_is_refused(
    tls_server: TlsServer, pki: Any, other_pki: Any
) -> None:
    ep = "https://" + tls_server.tls_endpoint
    out = etcdctl(
        ep,
        *tls_args(pki, cert=False),
        "--command-timeout=3s",
        "--dial-timeout=2s",
        "get",
        "x",
        check=False,
    )
    assert out.returncode != 0
    out = etcdctl(
        ep,
        f"--cacert={pki.ca}",
        f"--cert={other_pki.client_cert}",
        f"--key={other_pki.client_key}",
        "--command-timeout=3s",
        "--dial-timeout=2s",
        "get",
        "x",
        check=False,
    )
    assert out.returncode != 0


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("curl"), "-sS", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_curl_json_over_tls(tls_server: TlsServer, pki: Any, prefix: str) -> None:
    url = f"https://{tls_server.tls_endpoint}/v3/kv/put"
    body = json.dumps({"key": json_b64(prefix + "c"), "value": json_b64("v")})
    ok = _curl(
        "--cacert",
        str(pki.ca),
        "--cert",
        str(pki.client_cert),
        "--key",
        str(pki.client_key),
        url,
        "-d",
        body,
    )
    assert ok.returncode == 0, ok.stderr
    assert "revision" in json.loads(ok.stdout)["header"]
    health = _curl(
        "--cacert",
        str(pki.ca),
        "--cert",
        str(pki.client_cert),
        "--key",
        str(pki.client_key),
        f"https://{tls_server.tls_endpoint}/health",
    )
    assert json.loads(health.stdout) == {"health": "true", "reason": ""}
    refused = _curl("--cacert", str(pki.ca), url, "-d", body)
    assert refused.returncode != 0  # handshake failure: no response at all
    assert refused.stdout == ""
    got = http_ok(tls_server.endpoint, "/v3/kv/range", {"key": json_b64(prefix + "c")})
    assert got["count"] == "1"


def test_grpclib_client_over_tls(tls_server: TlsServer, pki: Any) -> None:
    from grpclib.client import Channel
    from grpclib.exceptions import StreamTerminatedError

    from coord._pb import etcdserverpb as pb

    host, port = tls_server.tls_endpoint.split(":")

    async def status(cert: bool) -> int:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.set_alpn_protocols(["h2"])
        if cert:
            ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        channel = Channel(host, int(port), ssl=ctx)
        try:
            resp = await asyncio.wait_for(
                pb.MaintenanceStub(channel).status(pb.StatusRequest()), 10
            )
            return int(resp.leader)
        finally:
            await close_channel(channel)

    assert asyncio.run(status(cert=True)) != 0
    # TLS 1.3: the client finishes its side first, then the server's alert ends the stream
    with pytest.raises((ssl.SSLError, OSError, StreamTerminatedError)):
        asyncio.run(status(cert=False))


# ------------------------------------------------------------------------ startup validation


def _start(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run coord-server expecting it to refuse to start (it must exit, non-zero)."""
    port, peer = free_port(), free_port()
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "coord.server",
            "--name",
            "bad",
            "--data-dir",
            str(tmp / "d"),
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--listen-client-urls",
            f"https://127.0.0.1:{port}",
            "--advertise-client-urls",
            f"https://127.0.0.1:{port}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_cert_file_fails_at_startup(tmp_path: Path, pki: Any) -> None:
    missing = tmp_path / "nope.pem"
    out = _start(tmp_path, "--cert-file", str(missing), "--key-file", str(pki.server_key))
    assert out.returncode != 0
    assert str(missing) in out.stderr
    assert "--cert-file" in out.stderr


def test_garbage_cert_file_fails_at_startup(tmp_path: Path, pki: Any) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    out = _start(tmp_path, "--cert-file", str(bad), "--key-file", str(pki.server_key))
    assert out.returncode != 0
    assert str(bad) in out.stderr
    notpem = tmp_path / "notpem.pem"
    notpem.write_text("hello\n")
    out = _start(tmp_path, "--cert-file", str(pki.server_cert), "--key-file", str(notpem))
    assert out.returncode != 0
    assert str(notpem) in out.stderr


def test_key_not_matching_cert_fails_at_startup(tmp_path: Path, pki: Any) -> None:
    out = _start(tmp_path, "--cert-file", str(pki.server_cert), "--key-file", str(pki.client_key))
    assert out.returncode != 0
    assert str(pki.server_cert) in out.stderr
    assert str(pki.client_key) in out.stderr


def test_expired_cert_fails_at_startup(tmp_path: Path) -> None:
    import datetime

    import trustme

    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    leaf = ca.issue_cert(
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=10),
        not_after=now - datetime.timedelta(days=1),
    )
    cert, key = tmp_path / "expired.pem", tmp_path / "expired.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    out = _start(tmp_path, "--cert-file", str(cert), "--key-file", str(key))
    assert out.returncode != 0
    assert str(cert) in out.stderr
    assert "expired" in out.stderr


def test_missing_trusted_ca_and_https_without_cert_fail(tmp_path: Path, pki: Any) -> None:
    missing = tmp_path / "ca-nope.pem"
    out = _start(
        tmp_path,
        "--cert-file",
        str(pki.server_cert),
        "--key-file",
        str(pki.server_key),
        "--trusted-ca-file",
        str(missing),
        "--client-cert-auth",
    )
    assert out.returncode != 0
    assert str(missing) in out.stderr
    out = _start(tmp_path)
    assert out.returncode != 0
    assert "--cert-file" in out.stderr
    assert "https://" in out.stderr
    missing_peer = tmp_path / "peer-nope.pem"
    out = _start(
        tmp_path,
        "--cert-file",
        str(pki.server_cert),
        "--key-file",
        str(pki.server_key),
        "--peer-cert-file",
        str(missing_peer),
        "--peer-key-file",
        str(pki.server_key),
    )
    assert out.returncode != 0
    assert str(missing_peer) in out.stderr
    assert "--peer-cert-file" in out.stderr
