"""Runtime settings shared by replay and the Kafka mode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wirestream.probe.source import PacketSource
from wirestream.reassembly.limits import Limits


@dataclass(slots=True)
class RuntimeConfig:
    limits: Limits = field(default_factory=Limits)
    decoders: list[str] | None = None  # None: every registered decoder; []: none
    decoder_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    partitions: int = 1  # replay: virtual partitions (Kafka's partitioner on the flow key)
    # Replay flushes state to RocksDB every this many packets (the Kafka mode commits on
    # its own interval); outputs never depend on it.
    commit_every_packets: int = 50_000
    # Raw stream output: every reassembled byte as `stream_chunk` records (base64).
    stream_chunks: bool = False
    # Task extensions (streams.task.TaskExtension factories: classes with a `name`), and
    # their options by name; e.g. windowed statistics.
    extensions: list[Any] = field(default_factory=list)
    extension_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Probe side: timestamp reordering window, and whether VLAN ids are part of flow keys.
    reorder_window_ns: int = 1_000_000_000
    vlan_in_flow_key: bool = True
    # Community ID v1 seed (probe.communityid): sensors that share data must share it.
    community_id_seed: int = 0
    # HTTP body extraction (replay only, streams/files.py): directory, per-file and count
    # bounds; None: off.
    extract_dir: str | None = None
    extract_max_bytes: int = 10 * 1024 * 1024
    extract_max_files: int = 10_000

    def packet_source(self) -> PacketSource:
        return PacketSource(
            reorder_window_ns=self.reorder_window_ns, vlan_in_key=self.vlan_in_flow_key
        )


def tune_gc() -> None:
    """Make the cyclic garbage collector run rarely.

    A flow table holds hundreds of thousands of small objects; with CPython's default
    thresholds (700 allocations) the collector rescans them so often that creating a
    flow cost ~30 µs instead of ~4 µs (measured on a SYN flood). Flows break their own
    reference cycles when they leave the table, so refcounting frees almost everything
    and the collector has little to find anyway.
    """
    import gc

    gc.freeze()  # what exists at start-up (modules, classes) is never garbage
    gc.set_threshold(100_000, 50, 100)
