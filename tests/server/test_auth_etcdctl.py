"""etcd's auth (users, roles, key permissions) through etcdctl, against coord-server and etcd.

Auth is server-wide, so every test gets a fresh single-member server (``server``: a
coord-server, then a real etcd) in its own directory. The expected outputs and error texts
are written out literally as etcd 3.4 prints them: passing on both proves coord answers as
etcd does. Some of etcd 3.4's answers are surprising and are asserted as they are:

- ``etcdctl auth enable`` creates the role root and grants it to the user root itself when
  the server answers "root user does not have root role";
- granting a role twice succeeds; granting a key again replaces its permission type;
- a user may read itself and its roles (``user get``, ``role get``), nothing else of auth;
- MemberList and Status need no permission, not even a user; nor does compaction on
  etcd 3.4, which coord refuses to all but root (issue 16: a compaction destroys the
  history every reader shares), the one place where the two are asserted differently;
- Maintenance's defragment and hashkv fail with a bare "auth: ..." text (gRPC code Unknown);
- a denied watch is canceled by the server: etcdctl prints why and exits with status 5;
- with auth disabled, etcdctl ignores a wrong password (the server's "authentication is not
  enabled" makes it go on without a token).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import CoordProc, EtcdProc, etcdctl, require_binary

pytestmark = pytest.mark.etcdctl

ROOT = "--user=root:rootpw"
APP = "--user=app:apppw"

DENIED = "Error: etcdserver: permission denied"
NO_USER = "Error: etcdserver: user name is empty"
BAD_LOGIN = "Error: etcdserver: authentication failed, invalid user ID or password"
INVALID_MANAGEMENT = "Error: etcdserver: invalid auth management"

#: etcdctl's exit status when authenticating fails (its ExitBadConnection), and when a watch
#: ends (ExitInterrupted).
EXIT_BAD_LOGIN = 2
EXIT_WATCH_CANCELED = 5


@pytest.fixture(params=["coord", pytest.param("etcd", marks=pytest.mark.etcd)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Endpoint of a fresh single-member server, auth not enabled: coord, then etcd."""
    require_binary("etcdctl")
    proc: CoordProc | EtcdProc = (
        CoordProc(tmp_path) if request.param == "coord" else EtcdProc(tmp_path)
    )
    try:
        yield proc.endpoint
    finally:
        proc.stop()


def ctl(endpoint: str, *args: str, input: str | None = None) -> str:
    """etcdctl's output; it must succeed."""
    return etcdctl(endpoint, *args, input=input).stdout


def failure(endpoint: str, *args: str, input: str | None = None, rc: int = 1) -> list[str]:
    """The stderr lines of an etcdctl run that must exit with ``rc`` and print nothing on
    stdout (the client library's JSON warnings about retried calls left out)."""
    proc = etcdctl(endpoint, *args, input=input, check=False, timeout=15)
    assert (proc.returncode, proc.stdout) == (rc, ""), proc.stderr
    return stderr_lines(proc)


def stderr_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """etcdctl's stderr without the client library's warnings about retried calls."""
    return [line for line in proc.stderr.splitlines() if "retry_interceptor" not in line]


def error(endpoint: str, *args: str, input: str | None = None, rc: int = 1) -> str:
    """The one error line of a failing etcdctl run."""
    lines = failure(endpoint, *args, input=input, rc=rc)
    assert len(lines) == 1, lines
    return lines[0]


def watch_lines(endpoint: str, *args: str, count: int, timeout: float = 10.0) -> list[str]:
    """The first ``count`` lines ``etcdctl watch`` prints (it runs until killed)."""
    exe = require_binary("etcdctl")
    proc = subprocess.Popen(
        [exe, f"--endpoints={endpoint}", "watch", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "ETCDCTL_API": "3"},
        bufsize=0,
    )
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while out.count(b"\n") < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"etcdctl watch printed only {out!r} in {timeout}s")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"etcdctl watch ended after {out!r}")
                out += chunk
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert out.count(b"\n") >= count, err
    return out.decode().splitlines()[:count]


