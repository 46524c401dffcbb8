"""TLS with client-certificate auth, and username/password auth, against dedicated servers.

Certificates are generated per test module with trustme (CA, server cert for 127.0.0.1,
client cert). Auth is enabled with etcdctl (user root, auth enable) on a dedicated etcd and a
dedicated coord, so the shared session servers stay auth-free.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from support import CoordProc, EtcdProc, Proc, Relay, etcdctl, free_port, require_binary, wait_for
from unwrap import unwrap

from coord import AsyncClient, AuthFailedError, Client, CoordError


class Certs:
    def __init__(self, tmp: Path) -> None:
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("coord-test-client")
        self.ca = str(tmp / "ca.pem")
        self.server_cert, self.server_key = str(tmp / "server.pem"), str(tmp / "server.key")
        self.client_cert, self.client_key = str(tmp / "client.pem"), str(tmp / "client.key")
        ca.cert_pem.write_to_path(self.ca)
        server.private_key_pem.write_to_path(self.server_key)
        server.cert_chain_pems[0].write_to_path(self.server_cert)
        client.private_key_pem.write_to_path(self.client_key)
        client.cert_chain_pems[0].write_to_path(self.client_cert)


def tls_server(kind: str, tmp: Path, certs: Certs) -> tuple[Proc, str]:
    port, peer = free_port(), free_port()
    tls = [
        "--cert-file",
        certs.server_cert,
        "--key-file",
        certs.server_key,
        "--trusted-ca-file",
        certs.ca,
        "--client-cert-auth",
    ]
    urls = [
        "--listen-client-urls",
        f"https://127.0.0.1:{port}",
        "--advertise-client-urls",
        f"https://127.0.0.1:{port}",
    ]
    if kind == "etcd":
        argv = [
            require_binary("etcd"),
            "--name",
            "tls",
            "--data-dir",
            str(tmp / "tls"),
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            f"tls=http://127.0.0.1:{peer}",
            "--log-level",
            "warn",
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "coord.server",
            "--name",
            "tls",
            "--data-dir",
            str(tmp / "tls.coord"),
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
        ]
    proc = Proc([*argv, *urls, *tls], tmp / f"{kind}-tls.log")
    endpoint = f"127.0.0.1:{port}"

    def up() -> bool:
        if not proc.alive():
            raise AssertionError(f"{kind} exited:\n{proc.output()}")
        try:
            with Client(
                endpoint, ca_cert=certs.ca, cert=certs.client_cert, key=certs.client_key, timeout=1
            ) as c:
                return c.status().leader != 0
        except CoordError:
            return False

    try:
        wait_for(up, timeout=30, what=f"{kind} with TLS", interval=0.2)
    except BaseException:
        proc.stop()
        raise
    return proc, endpoint


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=["etcd", "coord"], scope="module")
def tls_endpoint(
    request: pytest.FixtureRequest, certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    proc, endpoint = tls_server(request.param, tmp_path_factory.mktemp("tls"), certs)
    yield endpoint
    proc.stop()


def test_tls_client_cert(tls_endpoint: str, certs: Certs, prefix: str) -> None:
    with Client(tls_endpoint, ca_cert=certs.ca, cert=certs.client_cert, key=certs.client_key) as c:
        rev = c.put(prefix + "a", "1")
        with c.watch(prefix + "a", start_revision=rev) as w:
            assert next(iter(w)).value == b"1"
        with c.lease(5) as lease:
            assert lease.ttl() > 0
    # an ssl.SSLContext works as well, and an https:// endpoint
    ctx = ssl.create_default_context(cafile=certs.ca)
    ctx.load_cert_chain(certs.client_cert, certs.client_key)
    with Client("https://" + tls_endpoint, ssl=ctx) as c:
        assert unwrap(c.get(prefix + "a")).value == b"1"
        big = bytes(range(256)) * 4000  # ~1 MB: many TLS records and flow-control windows
        rev = c.put(prefix + "big", big)
        kv = c.get(prefix + "big")
        assert kv is not None
        assert (kv.value, kv.mod_revision) == (big, rev)


def test_tls_without_client_cert_is_refused(tls_endpoint: str, certs: Certs) -> None:
    with pytest.raises(CoordError), Client(tls_endpoint, ca_cert=certs.ca, timeout=3) as c:
        c.status()


def test_tls_untrusted_server_is_refused(tls_endpoint: str, certs: Certs) -> None:
    other_ca = trustme.CA()
    ctx = ssl.create_default_context()
    other_ca.configure_trust(ctx)
    ctx.load_cert_chain(certs.client_cert, certs.client_key)
    with pytest.raises(CoordError), Client(tls_endpoint, ssl=ctx, timeout=3) as c:
        c.status()


@pytest.fixture(params=["etcd", "coord"], scope="module")
def auth_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server with auth enabled (root, and alice limited to /app/): etcd, then coord."""
    tmp = tmp_path_factory.mktemp("auth")
    proc: Proc = EtcdProc(tmp, name="auth") if request.param == "etcd" else CoordProc(tmp, "auth")
    ep = proc.endpoint  # type: ignore[attr-defined]
    etcdctl(ep, "user", "add", "root:rootpw")
    etcdctl(ep, "user", "grant-role", "root", "root")
    etcdctl(ep, "user", "add", "alice:alicepw")
    etcdctl(ep, "role", "add", "app")
    etcdctl(ep, "role", "grant-permission", "app", "--prefix=true", "readwrite", "/app/")
    etcdctl(ep, "user", "grant-role", "alice", "app")
    etcdctl(ep, "auth", "enable")
    yield ep
    proc.stop()


