"""Where each setting comes from, the same for every command (replay, probe, run, enrich):
command line > environment > config file > defaults.

Every option OPT-NAME of a command can also come from
  - the environment, as WIRESTREAM_OPT_NAME (e.g. WIRESTREAM_BOOTSTRAP_SERVERS), and
  - a TOML file (`--config FILE` or WIRESTREAM_CONFIG), as opt_name (or "opt-name") at the
    top level (every command that has the option) or in a [replay] / [probe] / [run] /
    [enrich] table (that command only; it wins over the top level).
Values from the environment and the file go through the option's own parser
(streams/options.py), so they are checked exactly as on the command line, and an error
names the variable or the file and key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from wirestream.streams.exitcodes import UsageError
from wirestream.streams.options import Option, convert

CONFIG_ENV = "WIRESTREAM_CONFIG"


class ConfigError(UsageError):
    """A setting from the environment or the config file is invalid, or a required one is
    missing (says where)."""


def load_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


def file_values(
    data: Mapping[str, Any], command: str, commands: Mapping[str, set[str]], path: str
) -> dict[str, Any]:
    """The file's settings for `command`; unknown keys are errors (typos must not pass)."""
    known_any = set().union(*commands.values())
    values: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    for key, value in data.items():
        if key in commands:
            if not isinstance(value, dict):
                raise ConfigError(f"config file {path}: [{key}] must be a table")
            tables[key] = value
            continue
        name = key.replace("-", "_")
        if name not in known_any:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        if name in commands[command]:
            values[name] = value
    for key, value in tables.get(command, {}).items():
        name = key.replace("-", "_")
        if name not in commands[command]:
            raise ConfigError(f"config file {path}: unknown setting {key!r} in [{command}]")
        values[name] = value
    return values


def resolve(
    command: str,
    options: Iterable[Option],
    typed: Mapping[str, Any],
    commands: Mapping[str, set[str]],
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each option's value, layer by layer, and where it came from. `typed`: what the
    command line gave (already parsed); `commands`: every command's option names (a key
    of another command in the file is not a typo)."""
    environ = os.environ if environ is None else environ
    path = config or environ.get(CONFIG_ENV)
    from_file = file_values(load_file(path), command, commands, path) if path else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in options:
        try:
            if opt.name in typed:
                values[opt.name], sources[opt.name] = typed[opt.name], "command line"
            elif opt.env in environ:
                where = f"environment {opt.env}"
                values[opt.name], sources[opt.name] = convert(opt, environ[opt.env]), "environment"
            elif opt.name in from_file:
                where = f"config file {path}: {opt.name}"
                values[opt.name] = convert(opt, from_file[opt.name])
                sources[opt.name] = "config file"
            elif opt.required:
                raise ConfigError(
                    f"{opt.long} is required (or {opt.env}, or {opt.name} in the config file)"
                )
            else:
                values[opt.name], sources[opt.name] = opt.default, "default"
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return values, sources
