"""coord-server configured as etcd is: ETCD_* variables and etcd's YAML --config-file.

Real coord-server processes on loopback: three members started with environment variables
only, three started from YAML files, a member added with ``etcdctl member add`` started from
exactly the ETCD_* lines etcdctl printed, TLS from a file's transport-security sections, and
the one-line errors for bad variables and files.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trustme
from support import CoordProc, Proc, etcdctl, free_port, grpc_status_ok, wait_for
from unwrap import unwrap

from coord import Client

SERVER = [sys.executable, "-m", "coord.server"]


class Member:
    """A coord-server started with ``argv`` extra flags and ``env`` (no flags by default)."""

    def __init__(
        self, tmp: Path, name: str, client_port: int, env: dict[str, str], argv: Sequence[str] = ()
    ) -> None:
        self.name = name
        self.client_port = client_port
        self.endpoint = f"127.0.0.1:{client_port}"
        # cwd = tmp: a member without --data-dir keeps <name>.coord there, as etcd would
        self.proc = Proc([*SERVER, *argv], tmp / f"{name}.log", env=env, cwd=tmp)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def up() -> bool:
            if not self.proc.alive():
                raise AssertionError(f"{self.name} exited:\n{self.proc.output()}")
            return grpc_status_ok(self.client_port)

        wait_for(up, timeout=timeout, what=f"member {self.name} with a leader")


@pytest.fixture
def members() -> Iterator[list[Member]]:
    started: list[Member] = []
    yield started
    for m in started:
        m.proc.stop()


def _ports(names: Sequence[str]) -> dict[str, tuple[int, int]]:
    return {n: (free_port(), free_port()) for n in names}


def _one_cluster(ms: Sequence[Member], names: Sequence[str]) -> None:
    """The members form one cluster: each lists all of them, a put on one is read on another."""
    for m in ms:
        m.wait_ready()
    for m in ms:
        with Client(m.endpoint, timeout=10) as c:
            assert sorted(x.name for x in c.members()) == sorted(names)
    with Client(ms[0].endpoint, timeout=10) as c:
        c.put("/cfg/k", "from-" + ms[0].name)
    with Client(ms[-1].endpoint, timeout=10) as c:
        assert unwrap(c.get("/cfg/k")).value == b"from-" + ms[0].name.encode()


def test_three_members_from_environment_only(tmp_path: Path, members: list[Member]) -> None:
    names = ["e0", "e1", "e2"]
    ports = _ports(names)
    initial = ",".join(f"{n}=http://127.0.0.1:{ports[n][1]}" for n in names)
    for n in names:
        client, peer = ports[n]
        env = {
            "ETCD_NAME": n,
            "ETCD_DATA_DIR": str(tmp_path / f"{n}.data"),
            "ETCD_LISTEN_CLIENT_URLS": f"http://127.0.0.1:{client}",
            "ETCD_ADVERTISE_CLIENT_URLS": f"http://127.0.0.1:{client}",
            "ETCD_LISTEN_PEER_URLS": f"http://127.0.0.1:{peer}",
            "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://127.0.0.1:{peer}",
            "ETCD_INITIAL_CLUSTER": initial,
            "ETCD_INITIAL_CLUSTER_STATE": "new",
            "ETCD_INITIAL_CLUSTER_TOKEN": f"env-{ports['e0'][1]}",
            "ETCD_HEARTBEAT_INTERVAL": "50",
            "ETCD_ELECTION_TIMEOUT": "500",
            "ETCD_NOT_A_FLAG": "surplus",
        }
        members.append(Member(tmp_path, n, client, env))
    _one_cluster(members, names)
    assert (tmp_path / "e1.data").is_dir()  # ETCD_DATA_DIR, not the default e1.coord
    assert not (tmp_path / "e1.coord").exists()
    log = members[1].proc.output()
    assert "recognized and used environment variable ETCD_INITIAL_CLUSTER_STATE=new" in log
    warning = [ln for ln in log.splitlines() if "ETCD_NOT_A_FLAG" in ln]
    assert len(warning) == 1, log
    assert "WARNING" in warning[0]
    assert "unrecognized environment variable ETCD_NOT_A_FLAG=surplus" in warning[0]


def test_three_members_from_config_files(tmp_path: Path, members: list[Member]) -> None:
    names = ["f0", "f1", "f2"]
    ports = _ports(names)
    initial = ",".join(f"{n}=http://127.0.0.1:{ports[n][1]}" for n in names)
    for i, n in enumerate(names):
        client, peer = ports[n]
        path = tmp_path / f"{n}.yml"
        path.write_text(
            "# etcd's format (etcd.conf.yml.sample): flag names as keys\n"
            f"name: '{n}'\n"
            f"data-dir: {tmp_path / (n + '.data')}\n"
            f"listen-client-urls: http://127.0.0.1:{client}\n"
            f"advertise-client-urls: http://127.0.0.1:{client}\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f'initial-cluster: "{initial}"\n'
            f"initial-cluster-token: 'file-{ports['f0'][1]}'\n"
            "initial-cluster-state: 'new'\n"
            "heartbeat-interval: 50\n"
            "election-timeout: 500\n"
            "snapshot-count: 10000\n"
            "quota-backend-bytes: 0\n"
            "log-level: info\n"
            "log-outputs: [stderr]\n"
            "client-transport-security:\n"
            "  cert-file:\n"
            "  client-cert-auth: false\n"
        )
        if i == 0:  # the file by its flag, other flags and variables ignored (as etcd)
            m = Member(
                tmp_path,
                n,
                client,
                {"ETCD_NAME": "ignored-env"},
                ["--config-file", str(path), "--name", "ignored-flag"],
            )
        else:  # the file by ETCD_CONFIG_FILE
            m = Member(tmp_path, n, client, {"ETCD_CONFIG_FILE": str(path)})
        members.append(m)
    _one_cluster(members, names)
    log = members[0].proc.output()
    assert (
        f"loaded server configuration from {tmp_path / 'f0.yml'}; other configuration "
        "command line flags and environment variables are ignored (ignored: --name, "
        "ETCD_NAME)"
    ) in log
    assert "starting coord-server 'f0'" in log


@pytest.mark.etcdctl
def test_member_added_by_etcdctl_joins_from_printed_variables(
    tmp_path: Path, members: list[Member]
) -> None:
    first_peer = f"http://127.0.0.1:{free_port()}"
    first = CoordProc(
        tmp_path,
        name="a0",
        args=[
            "--listen-peer-urls",
            first_peer,
            "--initial-advertise-peer-urls",
            first_peer,
            "--initial-cluster",
            f"a0={first_peer}",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ],
    )
    try:
        etcdctl(first.endpoint, "put", "/cfg/before", "1")
        client, peer = free_port(), free_port()
        out = etcdctl(
            first.endpoint, "member", "add", "a1", f"--peer-urls=http://127.0.0.1:{peer}"
        ).stdout
        printed = dict(re.findall(r'^(ETCD_[A-Z_]+)="([^"]*)"$', out, re.MULTILINE))
        assert set(printed) == {
            "ETCD_NAME",
            "ETCD_INITIAL_CLUSTER",
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            "ETCD_INITIAL_CLUSTER_STATE",
        }, out
        env = {
            **printed,
            "ETCD_LISTEN_CLIENT_URLS": f"http://127.0.0.1:{client}",
            "ETCD_ADVERTISE_CLIENT_URLS": f"http://127.0.0.1:{client}",
            "ETCD_LISTEN_PEER_URLS": f"http://127.0.0.1:{peer}",
        }
        new = Member(tmp_path, "a1", client, env)
        members.append(new)
        new.wait_ready()
        assert (tmp_path / "a1.coord").is_dir()  # --data-dir's default, <name>.coord
        with Client(new.endpoint, timeout=10) as c:
            assert unwrap(c.get("/cfg/before")).value == b"1"
            listed = {m.name: m for m in c.members()}
            assert set(listed) == {"a0", "a1"}
            assert listed["a1"].client_urls == (f"http://127.0.0.1:{client}",)
            c.put("/cfg/after", "2")
        assert etcdctl(first.endpoint, "get", "/cfg/after", "--print-value-only").stdout == "2\n"
    finally:
        first.stop()


def test_tls_from_config_file_transport_security(tmp_path: Path, members: list[Member]) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "s.pem", tmp_path / "s.key"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    client_cert = ca.issue_cert("client.coord.test")
    ccert, ckey = tmp_path / "c.pem", tmp_path / "c.key"
    client_cert.cert_chain_pems[0].write_to_path(str(ccert))
    client_cert.private_key_pem.write_to_path(str(ckey))
    plain, secure, peer = free_port(), free_port(), free_port()
    tls = (
        f"  cert-file: {cert_path}\n  key-file: {key_path}\n"
        f"  trusted-ca-file: {ca_path}\n  client-cert-auth: true\n"
    )
    path = tmp_path / "tls.yml"
    path.write_text(
        "name: t0\n"
        f"listen-client-urls: http://127.0.0.1:{plain},https://127.0.0.1:{secure}\n"
        f"advertise-client-urls: https://127.0.0.1:{secure}\n"
        f"listen-peer-urls: https://127.0.0.1:{peer}\n"
        f"initial-advertise-peer-urls: https://127.0.0.1:{peer}\n"
        f"client-transport-security:\n{tls}"
        f"peer-transport-security:\n{tls}"
    )
    m = Member(tmp_path, "t0", plain, {}, ["--config-file", str(path)])
    members.append(m)
    m.wait_ready()
    ep = f"https://127.0.0.1:{secure}"
    etcdctl(ep, f"--cacert={ca_path}", f"--cert={ccert}", f"--key={ckey}", "put", "/t", "s")
    refused = etcdctl(
        ep,
        f"--cacert={ca_path}",
        "--dial-timeout=2s",
        "--command-timeout=3s",
        "get",
        "/t",
        check=False,
    )
    assert refused.returncode != 0  # client-cert-auth: true, no client certificate
    assert etcdctl(m.endpoint, "get", "/t", "--print-value-only").stdout == "s\n"


def _fails(argv: Sequence[str], env: dict[str, str], cwd: Path) -> str:
    """Run coord-server expecting a usage error; returns the error line."""
    proc = subprocess.run(
        [*SERVER, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("coord-server: error: ")]
    assert len(errors) == 1, proc.stderr
    assert not (cwd / "default.coord").exists()  # nothing started
    return errors[0].removeprefix("coord-server: error: ")


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"ETCD_SNAPSHOT_COUNT": "many"},
            "invalid value 'many' for ETCD_SNAPSHOT_COUNT: expected an integer",
        ),
        (
            {"ETCD_INITIAL_CLUSTER_STATE": "old"},
            "invalid value 'old' for ETCD_INITIAL_CLUSTER_STATE: choose from 'new', 'existing'",
        ),
        (
            {"ETCD_CLIENT_CERT_AUTH": "maybe"},
            "invalid value 'maybe' for ETCD_CLIENT_CERT_AUTH: invalid boolean value 'maybe'",
        ),
        (
            {"ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL": "soon"},
            "invalid value 'soon' for ETCD_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL: invalid duration"
            " 'soon': expected e.g. 200ms, 10s, 1m30s",
        ),
        (
            {"ETCD_LISTEN_CLIENT_URLS": "localhost:1"},
            "invalid URL 'localhost:1': expected http://host:port",
        ),
    ],
)
def test_bad_environment_value_is_a_usage_error(
    tmp_path: Path, env: dict[str, str], error: str
) -> None:
    assert _fails([], env, tmp_path) == error


def test_variable_shadowed_by_flag_is_an_error_as_in_etcd(tmp_path: Path) -> None:
    """etcd 3.4 (and later) exits on this; the flag does not silently win."""
    assert _fails(["--name", "flag"], {"ETCD_NAME": "env"}, tmp_path) == (
        "conflicting environment variable ETCD_NAME is shadowed by corresponding "
        "command-line flag --name (either unset environment variable or disable flag)"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("name: a\nwal-dir: /x\n", "unknown key 'wal-dir' in config file '{path}'"),
        (
            "cert-file: /x\n",
            "unknown key 'cert-file' in config file '{path}' (TLS settings go "
            "under client-transport-security:)",
        ),
        (
            "peer-key-file: /x\n",
            "unknown key 'peer-key-file' in config file '{path}' (TLS "
            "settings go under peer-transport-security:)",
        ),
        (
            "peer-transport-security:\n  auto-tls: true\n",
            "unknown key 'peer-transport-security.auto-tls' in config file '{path}'",
        ),
        (
            "client-transport-security: yes\n",
            "key 'client-transport-security' in config file "
            "'{path}': expected a mapping (cert-file, key-file, trusted-ca-file, client-cert-auth)",
        ),
        (
            "name: [a\n",
            "config file '{path}' is not valid YAML at line 2: expected ',' or ']', "
            "but got '<stream end>'",
        ),
        ("- name\n", "config file '{path}': expected a mapping of flag names to values"),
        (
            "snapshot-count: 1.5\n",
            "invalid value '1.5' for key 'snapshot-count' in config file '{path}': expected an "
            "integer",
        ),
        (
            "initial-cluster-state: old\n",
            "invalid value 'old' for key 'initial-cluster-state' in "
            "config file '{path}': choose from 'new', 'existing'",
        ),
        (
            "name: {a: 1}\n",
            "invalid value for key 'name' in config file '{path}': expected a number, boolean or "
            "string",
        ),
        (
            "client-transport-security:\n  cert-file: /nonexistent/s.pem\n  key-file: /x\n",
            "--cert-file: open /nonexistent/s.pem: no such file or directory",
        ),
    ],
)
def test_bad_config_file_is_a_usage_error(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    assert _fails(["--config-file", str(path)], {}, tmp_path) == error.format(path=path)


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    assert _fails([], {"ETCD_CONFIG_FILE": str(missing)}, tmp_path) == (
        f"cannot read config file '{missing}': No such file or directory"
    )
    (tmp_path / "binary.yml").write_bytes(b"name: \xff\xfe\n")
    assert _fails(["--config-file", str(tmp_path / "binary.yml")], {}, tmp_path).startswith(
        f"cannot read config file '{tmp_path / 'binary.yml'}': not UTF-8 text"
    )