def test_auth_user_password(auth_server: str) -> None:
    from coord import PermissionDeniedError

    with Client(auth_server, user="alice", password="alicepw") as c:
        rev = c.put("/app/x", "1")
        assert unwrap(c.get("/app/x")).value == b"1"
        with c.watch("/app/", prefix=True, start_revision=rev) as w:
            assert next(iter(w)).key == b"/app/x"
        with pytest.raises(PermissionDeniedError):
            c.put("/other", "1")
        with c.lease(5) as lease:
            c.put("/app/l", "1", lease=lease)
    with pytest.raises(AuthFailedError), Client(auth_server, user="alice", password="bad") as c:
        c.get("/app/x")
    with pytest.raises(CoordError), Client(auth_server) as c:  # no credentials
        c.get("/app/x")


@pytest.mark.anyio
async def test_auth_reauthenticates_on_invalid_token(auth_server: str) -> None:
    async with AsyncClient(auth_server, user="root", password="rootpw") as c:
        await c.put("/app/t", "1")
        c._conn._token = "bogus.token"  # as if the server had expired our token
        assert unwrap(await c.get("/app/t")).value == b"1"
        assert c._conn._token != "bogus.token"
        # a watch created with a stale token re-authenticates and still works
        rev = await c.put("/app/t", "2")
        c._conn._token = "bogus.token2"
        async with c.watch("/app/t", start_revision=rev) as w:
            assert (await w.__anext__()).value == b"2"
        assert c._conn._token != "bogus.token2"


def test_tls_write_after_the_server_closed_an_idle_connection(
    tls_endpoint: str, certs: Certs, prefix: str
) -> None:
    """A pooled blocking connection notices a close that arrived over TLS while it was idle
    (see tests/client/test_direct_lane.py for the plaintext case)."""
    relay = Relay(tls_endpoint)
    try:
        with Client(
            relay.endpoint,
            ca_cert=certs.ca,
            cert=certs.client_cert,
            key=certs.client_key,
            timeout=10,
        ) as c:
            c.put(prefix + "k", "1")
            relay.drop()
            wait_for(lambda: relay.open_connections == 0, what="relay connections closed")
            rev = c.put(prefix + "k", "2")  # not "outcome unknown": sent once, on a new one
            assert relay.accepted == 2
            kv = c.get(prefix + "k")
            assert kv is not None
            assert kv.mod_revision == rev
    finally:
        relay.close()