def add_users(endpoint: str) -> None:
    """Users root (role root, password rootpw) and app (password apppw), whose role app-rw
    reads and writes the keys under /app/."""
    assert ctl(endpoint, "user", "add", "root", "--new-user-password=rootpw") == (
        "User root created\n"
    )
    assert ctl(endpoint, "user", "add", "app", "--new-user-password=apppw") == "User app created\n"
    assert ctl(endpoint, "role", "add", "root") == "Role root created\n"
    assert ctl(endpoint, "user", "grant-role", "root", "root") == (
        "Role root is granted to user root\n"
    )
    assert ctl(endpoint, "role", "add", "app-rw") == "Role app-rw created\n"
    assert ctl(
        endpoint, "role", "grant-permission", "app-rw", "readwrite", "/app/", "--prefix=true"
    ) == ("Role app-rw updated\n")
    assert ctl(endpoint, "user", "grant-role", "app", "app-rw") == (
        "Role app-rw is granted to user app\n"
    )


def enable_auth(endpoint: str) -> None:
    add_users(endpoint)
    assert ctl(endpoint, "auth", "enable") == "Authentication Enabled\n"


def test_user_and_role_management(server: str) -> None:
    add_users(server)
    assert ctl(server, "user", "list") == "app\nroot\n"
    assert ctl(server, "role", "list") == "app-rw\nroot\n"
    assert ctl(server, "user", "get", "app") == "User: app\nRoles: app-rw\n"
    app_rw = (
        "Role app-rw\n"
        "KV Read:\n\t[/app/, /app0) (prefix /app/)\n"
        "KV Write:\n\t[/app/, /app0) (prefix /app/)\n"
    )
    assert ctl(server, "role", "get", "app-rw") == app_rw
    assert ctl(server, "user", "get", "app", "--detail") == "User: app\n\n" + app_rw
    assert ctl(server, "role", "get", "root") == "Role root\nKV Read:\nKV Write:\n"
    assert ctl(server, "user", "get", "root") == "User: root\nRoles: root\n"
    # JSON: the protobuf fields (permType READWRITE = 2; key and range_end in base64)
    perm = json.loads(ctl(server, "role", "get", "app-rw", "-w", "json"))["perm"]
    assert perm == [{"permType": 2, "key": "L2FwcC8=", "range_end": "L2FwcDA="}]
    assert json.loads(ctl(server, "user", "get", "app", "-w", "json"))["roles"] == ["app-rw"]
    assert json.loads(ctl(server, "user", "list", "-w", "json"))["users"] == ["app", "root"]
    assert json.loads(ctl(server, "role", "list", "-w", "json"))["roles"] == ["app-rw", "root"]

    # names taken, names unknown
    user_exists = "Error: etcdserver: user name already exists"
    assert error(server, "user", "add", "app", "--new-user-password=x") == user_exists
    assert error(server, "role", "add", "root") == "Error: etcdserver: role name already exists"
    no_user = "Error: etcdserver: user name not found"
    no_role = "Error: etcdserver: role name not found"
    assert error(server, "user", "get", "nobody") == no_user
    assert error(server, "role", "get", "nobody") == no_role
    assert error(server, "user", "grant-role", "nobody", "app-rw") == no_user
    assert error(server, "user", "grant-role", "app", "nobody") == no_role
    assert error(server, "user", "revoke-role", "nobody", "app-rw") == no_user
    assert error(server, "user", "revoke-role", "app", "nobody") == (
        "Error: etcdserver: role is not granted to the user"
    )
    assert error(server, "role", "grant-permission", "nobody", "read", "/x") == no_role
    assert error(server, "role", "revoke-permission", "nobody", "/x") == no_role
    assert error(server, "role", "revoke-permission", "app-rw", "/nothere") == (
        "Error: etcdserver: permission is not granted to the role"
    )
    # the prefix /app/ is the range [/app/, /app0), not the key /app/
    assert error(server, "role", "revoke-permission", "app-rw", "/app/") == (
        "Error: etcdserver: permission is not granted to the role"
    )
    assert error(server, "user", "delete", "nobody") == no_user
    assert error(server, "role", "delete", "nobody") == no_role

    # granting a role twice is no error, and the user has it once
    assert ctl(server, "user", "grant-role", "app", "app-rw") == (
        "Role app-rw is granted to user app\n"
    )
    assert ctl(server, "user", "get", "app") == "User: app\nRoles: app-rw\n"

    # a key, a range, from a key; listed sorted by key under each permission type; a key
    # granted again gets the new type (read /single becomes write /single)
    grants = [("read", "/single"), ("write", "/r1", "/r9"), ("read", "/fk", "--from-key")]
    for grant in [*grants, ("write", "/single")]:
        assert ctl(server, "role", "grant-permission", "app-rw", *grant) == "Role app-rw updated\n"
    assert ctl(server, "role", "get", "app-rw") == (
        "Role app-rw\n"
        "KV Read:\n\t[/app/, /app0) (prefix /app/)\n\t[/fk, <open ended>\n"
        "KV Write:\n\t[/app/, /app0) (prefix /app/)\n\t[/r1, /r9)\n\t/single\n"
    )
    perm = json.loads(ctl(server, "role", "get", "app-rw", "-w", "json"))["perm"]
    assert perm == [  # READ = 0 is left out; from a key is range_end "\0"
        {"permType": 2, "key": "L2FwcC8=", "range_end": "L2FwcDA="},
        {"key": "L2Zr", "range_end": "AA=="},
        {"permType": 1, "key": "L3Ix", "range_end": "L3I5"},
        {"permType": 1, "key": "L3NpbmdsZQ=="},
    ]
    assert ctl(server, "role", "revoke-permission", "app-rw", "/single") == (
        "Permission of key /single is revoked from role app-rw\n"
    )
    assert ctl(server, "role", "revoke-permission", "app-rw", "/r1", "/r9") == (
        "Permission of range [/r1, /r9) is revoked from role app-rw\n"
    )
    assert ctl(server, "role", "revoke-permission", "app-rw", "/fk", "--from-key") == (
        "Permission of range [/fk, <open ended> is revoked from role app-rw\n"
    )
    assert ctl(server, "role", "revoke-permission", "app-rw", "/app/", "--prefix=true") == (
        "Permission of range [/app/, /app0) is revoked from role app-rw\n"
    )
    assert ctl(server, "role", "get", "app-rw") == "Role app-rw\nKV Read:\nKV Write:\n"

    # a deleted role is taken from its users
    assert ctl(server, "role", "add", "extra") == "Role extra created\n"
    assert ctl(server, "user", "grant-role", "app", "extra") == (
        "Role extra is granted to user app\n"
    )
    assert ctl(server, "user", "get", "app") == "User: app\nRoles: app-rw extra\n"
    assert ctl(server, "role", "delete", "extra") == "Role extra deleted\n"
    assert ctl(server, "user", "get", "app") == "User: app\nRoles: app-rw\n"
    assert ctl(server, "user", "revoke-role", "app", "app-rw") == (
        "Role app-rw is revoked from user app\n"
    )
    assert error(server, "user", "revoke-role", "app", "app-rw") == (
        "Error: etcdserver: role is not granted to the user"
    )
    assert ctl(server, "user", "get", "app") == "User: app\nRoles:\n"
    assert ctl(server, "user", "delete", "app") == "User app deleted\n"
    assert error(server, "user", "delete", "app") == no_user
    assert ctl(server, "role", "delete", "app-rw") == "Role app-rw deleted\n"
    assert ctl(server, "user", "list") == "root\n"
    assert ctl(server, "role", "list") == "root\n"


