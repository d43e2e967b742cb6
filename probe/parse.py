"""Link layer, IPv4/IPv6 and TCP/UDP headers of one captured frame -> Packet.

Hot path: `common_tcp4` is a guard in front of the one parser: it recognises the common
frame (Ethernet, option-less unfragmented IPv4, TCP) with one precompiled struct, and
everything else goes through the general path below (`parse_general`), which gives the same
Packet for the frames the guard accepts (tests/test_probe_parse.py compares them). No
checksum is ever checked (loopback and offloaded captures carry wrong ones). Lengths come
from the IP header, which also trims Ethernet padding and FCS.

Outcomes of `parse_frame`:
  Packet    an IP packet (TCP/UDP/SCTP with ports, TCP fields; ICMP with its type/code as
            ports the way Zeek pairs them, probe.icmptypes; other protocols with ports 0).
            A frame cut short by the snaplen still gives a Packet when its L4 header is
            complete: `payload` is what was captured, `truncated` what is missing.
  Fragment  one fragment of an IP datagram: feed it to probe.defrag.Defragmenter
  None      not IP (ARP, LLC, ...): not an error
  ParseError(kind), kinds: truncated_link, unknown_linktype, vlan_depth, truncated_ipv4,
            truncated_ipv6, bad_ip_header, bad_ipv6_ext, truncated_tcp, bad_tcp_header,
            truncated_udp
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from wirestream.probe.errors import ParseError
from wirestream.probe.icmptypes import port_equivalents
from wirestream.probe.packet import (
    PROTO_ICMP,
    PROTO_ICMP6,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    Packet,
)

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "SUPPORTED_LINKTYPES",
    "Fragment",
    "ParseError",
    "common_tcp4",
    "parse_frame",
    "parse_general",
    "parse_ip",
]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# DLT_RAW had the values 12 (most BSDs, Linux) and 14 (OpenBSD) before LINKTYPE_RAW existed.
_RAW_LINKTYPES = frozenset((LINKTYPE_RAW, 12, 14))
SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_LINUX_SLL2,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        *_RAW_LINKTYPES,
    }
)

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_MAX_VLANS = 2
# BSD AF_INET6 differs per OS: NetBSD/OpenBSD 24, FreeBSD 28, Darwin 30.
_AF_INET = 2
_AF_INET6 = frozenset((24, 28, 30))

# IPv6 extension headers with the generic (next header, length in 8-octet units) layout.
_IP6_EXT = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
_IP6_FRAG = 44
_IP6_AH = 51

# Ethernet + option-less IPv4 + TCP fixed header, addresses and ports skipped (bytes 26-37):
# ethertype, version/IHL, total length, fragment field, protocol, seq, ack, offset, flags,
# window.
_COMMON = struct.Struct("!12xHBxH2xHxB14xIIBBH")
_PORTS = struct.Struct("!HH")
_IP4 = struct.Struct("!BxHHHxB2x4s4s")
_IP6 = struct.Struct("!BxxxHBx16s16s")
_TCP = struct.Struct("!HHIIBBH")
_UDP = struct.Struct("!HHH")
_U16 = struct.Struct("!H")
_U32BE = struct.Struct(">I")
_U32LE = struct.Struct("<I")
_FRAG6 = struct.Struct("!BxHI")


@dataclass(slots=True)
class Fragment:
    """One fragment of an IP datagram, as the defragmenter needs it.

    `header` is the IPv4 header (options included) or the IPv6 unfragmentable part (fixed
    header + extension headers before the fragment header); `nh_offset` is the offset in
    `header` of the next-header byte that names the fragment header (IPv6) or of the
    protocol field (IPv4). `l2` is the link-layer header in front of the IP header, kept so
    that the reassembled datagram can be re-framed with the original link type and VLANs.
    """

    ts_ns: int
    ip_version: int
    proto: int
    src: bytes
    dst: bytes
    ident: int
    offset: int  # in bytes
    more: bool
    header: bytes
    data: bytes
    vlan: tuple[int, ...]
    wire_len: int
    linktype: int
    l2: bytes
    nh_offset: int


def common_tcp4(buf: bytes, start: int, stop: int) -> tuple[int, int, int, int, int, int] | None:
    """The fast path's guard, the one place that recognises the common frame in
    buf[start:stop]: Ethernet, IPv4 without options or fragmentation, TCP, all of it
    captured. Returns (seq, ack, flags, window, payload start, payload end) as offsets in
    `buf`; the addresses and ports are bytes 26-37 of the frame. None: not such a frame,
    the general parser decides (and gives the same Packet for what this accepts)."""
    if stop - start < 54:
        return None
    et, vihl, tlen, frag, proto, seq, ack, doff, flags, win = _COMMON.unpack_from(buf, start)
    hl = (doff >> 4) << 2
    end = start + 14 + tlen
    if (
        et == ETH_P_IP
        and vihl == 0x45
        and proto == PROTO_TCP
        and not frag & 0x3FFF
        and hl >= 20
        and 20 + hl <= tlen
        and end <= stop
    ):
        return seq, ack, flags, win, start + 34 + hl, end
    return None


def parse_frame(linktype: int, frame: bytes, ts_ns: int, orig_len: int) -> Packet | Fragment | None:
    """Parse one captured frame; see the module docstring for the outcomes."""
    if linktype == LINKTYPE_ETHERNET:
        common = common_tcp4(frame, 0, len(frame))
        if common is not None:
            seq, ack, flags, win, payload, end = common
            sport, dport = _PORTS.unpack_from(frame, 34)
            return Packet(
                ts_ns,
                4,
                PROTO_TCP,
                frame[26:30],
                frame[30:34],
                sport,
                dport,
                frame[payload:end],
                flags,
                seq,
                ack,
                win,
                (),
                orig_len,
                0,
                0,
                end - 14,  # ip_len: the common frame's IP total length
            )
    return parse_general(linktype, frame, ts_ns, orig_len)


def parse_general(
    linktype: int, frame: bytes, ts_ns: int, orig_len: int
) -> Packet | Fragment | None:
    """`parse_frame` without the fast path's guard: every frame the long way (the shared
    parser; tests compare the two)."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            raise ParseError("truncated_link")
        return _ethertype(frame, 14, frame[12] << 8 | frame[13], ts_ns, orig_len, linktype)
    if linktype in _RAW_LINKTYPES:
        return _ip_any(frame, 0, (), ts_ns, orig_len, linktype)
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            raise ParseError("truncated_link")
        return _ethertype(frame, 16, frame[14] << 8 | frame[15], ts_ns, orig_len, linktype)
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            raise ParseError("truncated_link")
        return _ethertype(frame, 20, frame[0] << 8 | frame[1], ts_ns, orig_len, linktype)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            raise ParseError("truncated_link")
        if linktype == LINKTYPE_LOOP:
            (family,) = _U32BE.unpack_from(frame)
        else:
            # Host byte order of the capturing machine: families are small numbers.
            (family,) = _U32LE.unpack_from(frame)
            if family > 0xFFFF:
                (family,) = _U32BE.unpack_from(frame)
        if family == _AF_INET:
            return _ipv4(frame, 4, (), ts_ns, orig_len, linktype)
        if family in _AF_INET6:
            return _ipv6(frame, 4, (), ts_ns, orig_len, linktype)
        return None
    if linktype == LINKTYPE_IPV4:
        return _ipv4(frame, 0, (), ts_ns, orig_len, linktype)
    if linktype == LINKTYPE_IPV6:
        return _ipv6(frame, 0, (), ts_ns, orig_len, linktype)
    raise ParseError("unknown_linktype")


