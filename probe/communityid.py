"""Community ID v1 of a flow (Corelight's flow hash, shared by Zeek, Suricata, Arkime,
Elastic), so wirestream records join with theirs.

Spec: https://github.com/corelight/community-id-spec (community-id.py there is the
reference; the `communityid` PyPI package implements it and the tests compare with it):
"1:" + base64(sha1(seed u16 | src addr | dst addr | proto u8 | 0 u8 | [src port u16 |
dst port u16])), all big-endian, where (src, port) <= (dst, port) unless the flow is an
ICMP one-way message. Ports are hashed for TCP, UDP, SCTP, ICMP and ICMPv6 (ICMP's are
Zeek's port equivalents: probe.icmptypes); other protocols hash none.

Computed once per flow from its key (FlowSession caches it), never per packet.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from wirestream.probe.flowkey import decode_flow_key
from wirestream.probe.icmptypes import is_one_way
from wirestream.probe.packet import PROTO_ICMP, PROTO_ICMP6, PROTO_SCTP, PROTO_TCP, PROTO_UDP

__all__ = ["community_id", "flow_community_id"]

_PORT_PROTOS = frozenset((PROTO_TCP, PROTO_UDP, PROTO_SCTP, PROTO_ICMP, PROTO_ICMP6))
_HEAD = struct.Struct("!H")
_PORTS = struct.Struct("!HH")


def community_id(
    proto: int, saddr: bytes, daddr: bytes, sport: int, dport: int, seed: int = 0
) -> str:
    """Community ID v1 of one flow tuple; addresses as packed bytes (4 or 16)."""
    one_way = proto in (PROTO_ICMP, PROTO_ICMP6) and is_one_way(proto, sport)
    if not one_way and (daddr, dport) < (saddr, sport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = _HEAD.pack(seed) + saddr + daddr + bytes((proto, 0))
    if proto in _PORT_PROTOS:
        data += _PORTS.pack(sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def flow_community_id(key: bytes, orig_side: int, seed: int = 0) -> str:
    """Community ID of the flow with this key (probe.flowkey); `orig_side` (0 = the key's
    lower endpoint) is the originator, which matters only for one-way ICMP."""
    fields = decode_flow_key(key)
    ends = (fields.lower, fields.higher)
    (saddr, sport), (daddr, dport) = ends[orig_side], ends[1 - orig_side]
    return community_id(fields.proto, saddr, daddr, sport, dport, seed)
