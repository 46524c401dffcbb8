"""coord-server's etcd logging flags: --logger zap (JSON lines), --log-outputs, --log-level."""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import sys
from pathlib import Path

from support import CoordProc, wait_for


def _records(text: str) -> list[dict[str, str]]:
    """Every line as one JSON object with zap's keys (fails on any other line)."""
    out = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert {"level", "ts", "logger", "caller", "msg"} <= set(record), line
        assert record["level"] in ("debug", "info", "warn", "error", "fatal"), line
        datetime.datetime.fromisoformat(record["ts"])
        out.append(record)
    return out


def test_zap_logger_to_stderr_and_a_file(tmp_path: Path) -> None:
    log_file = tmp_path / "out" / "coord.jsonl"
    log_file.parent.mkdir()
    proc = CoordProc(
        tmp_path,
        name="zap",
        env={"ETCD_UNKNOWN_THING": "x"},
        args=["--logger", "zap", "--log-outputs", f"stderr,{log_file}", "--log-level", "debug"],
    )
    try:
        proc.popen.send_signal(signal.SIGTERM)
        wait_for(lambda: not proc.alive(), timeout=20, what="coord-server exit after SIGTERM")
        assert proc.popen.returncode == 0
    finally:
        proc.stop()
    on_stderr = _records(proc.log_path.read_text())  # the process's stdout+stderr: JSON lines only
    in_file = _records(log_file.read_text())
    assert [r["msg"] for r in in_file] == [r["msg"] for r in on_stderr]
    msgs = [r["msg"] for r in in_file]
    assert "starting coord-server 'zap'" in " ".join(msgs)
    assert any(m.startswith("stopping coord-server 'zap'") for m in msgs), msgs
    (warn,) = [r for r in in_file if "ETCD_UNKNOWN_THING" in r["msg"]]
    assert warn == {
        **warn,
        "level": "warn",
        "logger": "coord.server.config",
        "msg": "unrecognized environment variable ETCD_UNKNOWN_THING=x",
    }
    assert any(r["level"] == "debug" for r in in_file)  # --log-level debug


def test_log_outputs_file_only_and_default_text_format(tmp_path: Path) -> None:
    log_file = tmp_path / "coord.log"
    proc = CoordProc(tmp_path, name="tofile", args=["--log-outputs", str(log_file)])
    proc.stop()
    assert proc.log_path.read_text() == ""  # nothing on stderr: the file is the only output
    text = log_file.read_text()  # capnslog, the default: text lines
    assert " INFO coord.server: starting coord-server 'tofile'" in text
    assert " INFO coord.server: stopping coord-server 'tofile'" in text
    proc = CoordProc(tmp_path, name="text", args=["--log-outputs", "default"])
    proc.stop()
    first = proc.log_path.read_text().splitlines()[0]
    assert " INFO coord.server" in first
    assert not first.startswith("{")


def _usage_error(tmp_path: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "coord.server", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert not (tmp_path / "default.coord").exists()
    return proc.stderr.splitlines()[-1]


def test_unusable_log_output_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "no-such-dir" / "x.log"
    assert _usage_error(tmp_path, "--log-outputs", str(bad)) == (
        f"coord-server: error: cannot open --log-outputs file '{bad}': No such file or directory"
    )
    assert _usage_error(tmp_path, "--log-outputs", "stderr,journal") == (
        "coord-server: error: --log-outputs 'journal' (systemd journald) is not supported: "
        "use stderr, which systemd collects"
    )
    assert not (tmp_path / "journal").exists()
