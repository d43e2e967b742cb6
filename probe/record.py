"""The packet record codec: the value of topic wirestream.packets, and replay's input.

A 16-byte big-endian header, then the captured frame bytes (see docs/wire-formats.md):
version (uint8, 1), flags (uint8), link type (uint16), capture timestamp in ns (uint64),
original length on the wire (uint32). The capture time lives here, not in the Kafka record
timestamp (broker retention acts on that one).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from wirestream.probe.errors import RecordError

__all__ = [
    "FLAG_FRAGMENT_CONFLICT",
    "FLAG_REASSEMBLED",
    "HEADER",
    "RECORD_VERSION",
    "PacketRecord",
    "RecordError",
    "decode_record",
    "encode_record",
]

RECORD_VERSION = 1
# The frame is an IP datagram reassembled from fragments: the first fragment's link-layer
# header followed by the whole IP packet, orig_len = len(frame).
FLAG_REASSEMBLED = 0x01
# The reassembled datagram's fragments overlapped with different bytes (first copy kept).
FLAG_FRAGMENT_CONFLICT = 0x02

HEADER = struct.Struct(">BBHQI")
_HEADER_LEN = HEADER.size  # 16


class PacketRecord(NamedTuple):
    version: int
    flags: int
    linktype: int
    ts_ns: int
    orig_len: int
    frame: bytes


def encode_record(linktype: int, ts_ns: int, orig_len: int, frame: bytes, flags: int = 0) -> bytes:
    """Header + frame. Raises RecordError if a field does not fit its width."""
    try:
        return HEADER.pack(RECORD_VERSION, flags, linktype, ts_ns, orig_len) + frame
    except struct.error as exc:
        raise RecordError("field_out_of_range") from exc


def decode_record(data: bytes) -> PacketRecord:
    """Parse a record; raises RecordError("too_short" | "unknown_version").

    Unknown flag bits are kept and otherwise ignored (forward compatible).
    """
    if len(data) < _HEADER_LEN:
        raise RecordError("too_short")
    version, flags, linktype, ts_ns, orig_len = HEADER.unpack_from(data)
    if version != RECORD_VERSION:
        raise RecordError("unknown_version")
    return PacketRecord(version, flags, linktype, ts_ns, orig_len, bytes(data[_HEADER_LEN:]))
