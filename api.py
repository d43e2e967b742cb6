"""The stable import path for decoder plugins: `from wirestream.api import Decoder, ...`.

The names below are the plugin contract (stated with its restore rule in
wirestream.decoders.api) and the helpers a decoder needs for its options. Modules behind
them may move; these names stay, so a plugin imports from here and nowhere else. The
testing kit is `wirestream.testing`.
"""

from __future__ import annotations

from wirestream.decoders.api import (
    CLIENT,
    SERVER,
    Decoder,
    DecoderContext,
    Endpoint,
    FlowInfo,
    ts_seconds,
)
from wirestream.decoders.options import PORTS, OptionError, ports

__all__ = [
    "CLIENT",
    "PORTS",
    "SERVER",
    "Decoder",
    "DecoderContext",
    "Endpoint",
    "FlowInfo",
    "OptionError",
    "ports",
    "ts_seconds",
]
