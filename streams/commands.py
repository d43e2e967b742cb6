"""The `wirestream` subcommands, each declared by the settings classes its options come
from; parsing a command line layers them (streams/settings_source.py) and hands the
command its settings instances, so no command copies options field by field."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from wirestream.streams.options import Option, add_options, build, options_of
from wirestream.streams.settings_source import resolve

T = TypeVar("T")


@dataclass(frozen=True)
class Invocation:
    """A parsed and layered command line."""

    command: str
    args: argparse.Namespace  # positional arguments (e.g. the captures)
    settings: Mapping[type, Any]
    sources: Mapping[str, str] = field(default_factory=dict)  # option -> where it came from

    def get(self, cls: type[T]) -> T:
        return self.settings[cls]  # type: ignore[no-any-return]


Handler = Callable[[Invocation], int]


class Commands:
    """Subparsers with their settings classes; `parse` gives an Invocation."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self._sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        self._settings: dict[str, tuple[type, ...]] = {}
        self._handlers: dict[str, Handler] = {}
        self._parsers: dict[str, argparse.ArgumentParser] = {}

    def add(
        self,
        name: str,
        settings: Sequence[type],
        handler: Handler,
        positionals: Callable[[argparse.ArgumentParser], None] | None = None,
        **parser_kwargs: Any,
    ) -> argparse.ArgumentParser:
        p = self._sub.add_parser(name, **parser_kwargs)
        if positionals is not None:
            positionals(p)
        for cls in settings:
            add_options(p, cls)
        p.add_argument(
            "--config",
            metavar="FILE",
            default=None,
            help=f"TOML file with settings (keys = long option names, at the top level or in "
            f"a [{name}] table; or WIRESTREAM_CONFIG); precedence: command line > "
            "WIRESTREAM_* environment > file > defaults",
        )
        self._settings[name] = tuple(settings)
        self._handlers[name] = handler
        self._parsers[name] = p
        return p

    def parser_for(self, name: str) -> argparse.ArgumentParser:
        return self._parsers[name]

    def options(self, name: str) -> list[Option]:
        return [opt for cls in self._settings[name] for opt in options_of(cls)]

    def names(self) -> list[str]:
        return list(self._settings)

    def parse(
        self, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> Invocation:
        """Parse and layer; argparse errors exit 2, layering errors raise ConfigError."""
        return self.layer(self.parser.parse_args(argv), environ)

    def layer(
        self, args: argparse.Namespace, environ: Mapping[str, str] | None = None
    ) -> Invocation:
        """Fill in what the command line left out, then build the command's settings."""
        options = self.options(args.command)
        typed = {opt.name: getattr(args, opt.name) for opt in options if hasattr(args, opt.name)}
        known = {name: {opt.name for opt in self.options(name)} for name in self._settings}
        values, sources = resolve(args.command, options, typed, known, args.config, environ)
        for opt in options:
            if hasattr(args, opt.name):
                delattr(args, opt.name)  # settings live in their dataclasses only
        settings = {cls: build(cls, values) for cls in self._settings[args.command]}
        return Invocation(args.command, args, settings, sources)

    def run(self, invocation: Invocation) -> int:
        return self._handlers[invocation.command](invocation)