def test_auth_enable_needs_root_user(server: str) -> None:
    assert error(server, "auth", "enable") == "Error: etcdserver: root user does not exist"
    assert ctl(server, "user", "add", "root", "--new-user-password=rootpw") == (
        "User root created\n"
    )
    # The server answers "root user does not have root role"; etcdctl then adds the role
    # root, grants it to root and enables again.
    assert ctl(server, "auth", "enable") == "Authentication Enabled\n"
    assert ctl(server, ROOT, "role", "list") == "root\n"
    assert ctl(server, ROOT, "user", "get", "root") == "User: root\nRoles: root\n"
    assert error(server, "user", "list") == NO_USER
    # enabling an enabled auth is root's request like any other
    assert error(server, "auth", "enable") == NO_USER
    assert ctl(server, ROOT, "auth", "enable") == "Authentication Enabled\n"
    assert error(server, "--user=root:wrong", "auth", "enable", rc=EXIT_BAD_LOGIN) == BAD_LOGIN


def test_key_permissions(server: str) -> None:
    enable_auth(server)
    assert ctl(server, APP, "put", "/app/x", "1") == "OK\n"
    assert ctl(server, APP, "get", "/app/x") == "/app/x\n1\n"
    assert ctl(server, APP, "get", "/app/", "--prefix") == "/app/x\n1\n"
    assert ctl(server, APP, "get", "/app/", "/app0") == "/app/x\n1\n"
    assert ctl(server, "--user=app", "--password=apppw", "get", "/app/x") == "/app/x\n1\n"
    for args in [
        ("put", "/other/x", "1"),
        ("get", "/other/x"),
        ("del", "/other/x"),
        ("get", "/app"),  # not under /app/
        ("get", "/app/", "/app1"),  # wider than the permission
        ("get", "/app/", "--from-key"),
        ("get", "", "--prefix"),
    ]:
        assert error(server, APP, *args) == DENIED, args
    assert ctl(server, ROOT, "put", "/other/x", "o") == "OK\n"
    assert ctl(server, ROOT, "get", "/other/x") == "/other/x\no\n"
    assert error(server, APP, "get", "/other/x") == DENIED

    # a txn: compares, then success ops, then failure ops (a blank line after each part)
    txn = 'value("/app/x") = "1"\n\nput /app/y 2\n\nput /app/z 3\n\n'
    assert ctl(server, APP, "txn", input=txn) == "SUCCESS\n\nOK\n"
    assert ctl(server, APP, "get", "/app/", "--prefix") == "/app/x\n1\n/app/y\n2\n"
    # every key of a txn is checked, those of the branch not taken as well
    for txn in [
        'value("/other/x") = "o"\n\nput /app/w 1\n\n\n',
        'value("/app/x") = "1"\n\nput /other/y 2\n\n\n',
        'value("/app/x") = "1"\n\nput /app/w 1\n\nget /other/x\n\n',
        'value("/app/x") = "1"\n\nput /app/w 1\n\ndel /other/x\n\n',
    ]:
        assert error(server, APP, "txn", input=txn) == DENIED, txn
    assert ctl(server, APP, "get", "/app/w") == ""
    assert ctl(server, ROOT, "get", "/other/", "--prefix") == "/other/x\no\n"
    assert ctl(server, APP, "del", "/app/", "--prefix") == "2\n"

    # no user, a wrong password, an unknown user
    assert error(server, "get", "/app/x") == NO_USER
    assert error(server, "put", "/app/x", "1") == NO_USER
    assert error(server, "txn", input="\n\nput /app/x 1\n\n\n") == NO_USER
    assert error(server, "--user=app:wrong", "get", "/app/x", rc=EXIT_BAD_LOGIN) == BAD_LOGIN
    assert error(server, "--user=nobody:pw", "get", "/app/x", rc=EXIT_BAD_LOGIN) == BAD_LOGIN
    # etcdctl does not authenticate with an empty password
    assert error(server, "--user=app:", "get", "/app/x") == NO_USER


