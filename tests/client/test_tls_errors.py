"""TLS mistakes get a CoordError that names the parameter, the file or the likely cause.

Certificate files are checked when the Client/AsyncClient is created (TLSConfigError names
the parameter and the path). Connect-time failures against a real coord-server over
TLS raise TLSHandshakeError naming the cause: a server certificate not signed by ca_cert, a
hostname mismatch, a missing or rejected client certificate, TLS to a plain endpoint and
plain text to a TLS endpoint; the same against a real etcd. Certificates come from
tests/support.py's make_pki (trustme).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import Pki, Proc, free_port, make_pki, require_binary, wait_for

from coord import (
    AsyncClient,
    Client,
    ConnectionFailedError,
    CoordError,
    TLSConfigError,
    TLSHandshakeError,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), "main")


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki-other"), "other")


def make_client(kind: str, endpoints: str, **kw: Any) -> None:
    """Create a client of ``kind`` and run one get (raises what either step raises)."""
    if kind == "sync":
        with Client(endpoints, timeout=10, **kw) as c:
            c.get("/k")
        return

    async def run() -> None:
        async with AsyncClient(endpoints, timeout=10, **kw) as c:
            await c.get("/k")

    asyncio.run(run())


# ------------------------------------------------------------------- files, at creation


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "garbage.pem").write_text("this is not PEM\n")
    (tmp_path / "empty.pem").write_text("")
    (tmp_path / "adir").mkdir()
    return {name: str(tmp_path / name) for name in ("garbage.pem", "empty.pem", "adir")} | {
        "missing": str(tmp_path / "missing.pem")
    }


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_tls_files_are_checked_when_the_client_is_created(
    kind: str, pki: Pki, other_pki: Pki, bad_files: dict[str, str]
) -> None:
    ca, cert, key = str(pki.ca), str(pki.client_cert), str(pki.client_key)
    cases: list[tuple[dict[str, str], str]] = [
        ({"ca_cert": bad_files["missing"]}, "ca_cert file .*missing.pem.* cannot be read"),
        ({"ca_cert": bad_files["adir"]}, "ca_cert file .*adir.* cannot be read"),
        ({"ca_cert": bad_files["garbage.pem"]}, "ca_cert file .*garbage.pem.* no valid PEM"),
        ({"ca_cert": bad_files["empty.pem"]}, "ca_cert file .*empty.pem.* no valid PEM"),
        (
            {"ca_cert": ca, "cert": bad_files["missing"], "key": key},
            "cert file .*missing.pem.* cannot be read",
        ),
        (
            {"ca_cert": ca, "cert": cert, "key": bad_files["missing"]},
            "key file .*missing.pem.* cannot be read",
        ),
        (
            {"ca_cert": ca, "cert": bad_files["garbage.pem"], "key": key},
            "cert file .*garbage.pem.* no valid PEM certificate",
        ),
        ({"ca_cert": ca, "cert": key, "key": key}, "cert file .*client.key.* no valid PEM"),
        (
            {"ca_cert": ca, "cert": cert, "key": bad_files["garbage.pem"]},
            "key file .*garbage.pem.* no valid PEM private key",
        ),
        (
            {"ca_cert": ca, "cert": cert, "key": str(other_pki.client_key)},
            "key file .*client.key.* does not match the certificate in cert file .*client.pem",
        ),
        ({"ca_cert": ca, "cert": cert}, "cert file .*client.pem.* holds no private key"),
        ({"ca_cert": ca, "key": key}, "key file .*client.key.* given without cert"),
    ]
    for kw, message in cases:
        # nothing listens at this endpoint: the error must come before any connection
        with pytest.raises(TLSConfigError, match=message) as info:
            make_client(kind, "https://127.0.0.1:1", **kw)
        assert str(info.value).count("\n") == 0


# ------------------------------------------------------------------- failures at connect


@dataclass
class TlsServers:
    plain: str  # the plain listener of the server below
    tls: str  # https, client certificates required
    tls_other_name: str  # https on 127.0.0.2: not a name in the server's certificate


@pytest.fixture(scope="module", params=["coord", "etcd"])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[TlsServers]:
    """A coord-server, then a real etcd, with a plain and two https client listeners."""
    kind = request.param
    tmp = tmp_path_factory.mktemp(f"tls-errors-{kind}")
    plain, secure, other, peer = free_port(), free_port(), free_port(), free_port()
    peer_url = f"http://127.0.0.1:{peer}"
    args = [
        "--listen-client-urls",
        f"http://127.0.0.1:{plain},https://127.0.0.1:{secure},https://127.0.0.2:{other}",
        "--advertise-client-urls",
        f"https://127.0.0.1:{secure}",
        "--listen-peer-urls",
        peer_url,
        "--initial-advertise-peer-urls",
        peer_url,
        "--initial-cluster",
        f"tlserr={peer_url}",
        *pki.server_flags(),
        "--client-cert-auth",
    ]
    if kind == "etcd":
        argv = [
            require_binary("etcd"),
            "--name",
            "tlserr",
            "--data-dir",
            str(tmp / "etcd"),
            "--log-level",
            "warn",
            *args,
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "coord.server",
            "--name",
            "tlserr",
            "--data-dir",
            str(tmp / "coord"),
            *args,
        ]
    proc = Proc(argv, tmp / f"{kind}.log")

    def up() -> bool:
        if not proc.alive():
            raise AssertionError(f"{kind} exited:\n{proc.output()}")
        try:
            with Client(f"127.0.0.1:{plain}", timeout=1) as c:
                return c.status().leader != 0
        except CoordError:
            return False

    try:
        wait_for(up, timeout=30, what=f"{kind} with TLS listeners", interval=0.2)
        yield TlsServers(f"127.0.0.1:{plain}", f"127.0.0.1:{secure}", f"127.0.0.2:{other}")
    finally:
        proc.stop()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_tls_that_works(kind: str, servers: TlsServers, pki: Pki) -> None:
    make_client(
        kind, servers.tls, ca_cert=str(pki.ca), cert=str(pki.client_cert), key=str(pki.client_key)
    )


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_async_client_close_closes_its_sockets(tls: bool, servers: TlsServers, pki: Pki) -> None:
    """When ``aclose`` returns the client's sockets are closed: a loop that ends right after
    (``asyncio.run``) must not leave them open (it did for TLS, whose close first exchanges
    close_notify with the server)."""

    def open_fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    async def run() -> None:
        before = open_fds()
        if tls:
            c = AsyncClient(
                servers.tls,
                timeout=10,
                ca_cert=str(pki.ca),
                cert=str(pki.client_cert),
                key=str(pki.client_key),
            )
        else:
            c = AsyncClient(servers.plain, timeout=10)
        await c.put("/close/k", "v")
        assert open_fds() - before, "the client holds a connection"
        await c.aclose()
        assert open_fds() - before == set()

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    "case",
    [
        "unknown-ca",
        "hostname",
        "no-client-cert",
        "rejected-client-cert",
        "tls-to-plain",
        "plain-to-tls",
    ],
)
def test_tls_failure_names_the_likely_cause(
    kind: str, case: str, servers: TlsServers, pki: Pki, other_pki: Pki
) -> None:
    mine = {"ca_cert": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}
    endpoint, kw, cause = {
        "unknown-ca": (
            servers.tls,
            {**mine, "ca_cert": str(other_pki.ca)},
            "not signed by ca_cert .*pki-other.*ca.pem.*unknown CA",
        ),
        "hostname": (servers.tls_other_name, mine, "not valid for 127.0.0.2.*hostname mismatch"),
        "no-client-cert": (
            servers.tls,
            {"ca_cert": str(pki.ca)},
            "requires a client certificate and none was given",
        ),
        "rejected-client-cert": (
            servers.tls,
            {**mine, "cert": str(other_pki.client_cert), "key": str(other_pki.client_key)},
            "rejected the client certificate .*pki-other.*client.pem",
        ),
        "tls-to-plain": (servers.plain, mine, "does not speak TLS"),
        "plain-to-tls": (servers.tls, {}, "probably expects TLS"),
    }[case]
    with pytest.raises(TLSHandshakeError, match=cause) as info:
        make_client(kind, endpoint, **kw)
    assert isinstance(info.value, ConnectionFailedError)
    assert endpoint in str(info.value)
