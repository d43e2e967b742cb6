"""Decoder options (`-O name.option=value`): typed by the decoder's `option_defaults`,
merged with them, and refused when a decoder does not declare them.

Every decoder also takes `ports` (its class attribute by default), so a plugin's or a
built-in decoder's port fallback can be moved without code. Sans-IO: no entry points are
read here (decoders.registry does that); the CLI text and TOML values come in, typed
dicts go out, or an OptionError naming the option and what it accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wirestream.decoders.api import Decoder

PORTS = "ports"
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class OptionError(ValueError):
    pass


def defaults(cls: type[Decoder]) -> dict[str, Any]:
    """Every option `cls` takes with its default, `ports` included."""
    found: dict[str, Any] = {PORTS: sorted(cls.ports)}
    found.update(cls.option_defaults)
    return found


def merged(cls: type[Decoder], given: Mapping[str, Any]) -> dict[str, Any]:
    """The options dict a decoder gets: every default, overridden by `given` (typed)."""
    values = defaults(cls)
    for option, value in given.items():
        values[option] = convert(cls, option, value)
    return values


def ports(options: Mapping[str, Any]) -> frozenset[int]:
    return frozenset(options[PORTS])


def convert(cls: type[Decoder], option: str, value: Any) -> Any:
    """`value` (CLI text, or a TOML/Python value) as the type of the option's default."""
    known = defaults(cls)
    if option not in known:
        raise OptionError(
            f"-O {cls.name}.{option}: decoder {cls.name!r} has no option {option!r} "
            f"(its options: {', '.join(sorted(known))})"
        )
    default = known[option]
    try:
        return _typed(default, value)
    except (TypeError, ValueError) as exc:
        raise OptionError(
            f"-O {cls.name}.{option}={value!r}: expected {_describe(default)} "
            f"(default {default!r}): {exc}"
        ) from None


def _typed(default: Any, value: Any) -> Any:
    # bool before int: bool is an int subclass
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError("not a boolean (true/false)")
    if isinstance(default, int):
        if isinstance(value, bool | float):
            raise TypeError("not an integer")
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    if isinstance(default, float):
        if isinstance(value, bool):
            raise TypeError("not a number")
        return float(value)
    if isinstance(default, str):
        return str(value)
    if isinstance(default, list | tuple | frozenset | set):
        items = value.split(",") if isinstance(value, str) else list(value)
        out = sorted({_port(item) for item in items if str(item).strip()})
        return out
    raise TypeError(f"options of type {type(default).__name__} are not supported")


def _port(item: Any) -> int:
    if isinstance(item, bool | float):
        raise TypeError("ports are integers")
    port = int(str(item).strip())
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return port


def _describe(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    return "a comma-separated list of ports"