def test_watch_permissions(server: str) -> None:
    enable_auth(server)
    assert ctl(server, APP, "put", "/app/x", "1") == "OK\n"
    rev = json.loads(ctl(server, APP, "get", "/app/x", "-w", "json"))["kvs"][0]["mod_revision"]
    assert ctl(server, ROOT, "put", "/other/x", "o") == "OK\n"
    history = ["--rev", str(rev)]
    assert watch_lines(server, APP, "/app/", "--prefix", *history, count=3) == [
        "PUT",
        "/app/x",
        "1",
    ]
    assert watch_lines(server, ROOT, "/other/x", *history, count=3) == ["PUT", "/other/x", "o"]
    # the server cancels a denied watch; etcdctl says why and exits
    canceled = "Error: watch is canceled by the server"
    denied = (
        "watch was canceled (rpc error: code = PermissionDenied desc = etcdserver: permission"
        " denied)"
    )
    for args in [("/other/x",), ("/app", "--prefix"), ("/app/x", "/other")]:
        lines = failure(server, APP, "watch", *args, *history, rc=EXIT_WATCH_CANCELED)
        assert lines == [denied, canceled], args
    assert failure(server, "watch", "/app/x", rc=EXIT_WATCH_CANCELED) == [
        "watch was canceled (rpc error: code = InvalidArgument desc = etcdserver: user name is"
        " empty)",
        canceled,
    ]
    assert error(server, "--user=app:bad", "watch", "/app/x", rc=EXIT_BAD_LOGIN) == BAD_LOGIN


