"""Where coord-server's settings come from: command line, ETCD_* variables or a YAML file.

Theory of operation. etcd reads one of two sources (server/etcdmain/config.go):

* **Flags and environment** (the usual case). Every flag ``--some-flag`` has the variable
  ``ETCD_SOME_FLAG`` (pkg/flags FlagToEnv). A variable fills a flag that was not given on the
  command line; a non-empty variable for a flag that *was* given is a fatal error in etcd 3.4
  and later ("conflicting environment variable ... is shadowed by corresponding command-line
  flag"), so it is a one-line usage error here too. Other ``ETCD_*`` variables get a warning
  ("unrecognized environment variable ETCD_FOO=bar") and are ignored. Empty variables count as
  unset, as in etcd.
* **A configuration file**: ``--config-file PATH`` or ``ETCD_CONFIG_FILE``. etcd's YAML format:
  keys are the flag names without ``--``; the TLS flags sit in the sections
  ``client-transport-security:`` and ``peer-transport-security:`` (``cert-file``, ``key-file``,
  ``trusted-ca-file``, ``client-cert-auth``). When a file is given, every other flag and
  variable is ignored, as in etcd (logged). Unlike etcd, which silently drops keys it does not
  know, an unknown key is an error naming the key and the file.

Nothing here lists flags: :func:`resolve` walks the actions of the parser that
``server/main.py`` builds, so a flag added there has its variable and its file key at once.
Each value, whatever its source, goes through the flag's own ``type`` and ``choices``, and a bad
one is a :class:`SourceError` naming its origin (``ETCD_SNAPSHOT_COUNT``, ``key 'x' in file
F``). Logging is not configured while sources are read (the log settings are among them), so
:func:`resolve` returns its log lines as :class:`Note` values for the caller to emit.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "ENV_PREFIX",
    "TLS_SECTIONS",
    "Note",
    "Resolved",
    "SourceError",
    "flag_to_env",
    "resolve",
]

ENV_PREFIX = "ETCD"
#: the YAML sections holding TLS settings, and the prefix of their keys' flags
TLS_SECTIONS = {"client-transport-security": "", "peer-transport-security": "peer-"}
#: etcd's securityConfig keys (embed/config.go); a flag named <prefix><key> lives in a section
_SECURITY_KEYS = frozenset(
    {
        "cert-file",
        "key-file",
        "client-cert-file",
        "client-key-file",
        "client-cert-auth",
        "trusted-ca-file",
        "auto-tls",
        "allowed-cn",
        "allowed-hostname",
        "skip-client-san-verification",
    }
)
_CONFIG_FILE_FLAG = "config-file"
_UNSET: Any = object()
_EXPECTED: dict[object, str] = {int: "expected an integer", float: "expected a number"}


class SourceError(ValueError):
    """A bad value or file; the message is one line naming the variable, key or file."""


@dataclass(frozen=True)
class Note:
    """A log line produced while reading the sources (logged once logging is set up)."""

    level: int
    message: str


@dataclass
class Resolved:
    """The parsed settings (one attribute per flag ``dest``) and what to log about them."""

    args: argparse.Namespace
    notes: list[Note] = field(default_factory=list)
    config_file: str | None = None


def flag_to_env(name: str, prefix: str = ENV_PREFIX) -> str:
    """``listen-client-urls`` -> ``ETCD_LISTEN_CLIENT_URLS`` (etcd's pkg/flags FlagToEnv)."""
    return f"{prefix}_{name.upper().replace('-', '_')}"


def _flags(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    """(name without ``--``, action) for every long option of ``parser``.

    argparse has no public way to list a parser's options; ``_actions`` is the list that its
    own help and parsing walk (and typeshed declares it)."""
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                yield opt[2:], action


def _is_special(action: argparse.Action) -> bool:
    """--help and --version: they act, they hold no setting."""
    return action.default is argparse.SUPPRESS


def _convert(action: argparse.Action, text: str, origin: str) -> Any:
    """``text`` through the flag's type and choices; SourceError naming ``origin``."""
    try:
        if action.nargs == 0:  # store_true and the like: a Go boolean says whether it is set
            return action.const if _go_bool(text) else action.default
        convert = action.type if callable(action.type) else str
        if action.nargs in (None, "?"):
            value = convert(text)
            values = [value]
        else:
            values = [convert(part.strip()) for part in text.split(",") if part.strip()]
            value = values
    except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
        detail = (
            str(e)
            if isinstance(e, argparse.ArgumentTypeError)
            else (_EXPECTED.get(action.type, "not a valid value"))
        )
        raise SourceError(f"invalid value {text!r} for {origin}: {detail}") from None
    if action.choices is not None:
        for v in values:
            if v not in action.choices:
                allowed = ", ".join(repr(c) for c in action.choices)
                raise SourceError(f"invalid value {text!r} for {origin}: choose from {allowed}")
    return value


def _go_bool(text: str) -> bool:
    v = text.strip().lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _default(action: argparse.Action) -> Any:
    """The flag's default, converted as argparse converts string defaults."""
    if isinstance(action.default, str) and callable(action.type):
        return action.type(action.default)
    return action.default


def resolve(
    parser: argparse.ArgumentParser, argv: Sequence[str], environ: Mapping[str, str]
) -> Resolved:
    """Parse ``argv``, then fill what it leaves unset from the file or ``environ``.

    argparse's own errors (unknown flag, bad value on the command line) exit as usual; a bad
    variable, file or file value raises :class:`SourceError`.
    """
    args = argparse.Namespace(
        **{
            a.dest: _UNSET
            for a in parser._actions
            if a.dest is not argparse.SUPPRESS and not _is_special(a)
        }
    )
    parser.parse_args(argv, namespace=args)
    given = {a.dest for a in parser._actions if getattr(args, a.dest, None) is not _UNSET}
    flags = [(name, a) for name, a in _flags(parser) if not _is_special(a)]
    config_file = args.config_file if args.config_file is not _UNSET else None
    if config_file is None and environ.get(flag_to_env(_CONFIG_FILE_FLAG)):
        config_file = environ[flag_to_env(_CONFIG_FILE_FLAG)]
    resolved = Resolved(args, config_file=config_file)
    if config_file is not None:
        values = _from_file(config_file, flags)
        ignored = [f"--{n}" for n, a in flags if a.dest in given and n != _CONFIG_FILE_FLAG]
        ignored += [
            k
            for k in sorted(environ)
            if k.startswith(ENV_PREFIX + "_") and environ[k] and k != flag_to_env(_CONFIG_FILE_FLAG)
        ]
        resolved.notes.append(
            Note(
                logging.INFO,
                (
                    f"loaded server configuration from {config_file}; other configuration command "
                    "line flags and environment variables are ignored"
                    + (f" (ignored: {', '.join(ignored)})" if ignored else "")
                ),
            )
        )
    else:
        special = {flag_to_env(n) for n, a in _flags(parser) if _is_special(a)}
        values = _from_env(environ, flags, special, given, resolved.notes)
    for action in parser._actions:
        if action.dest is argparse.SUPPRESS or _is_special(action):
            continue
        if action.dest in values:
            setattr(args, action.dest, values[action.dest])
        elif getattr(args, action.dest) is _UNSET or config_file is not None:
            setattr(args, action.dest, _default(action))
    args.config_file = config_file
    return resolved


def _from_env(
    environ: Mapping[str, str],
    flags: list[tuple[str, argparse.Action]],
    special: set[str],
    given: set[str],
    notes: list[Note],
) -> dict[str, Any]:
    """Values from ETCD_* variables (etcd's SetFlagsFromEnv and verifyEnv)."""
    values: dict[str, Any] = {}
    known = {flag_to_env(name): (name, action) for name, action in flags}
    for key in sorted(environ):
        text = environ[key]
        if not key.startswith(ENV_PREFIX + "_") or not text:
            continue
        if key in special:  # etcd: ETCD_VERSION is not --version
            notes.append(
                Note(logging.WARNING, f"cannot set special environment variable {key}={text}")
            )
            continue
        if key not in known:
            notes.append(Note(logging.WARNING, f"unrecognized environment variable {key}={text}"))
            continue
        name, action = known[key]
        if action.dest in given:
            raise SourceError(
                f"conflicting environment variable {key} is shadowed by corresponding "
                f"command-line flag --{name} (either unset environment variable or "
                "disable flag)"
            )
        values[action.dest] = _convert(action, text, key)
        notes.append(Note(logging.INFO, f"recognized and used environment variable {key}={text}"))
    return values


def _from_file(path: str, flags: list[tuple[str, argparse.Action]]) -> dict[str, Any]:
    """Values from etcd's YAML configuration file at ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise SourceError(f"cannot read config file {path!r}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise SourceError(
            f"cannot read config file {path!r}: not UTF-8 text ({e.reason})"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SourceError(f"config file {path!r} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SourceError(f"config file {path!r}: expected a mapping of flag names to values")
    by_name = dict(flags)
    nested = {f"{prefix}{key}" for prefix in TLS_SECTIONS.values() for key in _SECURITY_KEYS}
    values: dict[str, Any] = {}

    def put(name: str, value: object, key: str) -> None:
        origin = f"key {key!r} in config file {path!r}"
        if value is None:  # "data-dir:" with nothing after it: the default
            return
        values[by_name[name].dest] = _convert(by_name[name], _text(value, origin), origin)

    for key, value in data.items():
        if isinstance(key, str) and key in TLS_SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise SourceError(
                    f"key {key!r} in config file {path!r}: expected a mapping "
                    "(cert-file, key-file, trusted-ca-file, client-cert-auth)"
                )
            for sub, subvalue in value.items():
                name = f"{TLS_SECTIONS[key]}{sub}"
                if sub not in _SECURITY_KEYS or name not in by_name:
                    raise SourceError(f"unknown key '{key}.{sub}' in config file {path!r}")
                put(name, subvalue, f"{key}.{sub}")
        elif (
            not isinstance(key, str)
            or key not in by_name
            or key in nested
            or key == _CONFIG_FILE_FLAG
        ):
            hint = ""
            if isinstance(key, str) and key in nested:
                peer = key.startswith("peer-") and key[5:] in _SECURITY_KEYS
                section = "peer-transport-security" if peer else "client-transport-security"
                hint = f" (TLS settings go under {section}:)"
            raise SourceError(f"unknown key {str(key)!r} in config file {path!r}{hint}")
        else:
            put(key, value, key)
    return values


def _text(value: object, origin: str) -> str:
    """A YAML scalar (or a list of them, as etcd's ``log-outputs: [stderr]``) as flag text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, list) and all(
        isinstance(v, int | float | str) and not isinstance(v, bool) for v in value
    ):
        return ",".join(str(v) for v in value)
    raise SourceError(f"invalid value for {origin}: expected a number, boolean or string")