def parse_ip(
    ip: bytes, ts_ns: int, vlan: tuple[int, ...] = (), wire_len: int = 0
) -> Packet | Fragment | None:
    """Parse a bare IPv4/IPv6 packet (raw IP link type), e.g. a reassembled datagram."""
    return _ip_any(ip, 0, vlan, ts_ns, wire_len or len(ip), LINKTYPE_RAW)


def _ethertype(
    frame: bytes, off: int, et: int, ts_ns: int, orig_len: int, linktype: int
) -> Packet | Fragment | None:
    vlan: tuple[int, ...] = ()
    while et in _VLAN_TPIDS:
        if len(vlan) == _MAX_VLANS:
            raise ParseError("vlan_depth")
        if off + 4 > len(frame):
            raise ParseError("truncated_link")
        vlan += ((frame[off] << 8 | frame[off + 1]) & 0x0FFF,)
        et = frame[off + 2] << 8 | frame[off + 3]
        off += 4
    if et == ETH_P_IP:
        return _ipv4(frame, off, vlan, ts_ns, orig_len, linktype)
    if et == ETH_P_IPV6:
        return _ipv6(frame, off, vlan, ts_ns, orig_len, linktype)
    return None


def _ip_any(
    frame: bytes, off: int, vlan: tuple[int, ...], ts_ns: int, orig_len: int, linktype: int
) -> Packet | Fragment | None:
    if len(frame) <= off:
        raise ParseError("truncated_ipv4")
    version = frame[off] >> 4
    if version == 4:
        return _ipv4(frame, off, vlan, ts_ns, orig_len, linktype)
    if version == 6:
        return _ipv6(frame, off, vlan, ts_ns, orig_len, linktype)
    raise ParseError("bad_ip_header")


