"""configsource.resolve on coord-server's real parser, with flags added the way main.py adds
them: every flag gets its ETCD_* variable and its file key with no code of its own."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from coord.server import configsource
from coord.server.main import build_parser


def _parser() -> argparse.ArgumentParser:
    p = build_parser()
    a = p.add_argument  # flags in main.py's style that configsource has never heard of
    a("--strict-reconfig-check", action="store_true", help="reject unsafe reconfigurations")
    a("--max-snapshots", type=int, default=5, help="snapshots to keep")
    return p


def test_new_flags_get_their_variables() -> None:
    r = configsource.resolve(
        _parser(),
        ["--max-snapshots", "7"],
        {
            "ETCD_FORCE_NEW_CLUSTER": "true",
            "ETCD_AUTO_COMPACTION_RETENTION": "1h",
            "ETCD_NAME": "n1",
            "ETCD_EMPTY": "",
            "ETCDCTL_API": "3",
            "ETCD_VERSION": "1",
            "ETCD_STRICT_RECONFIG_CHECK": "true",
        },
    )
    assert r.args.force_new_cluster is True
    assert r.args.strict_reconfig_check is True
    assert r.args.auto_compaction_retention == "1h"
    assert r.args.max_snapshots == 7
    assert r.args.name == "n1"
    assert r.args.snapshot_count == 100000  # untouched: the default
    assert r.args.config_file is None
    assert [n.message for n in r.notes] == [
        "recognized and used environment variable ETCD_AUTO_COMPACTION_RETENTION=1h",
        "recognized and used environment variable ETCD_FORCE_NEW_CLUSTER=true",
        "recognized and used environment variable ETCD_NAME=n1",
        "recognized and used environment variable ETCD_STRICT_RECONFIG_CHECK=true",
        "cannot set special environment variable ETCD_VERSION=1",
    ]
    with pytest.raises(
        configsource.SourceError,
        match="shadowed by corresponding command-line flag --max-snapshots",
    ):
        configsource.resolve(_parser(), ["--max-snapshots", "7"], {"ETCD_MAX_SNAPSHOTS": "9"})
    with pytest.raises(
        configsource.SourceError, match="invalid value 'yes please' for ETCD_FORCE_NEW_CLUSTER"
    ):
        configsource.resolve(_parser(), [], {"ETCD_FORCE_NEW_CLUSTER": "yes please"})


def test_new_flags_get_their_file_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(
        'force-new-cluster: true\nauto-compaction-retention: "1"\n'
        "max-snapshots: 3\nname: fromfile\n"
        "peer-transport-security:\n  client-cert-auth: true\n"
    )
    r = configsource.resolve(
        _parser(),
        ["--config-file", str(path), "--snapshot-count", "5"],
        {"ETCD_ELECTION_TIMEOUT": "5000"},
    )
    assert (
        r.args.force_new_cluster,
        r.args.auto_compaction_retention,
        r.args.max_snapshots,
        r.args.name,
    ) == (True, "1", 3, "fromfile")
    assert r.args.peer_client_cert_auth is True
    assert r.args.client_cert_auth is False
    assert r.args.snapshot_count == 100000  # the flag is ignored with a file, as in etcd
    assert r.args.election_timeout == 1000  # and so is the variable
    assert r.args.config_file == str(path)
    assert r.notes[0].message.endswith("(ignored: --snapshot-count, ETCD_ELECTION_TIMEOUT)")
