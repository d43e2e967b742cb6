"""Settings dataclasses as the one source of command-line options.

A setting is a dataclass field made with `option(...)`: its default is the field's
default, and the field's metadata holds the help text, the parser (type), metavar,
choices and the environment variable. `add_options` generates the argparse options from
the fields, `convert` parses a value from the environment or a config file with the same
parser, and `build` makes the dataclass instance from the layered values
(streams/settings_source.py). So a default or a help text is written once, and adding an
option is adding one field.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

ENV_PREFIX = "WIRESTREAM_"
_KEY = "wirestream.option"
_NESTED = "wirestream.nested"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def show_default(value: Any) -> str | None:
    """How a default appears in --help: None (or a flag's False) is described by the help."""
    if value is None or isinstance(value, bool) or value == []:
        return None
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """What the command line, the environment and the config file need to know of a field."""

    help: str
    env: str = ""  # the environment variable; "" = WIRESTREAM_<FIELD NAME>
    parse: Callable[[str], Any] | None = None  # text -> value (argparse `type`); None: text
    metavar: str | None = None
    choices: tuple[Any, ...] | None = None
    flags: tuple[str, ...] = ()  # short forms, e.g. ("-o",)
    repeat: bool = False  # repeatable: a list (TOML list, comma-separated in the environment)
    # The default as --help shows it (None: the help text says what the default means).
    show: Callable[[Any], str | None] | None = show_default


def option(default: Any = dataclasses.MISSING, *, help: str, **spec: Any) -> Any:
    """A settings field that is also an option (`--field-name`, WIRESTREAM_FIELD_NAME, and
    `field_name` in the config file). No default = required (checked after layering)."""
    metadata = {_KEY: OptionSpec(help=help, **spec)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def nested(cls: type) -> Any:
    """A field holding another settings dataclass whose options are the command's too."""
    return dataclasses.field(default_factory=cls, metadata={_NESTED: cls})


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a command: the field's name (= argparse dest and config key)."""

    name: str
    spec: OptionSpec
    default: Any  # dataclasses.MISSING: required
    owner: type

    @property
    def flag(self) -> bool:
        return isinstance(self.default, bool)

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def long(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return self.spec.env or ENV_PREFIX + self.name.upper()


def options_of(cls: type) -> Iterator[Option]:
    """Every option of a settings class, nested classes included, in field order."""
    for f in dataclasses.fields(cls):
        if _NESTED in f.metadata:
            yield from options_of(f.metadata[_NESTED])
        elif _KEY in f.metadata:
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = f.default
            yield Option(f.name, f.metadata[_KEY], default, cls)


def help_text(opt: Option) -> str:
    text = opt.spec.help
    shown = None if opt.required or opt.spec.show is None else opt.spec.show(opt.default)
    if opt.required:
        text += f" (required; or {opt.env})"
    elif shown is not None:
        text += f" (default: {shown})"
    return text.replace("%", "%%")


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Generate `cls`'s options. Defaults are suppressed: the parsed namespace holds only
    what was typed, so the layering can tell the command line from the rest."""
    for opt in options_of(cls):
        kwargs: dict[str, Any] = {
            "dest": opt.name,
            "default": argparse.SUPPRESS,
            "help": help_text(opt),
        }
        if opt.flag:
            if opt.default:
                raise TypeError(f"{cls.__name__}.{opt.name}: a flag must default to False")
            kwargs["action"] = "store_true"
        else:
            if opt.spec.parse is not None:
                kwargs["type"] = opt.spec.parse
            if opt.spec.choices is not None:
                kwargs["choices"] = opt.spec.choices
            if opt.spec.metavar is not None:
                kwargs["metavar"] = opt.spec.metavar
            if opt.spec.repeat:
                kwargs["action"] = "append"
        parser.add_argument(*opt.spec.flags, opt.long, **kwargs)


def convert(opt: Option, raw: Any) -> Any:
    """Parse a value from the environment (text) or a TOML file (typed) with the option's
    own parser, so it is checked exactly as on the command line. Raises ValueError."""
    try:
        if opt.flag:
            return _bool(raw)
        if opt.spec.repeat:
            items = raw if isinstance(raw, list) else [x for x in str(raw).split(",") if x]
            return [_one(opt.spec, item) for item in items]
        if isinstance(raw, list):
            raw = ",".join(str(x) for x in raw)
        return _one(opt.spec, raw)
    except (argparse.ArgumentTypeError, TypeError) as exc:
        raise ValueError(str(exc)) from None


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _one(spec: OptionSpec, raw: Any) -> Any:
    text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
    value = spec.parse(text) if spec.parse is not None else text
    if spec.choices is not None and value not in spec.choices:
        choices = ", ".join(map(str, spec.choices))
        raise ValueError(f"invalid choice {value!r} (choose from {choices})")
    return value


def build(cls: type, values: Mapping[str, Any]) -> Any:
    """An instance of `cls` from layered values (fields without a value keep their default)."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if _NESTED in f.metadata:
            kwargs[f.name] = build(f.metadata[_NESTED], values)
        elif _KEY in f.metadata and f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)
