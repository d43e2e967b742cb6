"""The bundle codec: many packet records in one value of topic wirestream.packets.

kafka-python spends tens of µs on each record it produces or consumes, more than the
reassembly of a packet; a bundle carries the packet records of one partition's flows in
capture order, so that cost is paid once per bundle. Sans-IO: bytes in, bytes out; the
probe decides when a bundle is full (size bound) or old enough (linger bound), the member
decides what to do with the damage found here (docs/wire-formats.md has the layout):

    magic b"WSB" | version uint8 (1) | count uint32 | count x (length uint32 | record)

big-endian, each record a packet record (probe/record.py) of `length` bytes. A packet
record starts with its own version byte (1), never with b"W", so a consumer tells the two
layouts apart by the first bytes. A reader refuses a bundle version it does not know
(BundleError "unknown_bundle_version") and reports, rather than drops, what a damaged
bundle holds beyond its last well-framed record (`Damage`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from wirestream.probe.record import HEADER, RECORD_VERSION

__all__ = [
    "BUNDLE_HEADER",
    "BUNDLE_VERSION",
    "ENTRY_HEADER",
    "MAGIC",
    "BundleError",
    "Damage",
    "Framing",
    "encode_bundle",
    "entry_head",
    "is_bundle",
    "join_bundle",
    "split_bundle",
]

MAGIC = b"WSB"
BUNDLE_VERSION = 1
BUNDLE_HEADER = struct.Struct(">3sBI")  # magic, version, count
_LEN = struct.Struct(">I")
# An entry's length followed by its packet record's header: what the probe packs per packet
# (the frame follows), and what the member unpacks per packet.
ENTRY_HEADER = struct.Struct(">I" + HEADER.format.lstrip(">"))
_MAX_COUNT = 0xFFFFFFFF


class BundleError(Exception):
    """The value is not a bundle this reader can read at all (nothing in it is used)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Damage(NamedTuple):
    """Bytes of a bundle that could not be framed as records, with why.

    `index`: the entry number where the damage starts; `data`: those bytes (possibly
    empty, e.g. when the count promises records that are not there)."""

    reason: str
    index: int
    data: bytes


class Framing(NamedTuple):
    """Where the records of a bundle are: value[start:stop] for each (start, stop)."""

    spans: list[tuple[int, int]]
    damage: list[Damage]


def is_bundle(value: bytes) -> bool:
    return value[:3] == MAGIC


def entry_head(length: int, flags: int, linktype: int, ts_ns: int, orig_len: int) -> bytes:
    """Length prefix and packet record header of one entry (the frame follows)."""
    return ENTRY_HEADER.pack(length, RECORD_VERSION, flags, linktype, ts_ns, orig_len)


def encode_bundle(records: Sequence[bytes]) -> bytes:
    """A bundle of whole packet records (probe.record.encode_record values)."""
    if len(records) > _MAX_COUNT:
        raise ValueError("too many records for one bundle")
    parts = [BUNDLE_HEADER.pack(MAGIC, BUNDLE_VERSION, len(records))]
    pack = _LEN.pack
    for rec in records:
        parts.append(pack(len(rec)))
        parts.append(rec)
    return b"".join(parts)


def join_bundle(count: int, parts: Sequence[bytes]) -> bytes:
    """A bundle from `count` entries already laid out in `parts` (entry_head + frame each):
    the probe builds entries as packets arrive and joins them once."""
    return b"".join([BUNDLE_HEADER.pack(MAGIC, BUNDLE_VERSION, count), *parts])


def split_bundle(value: bytes) -> Framing:
    """The spans of a bundle's records, and its damage.

    Raises BundleError("not_a_bundle" | "too_short" | "unknown_bundle_version") when no
    record can be trusted. Damage reasons: "bundle_truncated" (a length runs past the end:
    the rest cannot be framed), "bundle_count_mismatch" (fewer records than the count
    says), "bundle_trailing_bytes" (bytes after the last counted record). The records
    themselves are not checked here (the member decodes each one)."""
    size = len(value)
    if size < BUNDLE_HEADER.size:
        raise BundleError("too_short" if value[:3] == MAGIC[: len(value[:3])] else "not_a_bundle")
    magic, version, count = BUNDLE_HEADER.unpack_from(value)
    if magic != MAGIC:
        raise BundleError("not_a_bundle")
    if version != BUNDLE_VERSION:
        raise BundleError("unknown_bundle_version")
    spans: list[tuple[int, int]] = []
    add = spans.append
    unpack = _LEN.unpack_from
    pos = BUNDLE_HEADER.size
    damage: list[Damage] = []
    for index in range(count):
        if pos == size:
            damage.append(Damage("bundle_count_mismatch", index, b""))
            return Framing(spans, damage)
        start = pos + 4
        if start > size:
            damage.append(Damage("bundle_truncated", index, bytes(value[pos:])))
            return Framing(spans, damage)
        (length,) = unpack(value, pos)
        stop = start + length
        if stop > size:
            damage.append(Damage("bundle_truncated", index, bytes(value[pos:])))
            return Framing(spans, damage)
        add((start, stop))
        pos = stop
    if pos != size:
        damage.append(Damage("bundle_trailing_bytes", count, bytes(value[pos:])))
    return Framing(spans, damage)