def _ipv4(
    frame: bytes, off: int, vlan: tuple[int, ...], ts_ns: int, orig_len: int, linktype: int
) -> Packet | Fragment:
    avail = len(frame) - off
    if avail < 20:
        raise ParseError("truncated_ipv4")
    vihl, tlen, ident, frag, proto, src, dst = _IP4.unpack_from(frame, off)
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or ihl < 20:
        raise ParseError("bad_ip_header")
    if tlen == 0:
        tlen = avail  # segmentation offload: the kernel leaves the length to the NIC
    if tlen < ihl:
        raise ParseError("bad_ip_header")
    if avail < ihl:
        raise ParseError("truncated_ipv4")
    if frag & 0x3FFF:
        if tlen > avail:  # a cut fragment cannot be reassembled faithfully
            raise ParseError("truncated_ipv4")
        end = off + tlen
        return Fragment(
            ts_ns,
            4,
            proto,
            src,
            dst,
            ident,
            (frag & 0x1FFF) << 3,
            bool(frag & 0x2000),
            frame[off : off + ihl],
            frame[off + ihl : end],
            vlan,
            orig_len,
            linktype,
            frame[:off],
            9,
        )
    if tlen > avail:  # cut by the snaplen: keep what was captured, report the rest
        return _l4(
            frame, off + ihl, len(frame), tlen - avail, proto, 4, src, dst, vlan, ts_ns, orig_len,
            tlen,
        )  # fmt: skip
    return _l4(frame, off + ihl, off + tlen, 0, proto, 4, src, dst, vlan, ts_ns, orig_len, tlen)


