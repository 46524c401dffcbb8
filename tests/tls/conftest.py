"""Certificates made per test session with trustme (a CA, server and client certificates)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme


@dataclass(frozen=True)
class Pki:
    """Paths of one CA's files: the CA, a server cert (127.0.0.1/localhost) and a client cert."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_flags(self, prefix: str = "") -> list[str]:
        """``--cert-file/--key-file/--trusted-ca-file`` (``prefix`` = "peer-" for peers)."""
        return [f"--{prefix}cert-file", str(self.server_cert),
                f"--{prefix}key-file", str(self.server_key),
                f"--{prefix}trusted-ca-file", str(self.ca)]


def make_pki(directory: Path, name: str) -> Pki:
    """A fresh CA with one server and one client certificate, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name=f"coord test {name}")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client.coord.test", common_name="client")
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key",
              directory / "client.pem", directory / "client.key")
    ca.cert_pem.write_to_path(str(pki.ca))
    server.cert_chain_pems[0].write_to_path(str(pki.server_cert))
    server.private_key_pem.write_to_path(str(pki.server_key))
    client.cert_chain_pems[0].write_to_path(str(pki.client_cert))
    client.private_key_pem.write_to_path(str(pki.client_key))
    return pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The trusted PKI."""
    return make_pki(tmp_path_factory.mktemp("pki"), "main")


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A second, unrelated CA (its certificates must be refused)."""
    return make_pki(tmp_path_factory.mktemp("pki-other"), "other")