def test_admin_only_requests(server: str, request: pytest.FixtureRequest) -> None:
    enable_auth(server)
    for args in [
        ("user", "list"),
        ("role", "list"),
        ("user", "add", "x", "--new-user-password=y"),
        ("role", "add", "x"),
        ("user", "get", "root"),
        ("user", "get", "nobody"),
        ("role", "get", "root"),
        ("user", "delete", "app"),
        ("user", "grant-role", "app", "root"),
        ("role", "grant-permission", "app-rw", "readwrite", "/other/"),
        ("auth", "disable"),
    ]:
        assert error(server, APP, *args) == DENIED, args
    assert ctl(server, ROOT, "user", "list") == "app\nroot\n"
    # a user reads itself and its own roles
    assert ctl(server, APP, "user", "get", "app") == "User: app\nRoles: app-rw\n"
    assert ctl(server, APP, "role", "get", "app-rw").startswith("Role app-rw\nKV Read:\n")

    # no permission needed (etcd 3.4): member list, status
    for login in [(APP,), ()]:
        (member,) = ctl(server, *login, "member", "list").splitlines()
        assert member.endswith(f", http://{server}, false")
        assert ", started, " in member
        assert ctl(server, *login, "endpoint", "status").startswith(f"{server}, ")
    member_id = member.split(", ")[0]
    peer_url = member.split(", ")[3]
    member_update = ("member", "update", member_id, f"--peer-urls={peer_url}")
    assert error(server, APP, *member_update) == DENIED
    assert error(server, *member_update) == NO_USER
    for _ in range(3):
        assert ctl(server, APP, "put", "/app/x", "1") == "OK\n"
    rev = json.loads(ctl(server, APP, "get", "/app/x", "-w", "json"))["header"]["revision"]
    if request.node.callspec.params["server"] == "etcd":  # etcd 3.4 does not check it
        assert ctl(server, APP, "compaction", str(rev - 1)) == f"compacted revision {rev - 1}\n"
        assert ctl(server, "compaction", str(rev)) == f"compacted revision {rev}\n"
    else:
        assert error(server, APP, "compaction", str(rev - 1)) == DENIED
        assert error(server, "compaction", str(rev - 1)) == NO_USER
        assert ctl(server, ROOT, "compaction", str(rev)) == f"compacted revision {rev}\n"

    # Maintenance calls answer a bare "auth: ..." (gRPC code Unknown)
    denials: list[tuple[tuple[str, ...], str]] = [
        ((APP,), "auth: permission denied"),
        ((), "auth: user name is empty"),
    ]
    for login, why in denials:
        assert error(server, *login, "defrag") == (
            f"Failed to defragment etcd member[{server}] (rpc error: code = Unknown desc = {why})"
        )
        assert failure(server, *login, "endpoint", "hashkv") == [
            f"Failed to get the hash of endpoint {server} (rpc error: code = Unknown desc = {why})",
            f"Error: rpc error: code = Unknown desc = {why}",
        ]
    # endpoint health gets the key "health": a permission denied counts as healthy
    (health,) = stderr_lines(etcdctl(server, APP, "endpoint", "health"))
    assert health.startswith(f"{server} is healthy: successfully committed proposal: took = ")
    assert failure(server, "endpoint", "health") == [
        f"{server} is unhealthy: failed to commit proposal: etcdserver: user name is empty",
        "Error: unhealthy cluster",
    ]


