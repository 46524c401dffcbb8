"""Auth on every way in, against coord and a real etcd with the same assertions (issue 16):
the JSON gateway's Authorization header, token expiry and the client's transparent
re-authentication, JWT tokens, TLS client certificates as identity (a token wins over the
certificate), and the Lock and Election recipes under a role that holds only their prefix."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import trustme
from client.test_tls_auth import tls_server
from support import CoordProc, EtcdProc, Proc, enable_auth, http_post, json_b64, jwt_keys, wait_for

from coord import AsyncClient, Client, PermissionDeniedError
from coord.recipes import Election, Lock

pytestmark = pytest.mark.etcdctl

KINDS = ["coord", pytest.param("etcd", marks=pytest.mark.etcd)]


def start(kind: str, tmp: Path, *flags: str) -> Proc:
    if kind == "coord":
        return CoordProc(tmp, args=flags)
    return EtcdProc(tmp, extra=flags)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(kind: str, tmp_path: Path) -> Iterator[str]:
    proc = start(kind, tmp_path, "--auth-token-ttl", "1")
    try:
        enable_auth(proc.endpoint)  # type: ignore[attr-defined]
        yield proc.endpoint  # type: ignore[attr-defined]
    finally:
        proc.stop()


def test_gateway_authorization_header(server: str) -> None:
    code, body, _ = http_post(server, "/v3/auth/authenticate", {"name": "app", "password": "x"})
    assert code != 200
    assert body["error"] == "etcdserver: authentication failed, invalid user ID or password"
    code, body, _ = http_post(server, "/v3/auth/authenticate", {"name": "app", "password": "apppw"})
    assert code == 200, body
    auth = {"Authorization": body["token"]}
    put = {"key": json_b64("/app/gw"), "value": json_b64("1")}
    code, body, _ = http_post(server, "/v3/kv/put", put, headers=auth)
    assert code == 200, body
    code, body, _ = http_post(server, "/v3/kv/put", {**put, "key": json_b64("/x")}, headers=auth)
    assert (code, body["error"]) == (403, "etcdserver: permission denied")
    code, body, _ = http_post(server, "/v3/kv/put", put)
    assert (code, body["error"]) == (400, "etcdserver: user name is empty")
    code, body, _ = http_post(server, "/v3/kv/put", put, headers={"Authorization": "bogus"})
    assert (code, body["error"]) == (401, "etcdserver: invalid auth token")


@pytest.mark.anyio
async def test_expired_token_is_refused_and_the_client_logs_in_again(server: str) -> None:
    """--auth-token-ttl 1: an idle token expires; the client's next call re-authenticates,
    and so does a watch opened afterwards."""
    async with AsyncClient(server, user="app", password="apppw") as c:
        await c.put("/app/t", "1")
        token = c._conn.token
        assert token

        def login() -> str:
            code, body, _ = http_post(
                server, "/v3/auth/authenticate", {"name": "app", "password": "apppw"}
            )
            assert code == 200, body
            return str(body["token"])

        def refused(tok: str) -> bool:
            req = {"key": json_b64("/app/t")}
            code, body, _ = http_post(server, "/v3/kv/range", req, headers={"Authorization": tok})
            return code == 401 and body["error"] == "etcdserver: invalid auth token"

        # Using a token renews it, so the client's own token is not polled: each poll checks
        # once a canary token issued one poll earlier (after the client's last call). Once a
        # canary has expired, the client's older idle token has too.
        canaries = [login()]

        def expired() -> bool:
            old = canaries.pop()
            canaries.append(login())
            return refused(old)

        wait_for(expired, timeout=20, interval=1.5, what="an idle token to expire")
        assert refused(token)
        await c.put("/app/t", "2")  # re-authenticates transparently
        assert c._conn.token != token
        async with c.watch("/app/t", start_revision=1) as w:
            assert (await w.__anext__()).value == b"1"


def test_lock_and_election_under_a_prefix_role(server: str) -> None:
    with Client(server, user="app", password="apppw") as c:
        with Lock(c, "/app/locks/job") as held:
            assert held.key is not None
            assert held.key.startswith(b"/app/locks/job/")
        with pytest.raises(PermissionDeniedError), Lock(c, "/locks/elsewhere", ttl=5):
            pass
        e = Election(c, "/app/election/leader")
        assert e.campaign("me", timeout=10)
        got = e.leader()
        assert got is not None
        assert got.value == b"me"
        e.resign()


def test_jwt_tokens(kind: str, tmp_path: Path) -> None:
    priv, pub = jwt_keys(tmp_path)
    spec = f"jwt,pub-key={pub},priv-key={priv},sign-method=ES256"
    proc = start(kind, tmp_path, "--auth-token", spec)
    try:
        endpoint = proc.endpoint  # type: ignore[attr-defined]
        enable_auth(endpoint)
        with Client(endpoint, user="app", password="apppw") as c:
            c.put("/app/j", "1")
            token = c.async_client._conn.token
            assert token is not None
            assert token.count(".") == 2  # header.claims.signature
            claims = json.loads(_b64url(token.split(".")[1]))
            assert claims["username"] == "app"
            with pytest.raises(PermissionDeniedError):
                c.put("/j", "1")
    finally:
        proc.stop()


def _b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_client_certificate_names_the_user_and_a_token_wins(kind: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    certs = SimpleNamespace(ca=str(tmp_path / "ca.pem"))
    ca.cert_pem.write_to_path(certs.ca)
    files = {}
    for name, cert in (
        ("server", ca.issue_cert("127.0.0.1")),
        ("root", ca.issue_cert("root-client", common_name="root")),
        ("app", ca.issue_cert("app-client", common_name="app")),
    ):
        files[name] = (str(tmp_path / f"{name}.pem"), str(tmp_path / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(files[name][0])
        cert.private_key_pem.write_to_path(files[name][1])
    certs.server_cert, certs.server_key = files["server"]
    certs.client_cert, certs.client_key = files["root"]  # the readiness probe's identity
    proc, endpoint = tls_server(kind, tmp_path, certs)  # type: ignore[arg-type]
    try:
        enable_auth(
            endpoint,
            f"--cacert={certs.ca}",
            f"--cert={files['root'][0]}",
            f"--key={files['root'][1]}",
        )

        def client(who: str, user: str | None = None, password: str | None = None) -> Client:
            cert, key = files[who]
            return Client(
                endpoint, ca_cert=certs.ca, cert=cert, key=key, user=user, password=password
            )

        with client("app") as c:  # no password: the certificate's CN is the user
            c.put("/app/cn", "1")
            with pytest.raises(PermissionDeniedError):
                c.put("/cn", "1")
        with client("app", user="root", password="rootpw") as c:  # the token wins
            c.put("/cn", "1")
        with client("root") as c:
            c.put("/cn", "2")
    finally:
        proc.stop()
