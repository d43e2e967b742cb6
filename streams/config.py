"""Runtime settings shared by replay and the Kafka mode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reassembly.limits import Limits


@dataclass(slots=True)
class RuntimeConfig:
    limits: Limits = field(default_factory=Limits)
    decoders: list[str] | None = None  # None: every registered decoder; []: none
    decoder_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    partitions: int = 1  # replay: virtual partitions (Kafka's partitioner on the flow key)
    # Replay flushes state to RocksDB every this many packets (the Kafka mode commits on
    # its own interval); outputs never depend on it.
    commit_every_packets: int = 50_000