def _ipv6(
    frame: bytes, off: int, vlan: tuple[int, ...], ts_ns: int, orig_len: int, linktype: int
) -> Packet | Fragment:
    avail = len(frame) - off
    if avail < 40:
        raise ParseError("truncated_ipv6")
    vtc, plen, nh, src, dst = _IP6.unpack_from(frame, off)
    if vtc >> 4 != 6:
        raise ParseError("bad_ip_header")
    if plen == 0 and nh == 0:
        plen = avail - 40  # jumbogram or segmentation offload
    end = off + 40 + plen  # where the packet ends on the wire
    missing = 0
    if end > len(frame):  # cut by the snaplen
        missing = end - len(frame)
        end = len(frame)
    pos = off + 40
    nh_pos = off + 6  # where the next-header value we follow was read
    while True:
        if nh in _IP6_EXT or nh == _IP6_AH:
            if pos + 8 > end:
                raise ParseError("truncated_ipv6" if missing else "bad_ipv6_ext")
            hl = (frame[pos + 1] + 1) << 3 if nh != _IP6_AH else (frame[pos + 1] + 2) << 2
            if pos + hl > end:
                raise ParseError("truncated_ipv6" if missing else "bad_ipv6_ext")
            nh_pos = pos
            nh = frame[pos]
            pos += hl
        elif nh == _IP6_FRAG:
            if pos + 8 > end:
                raise ParseError("truncated_ipv6" if missing else "bad_ipv6_ext")
            fnh, offmf, ident = _FRAG6.unpack_from(frame, pos)
            if offmf & 0xFFF9 == 0:  # atomic fragment (RFC 6946): a whole datagram
                nh_pos = pos
                nh = fnh
                pos += 8
                continue
            if missing:
                raise ParseError("truncated_ipv6")
            return Fragment(
                ts_ns,
                6,
                fnh,
                src,
                dst,
                ident,
                offmf & 0xFFF8,
                bool(offmf & 1),
                frame[off:pos],
                frame[pos + 8 : end],
                vlan,
                orig_len,
                linktype,
                frame[:off],
                nh_pos - off,
            )
        else:
            break
    return _l4(frame, pos, end, missing, nh, 6, src, dst, vlan, ts_ns, orig_len, 40 + plen)


def _l4(
    frame: bytes,
    start: int,
    end: int,
    missing: int,
    proto: int,
    version: int,
    src: bytes,
    dst: bytes,
    vlan: tuple[int, ...],
    ts_ns: int,
    orig_len: int,
    ip_len: int,
) -> Packet:
    """L4 header at frame[start:]; frame[start:end] is the captured rest of the IP packet,
    `missing` the number of its bytes the capture lacks, `ip_len` the IP total length."""
    if proto == PROTO_TCP:
        if end - start < 20:
            raise ParseError("truncated_tcp")
        sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(frame, start)
        hl = (doff >> 4) << 2
        if hl < 20:
            raise ParseError("bad_tcp_header")
        if start + hl > end:
            raise ParseError("bad_tcp_header" if start + hl > end + missing else "truncated_tcp")
        return Packet(
            ts_ns,
            version,
            proto,
            src,
            dst,
            sport,
            dport,
            frame[start + hl : end],
            flags,
            seq,
            ack,
            win,
            vlan,
            orig_len,
            missing,
            0,
            ip_len,
        )
    if proto == PROTO_UDP:
        if end - start < 8:
            raise ParseError("truncated_udp")
        sport, dport, ulen = _UDP.unpack_from(frame, start)
        if 8 <= ulen <= end + missing - start:  # the UDP length wins when consistent
            real_end = start + ulen
            if real_end <= end:
                end, missing = real_end, 0
            else:
                missing = real_end - end
        return Packet(
            ts_ns,
            version,
            proto,
            src,
            dst,
            sport,
            dport,
            frame[start + 8 : end],
            0,
            0,
            0,
            0,
            vlan,
            orig_len,
            missing,
            0,
            ip_len,
        )
    sport = dport = 0
    if proto in (PROTO_ICMP, PROTO_ICMP6):
        if end - start >= 4:  # type, code, checksum: the ports are Zeek's equivalents
            sport, dport, _ = port_equivalents(proto, frame[start], frame[start + 1])
    elif proto == PROTO_SCTP and end - start >= 4:
        sport, dport = _U16.unpack_from(frame, start)[0], _U16.unpack_from(frame, start + 2)[0]
    return Packet(
        ts_ns, version, proto, src, dst, sport, dport, frame[start:end], 0, 0, 0, 0, vlan,
        orig_len, missing, 0, ip_len,
    )  # fmt: skip
