"""Finding decoders: every decoder (built-in or third-party) registers under the
`wirestream.decoders` entry-point group; `--decoders` selects by name."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

import structlog

from wirestream.decoders.api import Decoder
from wirestream.decoders.options import OptionError, convert

log = structlog.get_logger("wirestream.decoders")

GROUP = "wirestream.decoders"


class UnknownDecoderError(ValueError):
    pass


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        found.setdefault(ep.name, ep)
    return found


def available() -> list[str]:
    """Names of all registered decoders (nothing is imported)."""
    return sorted(_entry_points())


def select(names: list[str] | None) -> list[type[Decoder]]:
    """The decoder classes for `names` (None: all registered; []: none), in that order.
    Only the selected decoders are imported."""
    if names == []:
        return []
    registry = _entry_points()
    explicit = names is not None
    chosen = []
    for name in names if names is not None else sorted(registry):
        if name not in registry:
            known = ", ".join(sorted(registry)) or "none"
            raise UnknownDecoderError(f"unknown decoder {name!r}; registered decoders: {known}")
        try:
            cls = registry[name].load()
            if not (isinstance(cls, type) and issubclass(cls, Decoder)):
                raise TypeError(f"{registry[name].value} is not a Decoder subclass")
        except Exception as exc:
            if explicit:
                raise UnknownDecoderError(f"decoder {name!r} cannot be loaded: {exc}") from exc
            # One broken plugin must not take the others down when running them all.
            log.warning("decoder_not_loaded", decoder=name, error=str(exc))
            continue
        chosen.append(cls)
    return chosen


def check_options(
    options: dict[str, dict[str, Any]], selected: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The options typed by each decoder's `option_defaults` (decoders.options). Refuses
    (UnknownDecoderError, naming what is valid) options of decoders that do not exist or
    are not `selected` (None: all are), names a decoder does not take, and values that are
    not of the default's type."""
    registry = _entry_points()
    typed: dict[str, dict[str, Any]] = {}
    for name, values in options.items():
        if name not in registry:
            known = ", ".join(sorted(registry)) or "none"
            raise UnknownDecoderError(
                f"-O {name}.…: no decoder named {name!r}; registered decoders: {known}"
            )
        if selected is not None and name not in selected:
            chosen = ",".join(selected) or "none"
            raise UnknownDecoderError(
                f"-O {name}.…: decoder {name!r} is not selected (--decoders {chosen}), "
                "so its options would do nothing"
            )
        cls = registry[name].load()
        try:
            typed[name] = {option: convert(cls, option, value) for option, value in values.items()}
        except OptionError as exc:
            raise UnknownDecoderError(str(exc)) from None
    return typed
