"""ICMP and ICMPv6 message types as ports, Zeek's way (and Community ID's, which copies it).

Zeek keys an ICMP "connection" by (type, counterpart): a request and its reply (echo,
timestamp, router solicitation/advertisement, ...) map to the same flow, with the
request's type as the originator's port and the reply's as the responder's. Any other
message is one-way: its ports are (type, code), and Community ID does not reorder its
endpoints. Sources: Zeek's src/packet_analysis/protocol/icmp/ICMP.cc (ICMP4_counterpart,
ICMP6_counterpart) and the Community ID spec's reference (communityid/icmp.py, icmp6.py).
"""

from __future__ import annotations

from wirestream.probe.packet import PROTO_ICMP

_ICMP4_PAIRS = {0: 8, 8: 0, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {
    128: 129, 129: 128,  # echo request / reply
    130: 131, 131: 130,  # MLD listener query / report
    133: 134, 134: 133,  # router solicitation / advertisement
    135: 136, 136: 135,  # neighbour solicitation / advertisement
    139: 140, 140: 139,  # node information query / reply (who are you)
    144: 145, 145: 144,  # home agent address discovery request / reply
}  # fmt: skip


def port_equivalents(proto: int, icmp_type: int, code: int) -> tuple[int, int, bool]:
    """(sport, dport, one_way) of one ICMP (proto 1) or ICMPv6 (58) message."""
    pairs = _ICMP4_PAIRS if proto == PROTO_ICMP else _ICMP6_PAIRS
    reply = pairs.get(icmp_type)
    if reply is None:
        return icmp_type, code, True
    return icmp_type, reply, False


def is_one_way(proto: int, icmp_type: int) -> bool:
    """Whether a message of this type has no counterpart (no endpoint ordering)."""
    return icmp_type not in (_ICMP4_PAIRS if proto == PROTO_ICMP else _ICMP6_PAIRS)
