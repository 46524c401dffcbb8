"""A refused TLS handshake on a client URL is one WARNING line on the server, with the peer's
address and the reason (etcd: ``http: TLS handshake error from 127.0.0.1:54321: tls: client
didn't provide a certificate``); plain HTTP on the TLS port gets Go's 400 answer."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from support import CoordProc, free_port, require_binary, wait_for


class TlsServer(CoordProc):
    """A coord-server that also serves TLS clients on ``tls_port``."""

    tls_port: int


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: Any) -> Iterator[TlsServer]:
    plain, secure = free_port(), free_port()
    proc = TlsServer(
        tmp_path_factory.mktemp("tlslog"),
        name="tlslog",
        client_port=plain,
        args=[
            "--listen-client-urls",
            f"http://127.0.0.1:{plain},https://127.0.0.1:{secure}",
            *pki.server_flags(),
            "--client-cert-auth",
        ],
    )
    proc.tls_port = secure
    yield proc
    proc.stop()


def _addr(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def _handshake(port: int, ctx: ssl.SSLContext) -> str:
    """Try a TLS handshake (and one read, where TLS 1.3 reports a refused client certificate);
    return our local address as the server sees it ("127.0.0.1:PORT")."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        me = _addr(raw)
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass
    return me


def _line(server: CoordProc, me: str) -> str:
    needle = f"TLS handshake error from {me}: "
    wait_for(lambda: needle in server.output(), timeout=10, what=f"the log line for {me}")
    lines = [ln for ln in server.output().splitlines() if needle in ln]
    assert len(lines) == 1, lines
    assert " WARNING " in lines[0]
    return lines[0].split(needle, 1)[1]


def test_no_client_certificate_is_logged(server: TlsServer, pki: Any) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    me = _handshake(server.tls_port, ctx)
    assert _line(server, me) == "tls: client didn't provide a certificate"


def test_certificate_of_unknown_ca_is_logged(server: TlsServer, pki: Any, other_pki: Any) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(str(other_pki.client_cert), str(other_pki.client_key))
    me = _handshake(server.tls_port, ctx)
    reason = _line(server, me)
    assert reason.startswith("tls: failed to verify certificate: "), reason
    assert "unable to get local issuer certificate" in reason


def test_client_refusing_our_certificate_is_logged(server: TlsServer, other_pki: Any) -> None:
    ctx = ssl.create_default_context(cafile=str(other_pki.ca))  # does not trust the server
    me = _handshake(server.tls_port, ctx)
    assert _line(server, me) == "remote error: tls: unknown ca"


def test_plain_http_gets_go_answer_and_is_logged(server: TlsServer) -> None:
    out = subprocess.run(
        [
            require_binary("curl"),
            "-sS",
            "--max-time",
            "10",
            "-v",
            f"http://127.0.0.1:{server.tls_port}/version",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.stdout == "Client sent an HTTP request to an HTTPS server.\n", out
    assert "HTTP/1.0 400 Bad Request" in out.stderr
    wait_for(
        lambda: "client sent an HTTP request to an HTTPS server" in server.output(),
        timeout=10,
        what="the plain-HTTP log line",
    )
    (line,) = [
        ln
        for ln in server.output().splitlines()
        if "client sent an HTTP request to an HTTPS server" in ln
    ]
    assert " WARNING " in line
    assert "TLS handshake error from 127.0.0.1:" in line


def test_plain_http2_is_logged_with_peer(server: TlsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as s:
        me = _addr(s)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        try:  # closed without an HTTP/1 answer, as Go's crypto/tls does (a reset, since the
            answer = s.recv(4096)  # preface was never read)
        except ConnectionResetError:
            answer = b""
        assert answer == b""
    assert _line(server, me) == (
        "client sent a plain-text HTTP/2 (gRPC without TLS) request to an HTTPS server"
    )


def test_port_probe_is_not_logged_and_tls_still_serves(server: TlsServer, pki: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as s:
        me = _addr(s)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    ctx.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert f"from {me}" not in server.output()
    assert "Traceback" not in server.output()


def test_handshake_timeout_is_logged(server: TlsServer) -> None:
    # one client sends nothing, one stops in the middle of its hello (both wait 10 s)
    silent = socket.create_connection(("127.0.0.1", server.tls_port), timeout=30)
    stalled = socket.create_connection(("127.0.0.1", server.tls_port), timeout=30)
    try:
        stalled.sendall(b"\x16\x03\x01\x02\x00")  # a TLS record header, then nothing
        assert silent.recv(1) == b""  # the server hangs up on both after the timeout
        assert stalled.recv(1) == b""
        assert _line(server, _addr(silent)) == "no TLS hello within 10s (handshake timeout)"
        assert _line(server, _addr(stalled)) == (
            "handshake not finished within 10s (handshake timeout)"
        )
    finally:
        silent.close()
        stalled.close()