def test_root_is_protected_and_auth_disable(server: str) -> None:
    enable_auth(server)
    assert error(server, ROOT, "user", "delete", "root") == INVALID_MANAGEMENT
    assert error(server, ROOT, "user", "revoke-role", "root", "root") == INVALID_MANAGEMENT
    assert error(server, ROOT, "role", "delete", "root") == INVALID_MANAGEMENT
    assert ctl(server, ROOT, "user", "get", "root") == "User: root\nRoles: root\n"

    assert error(server, APP, "auth", "disable") == DENIED
    assert error(server, "auth", "disable") == NO_USER
    assert ctl(server, ROOT, "auth", "disable") == "Authentication Disabled\n"
    assert ctl(server, "auth", "disable") == "Authentication Disabled\n"
    assert ctl(server, "put", "/other/x", "1") == "OK\n"
    assert ctl(server, "get", "/other/x") == "/other/x\n1\n"
    assert ctl(server, "user", "list") == "app\nroot\n"
    # the server answers Authenticate "authentication is not enabled" and etcdctl goes on
    # without a token: a wrong password does no harm
    assert ctl(server, "--user=app:wrong", "get", "/other/x") == "/other/x\n1\n"
    assert ctl(server, APP, "put", "/other/y", "2") == "OK\n"

    # enabled again, the users and roles are as they were
    assert ctl(server, "auth", "enable") == "Authentication Enabled\n"
    assert error(server, APP, "get", "/other/x") == DENIED
    assert ctl(server, ROOT, "auth", "disable") == "Authentication Disabled\n"

    # with auth disabled, root is an ordinary user
    assert ctl(server, "user", "revoke-role", "root", "root") == (
        "Role root is revoked from user root\n"
    )
    assert ctl(server, "user", "delete", "root") == "User root deleted\n"
    assert error(server, "auth", "enable") == "Error: etcdserver: root user does not exist"


def test_change_password(server: str) -> None:
    enable_auth(server)
    passwd = ("user", "passwd", "app", "--interactive=false")
    assert ctl(server, ROOT, *passwd, input="newpw\n") == "Password updated\n"
    assert error(server, APP, "get", "/app/x", rc=EXIT_BAD_LOGIN) == BAD_LOGIN
    assert ctl(server, "--user=app:newpw", "put", "/app/x", "1") == "OK\n"
    # only root changes passwords, its own as well
    assert error(server, "--user=app:newpw", *passwd, input="self\n") == DENIED
    assert error(server, "--user=app:self", "get", "/app/x", rc=EXIT_BAD_LOGIN) == BAD_LOGIN
    assert error(server, ROOT, "user", "passwd", "nobody", "--interactive=false", input="x\n") == (
        "Error: etcdserver: user name not found"
    )
    root_passwd = ("user", "passwd", "root", "--interactive=false")
    assert ctl(server, ROOT, *root_passwd, input="rootpw2\n") == "Password updated\n"
    assert error(server, ROOT, "user", "list", rc=EXIT_BAD_LOGIN) == BAD_LOGIN
    assert ctl(server, "--user=root:rootpw2", "user", "list") == "app\nroot\n"

    # a password from stdin, or after the name; a user without roles may only read itself
    new_user = ("user", "add", "u2", "--interactive=false")
    assert ctl(server, "--user=root:rootpw2", *new_user, input="pw2\n") == "User u2 created\n"
    assert ctl(server, "--user=root:rootpw2", "user", "add", "u3:pw3") == "User u3 created\n"
    assert error(server, "--user=u2:pw2", "get", "/app/x") == DENIED
    assert ctl(server, "--user=u2:pw2", "user", "get", "u2") == "User: u2\nRoles:\n"
    assert ctl(server, "--user=u3:pw3", "user", "get", "u3") == "User: u3\nRoles:\n"
    assert error(server, "--user=u3:pw2", "user", "get", "u3", rc=EXIT_BAD_LOGIN) == BAD_LOGIN
