"""coord-server's logging: etcd's --logger, --log-outputs and --log-level on stdlib logging.

Theory of operation. Every module logs through :mod:`logging`; :func:`configure` installs one
handler per output on the root logger, all with the same formatter:

* ``capnslog`` (coord's default): the text lines coord has always written,
  ``2026-12-02 03:40:00,123 INFO coord.server: message``.
* ``zap``: one JSON object per line, as etcd's zap logger writes them, with the keys ``level``
  (``debug``/``info``/``warn``/``error``/``fatal``), ``ts`` (ISO 8601, UTC, milliseconds),
  ``logger`` (the Python logger name), ``caller`` (``module.py:line``) and ``msg``; a logged
  exception adds ``error``. The formatter is a dozen lines over :func:`json.dumps`, so no
  dependency (python-json-logger) is needed for it.

Outputs are etcd's: ``default`` and ``stderr`` are standard error, ``stdout`` standard output,
anything else a file path opened for appending (an unopenable path is a ValueError, reported as
a usage error before the server starts); etcd's ``journal`` (journald) is refused, not taken
for a file name. etcd 3.4's levels are accepted: ``panic`` and ``fatal``
both mean CRITICAL, ``warn`` and ``warning`` WARNING.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Sequence

__all__ = ["LEVELS", "LOGGERS", "JsonFormatter", "configure"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
LOGGERS = ("capnslog", "zap")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ZAP_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line, with etcd zap's keys."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        out = {
            "level": _ZAP_LEVELS.get(record.levelno, record.levelname.lower()),
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "logger": record.name,
            "caller": f"{record.module}.py:{record.lineno}",
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def _handler(output: str) -> logging.Handler:
    if output in ("default", "stderr"):
        return logging.StreamHandler(sys.stderr)
    if output == "stdout":
        return logging.StreamHandler(sys.stdout)
    if output == "journal":  # etcd writes to systemd's journald; that is no file name here
        raise ValueError(
            "--log-outputs 'journal' (systemd journald) is not supported: use "
            "stderr, which systemd collects"
        )
    try:
        return logging.FileHandler(output, mode="a", encoding="utf-8")
    except OSError as e:
        raise ValueError(f"cannot open --log-outputs file {output!r}: {e.strerror or e}") from None


def configure(logger: str, outputs: Sequence[str], level: str) -> None:
    """Route the root logger to ``outputs`` in ``logger``'s format at ``level``."""
    formatter = JsonFormatter() if logger == "zap" else logging.Formatter(TEXT_FORMAT)
    handlers = [
        _handler(o) for o in dict.fromkeys("stderr" if o == "default" else o for o in outputs)
    ]
    for h in handlers:
        h.setFormatter(formatter)
    logging.basicConfig(level=LEVELS[level], handlers=handlers, force=True)
    logging.getLogger("grpclib").setLevel(max(logging.WARNING, LEVELS[level]))
