"""The parsed view of one packet: what reassembly and flow tracking need, nothing more."""

from __future__ import annotations

from dataclasses import dataclass

# IP protocol numbers we track as flows.
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP6 = 58
PROTO_SCTP = 132

# TCP flag bits, as on the wire.
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80


@dataclass(slots=True)
class Packet:
    """One L3/L4 packet after link-layer decoding and (if needed) IP defragmentation.

    Addresses are raw network-order bytes (4 for IPv4, 16 for IPv6): cheap to compare
    and to put in a flow key; `ipaddress.ip_address(src)` gives the text form at the edge.
    For ICMP/ICMPv6, the ports are Zeek's port equivalents (probe.icmptypes): sport = the
    message type, dport = the reply type of a request/reply pair, else the code; SCTP has
    its ports; other protocols have ports 0. The TCP fields are 0 except for TCP.
    """

    ts_ns: int  # capture timestamp, nanoseconds since the epoch
    ip_version: int  # 4 or 6
    proto: int  # IP protocol number (6 TCP, 17 UDP, ...)
    src: bytes
    dst: bytes
    sport: int
    dport: int
    payload: bytes  # L4 payload, trimmed to the IP length (Ethernet padding removed)
    tcp_flags: int = 0
    seq: int = 0
    ack: int = 0
    window: int = 0
    vlan: tuple[int, ...] = ()  # 802.1Q ids, outermost first (QinQ gives two)
    wire_len: int = 0  # original frame length on the wire
    # Payload bytes the IP length announces but the capture lacks (snaplen, cut frames):
    # the segment really carried len(payload) + truncated bytes; reassembly sees a gap.
    truncated: int = 0
    flags: int = 0  # packet record flags (probe.record.FLAG_*), e.g. fragment conflicts
    ip_len: int = 0  # the IP header's total length (IPv6: 40 + payload length): ip_bytes
