"""Certificates made per test session with trustme (a CA, server and client certificates)."""

from __future__ import annotations

import pytest
from support import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The trusted PKI."""
    return make_pki(tmp_path_factory.mktemp("pki"), "main")


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A second, unrelated CA (its certificates must be refused)."""
    return make_pki(tmp_path_factory.mktemp("pki-other"), "other")
