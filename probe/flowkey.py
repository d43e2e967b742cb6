"""The symmetric flow key: both directions of a flow give the same bytes (Kafka key).

Layout (big-endian, see docs/wire-formats.md): version (1), IP version (4|6), IP protocol,
VLAN count n (0..2), n x VLAN id (uint16, outermost first, id 0 left out), then the lower
endpoint (address, port uint16) and the higher one, ordered by (address bytes, port).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from wirestream.probe.errors import FlowKeyError
from wirestream.probe.packet import Packet

__all__ = [
    "KEY_VERSION",
    "FlowKeyError",
    "FlowKeyFields",
    "decode_flow_key",
    "flow_key",
    "kafka_partition",
    "murmur2",
]

KEY_VERSION = 1
_MAX_VLANS = 2
_ADDR_LEN = {4: 4, 6: 16}

_KEY4 = struct.Struct(">BBBB4sH4sH")  # 16 bytes, no VLAN
_KEY6 = struct.Struct(">BBBB16sH16sH")  # 40 bytes, no VLAN
_HEAD = struct.Struct(">BBBB")
_EP4 = struct.Struct(">4sH4sH")
_EP6 = struct.Struct(">16sH16sH")
_VLANS = {1: struct.Struct(">H"), 2: struct.Struct(">HH")}


class FlowKeyFields(NamedTuple):
    version: int
    ip_version: int
    proto: int
    vlans: tuple[int, ...]
    lower: tuple[bytes, int]  # (address bytes, port)
    higher: tuple[bytes, int]


def flow_key(pkt: Packet) -> tuple[bytes, bool]:
    """Return (key, src_is_lower): the key, and whether pkt's source is its lower endpoint."""
    src = pkt.src
    dst = pkt.dst
    sport = pkt.sport
    dport = pkt.dport
    src_is_lower = src < dst or (src == dst and sport <= dport)
    if src_is_lower:
        a, ap, b, bp = src, sport, dst, dport
    else:
        a, ap, b, bp = dst, dport, src, sport
    vlan = pkt.vlan
    if vlan and 0 in vlan:
        vlan = tuple(v for v in vlan if v)  # priority tags (id 0) do not separate flows
    if not vlan:
        if pkt.ip_version == 4:
            return _KEY4.pack(KEY_VERSION, 4, pkt.proto, 0, a, ap, b, bp), src_is_lower
        return _KEY6.pack(KEY_VERSION, 6, pkt.proto, 0, a, ap, b, bp), src_is_lower
    n = len(vlan)
    if n > _MAX_VLANS:
        raise FlowKeyError("vlan_depth")
    ep = _EP4 if pkt.ip_version == 4 else _EP6
    key = (
        _HEAD.pack(KEY_VERSION, pkt.ip_version, pkt.proto, n)
        + _VLANS[n].pack(*vlan)
        + ep.pack(a, ap, b, bp)
    )
    return key, src_is_lower


def decode_flow_key(key: bytes) -> FlowKeyFields:
    """Split a flow key into its fields; raises FlowKeyError on anything malformed."""
    if len(key) < 4:
        raise FlowKeyError("too_short")
    version, ip_version, proto, n = _HEAD.unpack_from(key)
    if version != KEY_VERSION:
        raise FlowKeyError("unknown_version")
    alen = _ADDR_LEN.get(ip_version)
    if alen is None:
        raise FlowKeyError("bad_ip_version")
    if n > _MAX_VLANS:
        raise FlowKeyError("vlan_depth")
    if len(key) != 4 + 2 * n + 2 * (alen + 2):
        raise FlowKeyError("bad_length")
    vlans = _VLANS[n].unpack_from(key, 4) if n else ()
    a, ap, b, bp = (_EP4 if ip_version == 4 else _EP6).unpack_from(key, 4 + 2 * n)
    return FlowKeyFields(version, ip_version, proto, tuple(vlans), (a, ap), (b, bp))


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS: dict[int, struct.Struct] = {}


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c) as an unsigned 32-bit int, like kafka-python's."""
    length = len(data)
    h = 0x9747B28C ^ length
    n4 = length >> 2
    if n4:
        words = _WORDS.get(n4)
        if words is None:
            words = _WORDS[n4] = struct.Struct(f"<{n4}I")
        for k in words.unpack_from(data):
            k = (k * _M) & _MASK
            k ^= k >> 24
            h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail:
        i = length & ~3
        if tail == 3:
            h ^= data[i + 2] << 16
        if tail >= 2:
            h ^= data[i + 1] << 8
        h = ((h ^ data[i]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key` (kafka-python and Java)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
