"""Grouping packet records into bundles per partition, with a size and a linger bound.

Sans-IO: the probe hands in each packet's partition, flow key, entry header and frame with
the current (monotonic) time, and sends the bundles this returns. A bundle is ready when it
reaches `max_bytes` (then it goes at once: the bound keeps records well under the
broker's and the consumers' fetch limits) or when its first packet has waited `linger`
seconds (live capture: a quiet partition still delivers within that bound). Within a
partition, packets keep the order they were added in (capture order).

The bundle's Kafka key is the flow key of its first packet: Kafka's default partitioner
maps it to the bundle's partition, so tools that re-key or re-partition by key (and the
seed's per-packet layout) agree on where the flows live.
"""

from __future__ import annotations

from typing import NamedTuple

from wirestream.probe.bundle import join_bundle

DEFAULT_BUNDLE_BYTES = 256 << 10
DEFAULT_LINGER_SECONDS = 0.1


class Ready(NamedTuple):
    partition: int
    key: bytes
    value: bytes
    count: int


class _Open:
    __slots__ = ("count", "key", "parts", "size", "started")

    def __init__(self, key: bytes, started: float) -> None:
        self.key = key
        self.parts: list[bytes] = []
        self.count = 0
        self.size = 0
        self.started = started


class Bundler:
    def __init__(
        self, max_bytes: int = DEFAULT_BUNDLE_BYTES, linger: float = DEFAULT_LINGER_SECONDS
    ) -> None:
        self.max_bytes = max_bytes
        self.linger = linger
        self._open: dict[int, _Open] = {}
        self.oldest = float("inf")  # start of the oldest open bundle (for `due`)

    def add(
        self, partition: int, key: bytes, head: bytes, frame: bytes, now: float
    ) -> Ready | None:
        """Add one entry (probe.bundle.entry_head + frame); returns the partition's bundle
        if this entry filled it."""
        b = self._open.get(partition)
        if b is None:
            b = self._open[partition] = _Open(key, now)
            if now < self.oldest:
                self.oldest = now
        b.parts.append(head)
        b.parts.append(frame)
        b.count += 1
        b.size += len(head) + len(frame)
        if b.size >= self.max_bytes:
            del self._open[partition]
            return Ready(partition, b.key, join_bundle(b.count, b.parts), b.count)
        return None

    def due(self, now: float) -> list[Ready]:
        """Bundles whose first entry has waited `linger` seconds (cheap when none has)."""
        if now - self.oldest < self.linger:
            return []
        ready = []
        oldest = float("inf")
        for partition, b in list(self._open.items()):
            if now - b.started >= self.linger:
                del self._open[partition]
                ready.append(Ready(partition, b.key, join_bundle(b.count, b.parts), b.count))
            elif b.started < oldest:
                oldest = b.started
        self.oldest = oldest
        return ready

    def drain(self) -> list[Ready]:
        """Every open bundle (end of input)."""
        ready = [
            Ready(p, b.key, join_bundle(b.count, b.parts), b.count) for p, b in self._open.items()
        ]
        self._open.clear()
        self.oldest = float("inf")
        return ready

    @property
    def pending(self) -> int:
        """Entries held in open bundles."""
        return sum(b.count for b in self._open.values())
