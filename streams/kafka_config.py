"""Layered settings for `probe` and `run`: command line > environment > config file > defaults.

Every long option OPT-NAME of these commands can also come from
  - the environment, as WIRESTREAM_OPT_NAME (e.g. WIRESTREAM_BOOTSTRAP_SERVERS), and
  - a TOML file (`--config FILE` or WIRESTREAM_CONFIG), as opt_name (or "opt-name") at the
    top level (both commands) or in a [probe] / [run] table (that command only; it wins
    over the top level).
Values from the environment and the file go through the option's own parser, so they are
checked exactly as on the command line. How it works: after the parser is built, each
option's default is recorded and replaced by argparse.SUPPRESS, so the parsed namespace
holds only what was typed; the rest is filled in layer by layer.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "WIRESTREAM_"
CONFIG_ENV = "WIRESTREAM_CONFIG"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """A setting from the environment or the config file is invalid (says where)."""


@dataclass(frozen=True, slots=True)
class Option:
    dest: str
    action: argparse.Action
    default: Any


def layerable(parser: argparse.ArgumentParser, skip: set[str]) -> dict[str, Option]:
    """Record the defaults of `parser`'s optional arguments and suppress them."""
    options: dict[str, Option] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in skip or action.dest == "help":
            continue
        options[action.dest] = Option(action.dest, action, action.default)
        action.default = argparse.SUPPRESS
    return options


def env_name(dest: str) -> str:
    return ENV_PREFIX + dest.upper()


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
        dest = key.replace("-", "_")
        if dest not in known_any:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        if dest in commands[command]:
            values[dest] = value
    for key, value in tables.get(command, {}).items():
        dest = key.replace("-", "_")
        if dest not in commands[command]:
            raise ConfigError(f"config file {path}: unknown setting {key!r} in [{command}]")
        values[dest] = value
    return values


def convert(option: Option, raw: Any, where: str) -> Any:
    """Parse a value from the environment (a string) or the file (TOML-typed)."""
    action = option.action
    try:
        if action.nargs == 0:  # store_true / store_false / store_const
            flag = _bool(raw)
            if isinstance(action, argparse._StoreFalseAction):
                return not flag
            return action.const if flag else option.default
        if isinstance(action, argparse._AppendAction):
            items = raw if isinstance(raw, list) else [x for x in str(raw).split(",") if x]
            return [_one(action, item) for item in items]
        if isinstance(raw, list):
            raw = ",".join(str(x) for x in raw)
        return _one(action, raw)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _one(action: argparse.Action, raw: Any) -> Any:
    text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
    value = action.type(text) if callable(action.type) else text  # type: ignore[arg-type]
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ValueError(f"invalid choice {value!r} (choose from {choices})")
    return value


def resolve(
    args: argparse.Namespace,
    command: str,
    options: Mapping[str, Option],
    commands: Mapping[str, set[str]],
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Fill `args` in place, layer by layer; returns where each value came from."""
    environ = os.environ if environ is None else environ
    path = getattr(args, "config", None) or environ.get(CONFIG_ENV)
    from_file = file_values(load_file(path), command, commands, path) if path else {}
    sources: dict[str, str] = {}
    for dest, option in options.items():
        if hasattr(args, dest):
            sources[dest] = "command line"
            continue
        name = env_name(dest)
        if name in environ:
            value = convert(option, environ[name], f"environment {name}")
            sources[dest] = "environment"
        elif dest in from_file:
            value = convert(option, from_file[dest], f"config file {path}: {dest}")
            sources[dest] = "config file"
        else:
            value = option.default
            sources[dest] = "default"
        setattr(args, dest, value)
    return sources
