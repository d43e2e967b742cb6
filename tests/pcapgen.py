"""Synthetic captures for tests (`from tests import pcapgen`): pcap/pcapng writers, frames.

The writers are plain struct code (independent of probe.capture, so the two check each other,
and dpkt's readers check them in tests); L3/L4 packets are built with dpkt, which computes
lengths and checksums. Every builder returns bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import dpkt

# --------------------------------------------------------------------------- files

PcapRecord = tuple[int, bytes] | tuple[int, bytes, int]  # (ts_ns, frame[, orig_len])


def pcap_bytes(
    records: Iterable[PcapRecord],
    linktype: int = 1,
    *,
    big_endian: bool = False,
    nanosecond: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """A classic pcap file; µs files truncate ts_ns to microseconds."""
    bo = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = [struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for rec in records:
        ts, frame = rec[0], rec[1]
        orig_len = rec[2] if len(rec) > 2 else len(frame)  # type: ignore[misc]
        sec, ns = divmod(ts, 1_000_000_000)
        frac = ns if nanosecond else ns // 1000
        out.append(struct.pack(bo + "IIII", sec, frac, len(frame), orig_len))
        out.append(frame)
    return b"".join(out)


def write_pcap(path: str | Path, records: Iterable[PcapRecord], linktype: int = 1, **kw) -> Path:
    path = Path(path)
    path.write_bytes(pcap_bytes(records, linktype, **kw))
    return path


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def pcapng_block(btype: int, body: bytes, bo: str = "<") -> bytes:
    body = _pad4(body)
    n = len(body) + 12
    return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)


def pcapng_option(code: int, value: bytes, bo: str = "<") -> bytes:
    return struct.pack(bo + "HH", code, len(value)) + _pad4(value)


def pcapng_bytes(
    packets: Iterable[tuple[int, int, bytes] | tuple[int, int, bytes, int]],
    interfaces: Sequence[tuple[int, int | None]] = ((1, None),),
    *,
    big_endian: bool = False,
    tsoffset: int = 0,
    unknown_blocks: bool = True,
) -> bytes:
    """One pcapng section: SHB, IDBs, then EPBs for (iface, ts_ns, frame[, orig_len]).

    interfaces: (linktype, if_tsresol byte or None for the default 10^-6). An unknown
    (custom) block and a name resolution block are inserted to check they are skipped.
    """
    bo = ">" if big_endian else "<"
    shb_body = struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1) + pcapng_option(0, b"", bo)
    out = [pcapng_block(0x0A0D0D0A, shb_body, bo)]
    resolutions = []
    for linktype, tsresol in interfaces:
        opts = b""
        if tsresol is not None:
            opts += pcapng_option(9, bytes([tsresol]), bo)
        if tsoffset:
            opts += pcapng_option(14, struct.pack(bo + "q", tsoffset), bo)
        opts += pcapng_option(0, b"", bo)
        out.append(pcapng_block(1, struct.pack(bo + "HHI", linktype, 0, 262144) + opts, bo))
        resolutions.append(tsresol)
    if unknown_blocks:
        out.append(pcapng_block(0x00000BAD, b"custom data here", bo))
        out.append(pcapng_block(4, struct.pack(bo + "HH", 0, 0), bo))  # empty NRB
    for pkt in packets:
        iface, ts, frame = pkt[0], pkt[1], pkt[2]
        orig_len = pkt[3] if len(pkt) > 3 else len(frame)  # type: ignore[misc]
        ticks = ns_to_ticks(ts - tsoffset * 1_000_000_000, resolutions[iface])
        body = struct.pack(
            bo + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), orig_len
        )
        out.append(pcapng_block(6, body + _pad4(frame), bo))
    return b"".join(out)


def ns_to_ticks(ts_ns: int, tsresol: int | None) -> int:
    if tsresol is None:
        tsresol = 6
    if tsresol & 0x80:
        return (ts_ns << (tsresol & 0x7F)) // 1_000_000_000
    return ts_ns * 10**tsresol // 1_000_000_000


def write_pcapng(path: str | Path, packets, interfaces=((1, None),), **kw) -> Path:
    path = Path(path)
    path.write_bytes(pcapng_bytes(packets, interfaces, **kw))
    return path


# --------------------------------------------------------------------------- L3/L4


def addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def tcp(
    sport: int = 1234,
    dport: int = 80,
    payload: bytes = b"",
    *,
    flags: int = dpkt.tcp.TH_ACK,
    seq: int = 1000,
    ack: int = 2000,
    win: int = 65535,
    opts: bytes = b"",
) -> dpkt.tcp.TCP:
    t = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win)
    t.opts = opts
    t.off = (20 + len(opts)) // 4
    t.data = payload
    return t


def udp(sport: int = 5353, dport: int = 53, payload: bytes = b"") -> dpkt.udp.UDP:
    return dpkt.udp.UDP(sport=sport, dport=dport, data=payload, ulen=8 + len(payload))


def ipv4(
    l4: dpkt.Packet | bytes,
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    *,
    proto: int | None = None,
    ident: int = 1,
    opts: bytes = b"",
) -> bytes:
    """IPv4 packet around a dpkt TCP/UDP object (or raw bytes with proto=...)."""
    if proto is None:
        proto = dpkt.ip.IP_PROTO_TCP if isinstance(l4, dpkt.tcp.TCP) else dpkt.ip.IP_PROTO_UDP
    ip = dpkt.ip.IP(src=addr(src), dst=addr(dst), p=proto, id=ident, ttl=64, data=l4)
    ip.opts = opts
    ip.hl = (20 + len(opts)) // 4
    ip.len = ip.hl * 4 + len(bytes(l4))
    return bytes(ip)


def ipv6(
    l4: dpkt.Packet | bytes,
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
    *,
    proto: int | None = None,
    ext: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """IPv6 packet; ext = [(header type, header bytes without the next-header byte)].

    Types 0/43/60 are padded to 8-octet units, 51 (AH) to 4-octet units, 44 is 7 bytes.
    """
    if proto is None:
        proto = dpkt.ip.IP_PROTO_TCP if isinstance(l4, dpkt.tcp.TCP) else dpkt.ip.IP_PROTO_UDP
    l4b = bytes(l4)
    chain = b""
    types = [t for t, _ in ext] + [proto]
    for i, (etype, body) in enumerate(ext):
        chain += ext_header(etype, types[i + 1], body)
    first = types[0]
    hdr = struct.pack(
        "!IHBB16s16s", 0x60000000, len(chain) + len(l4b), first, 64, addr(src), addr(dst)
    )
    return hdr + chain + l4b


def ext_header(etype: int, next_header: int, body: bytes = b"") -> bytes:
    """One IPv6 extension header with its length field filled in."""
    if etype == 44:
        return bytes([next_header]) + body[:7].ljust(7, b"\0")
    if etype == 51:  # AH: length in 4-octet units minus 2
        raw = body + b"\0" * (-(len(body) + 2) % 4)
        total = len(raw) + 2
        return bytes([next_header, total // 4 - 2]) + raw
    raw = body.ljust(6, b"\0")
    raw += b"\0" * (-(len(raw) + 2) % 8)
    return bytes([next_header, (len(raw) + 2) // 8 - 1]) + raw


def fragment_ipv4(ip: bytes, size: int) -> list[bytes]:
    """Split an IPv4 packet into fragments carrying `size` (multiple of 8) payload bytes."""
    assert size % 8 == 0
    hl = (ip[0] & 15) * 4
    tlen = struct.unpack_from("!H", ip, 2)[0]
    payload = ip[hl:tlen]
    out = []
    for off in range(0, len(payload), size):
        part = payload[off : off + size]
        more = off + size < len(payload)
        hdr = bytearray(ip[:hl])
        hdr[2:4] = struct.pack("!H", hl + len(part))
        hdr[6:8] = struct.pack("!H", (off // 8) | (dpkt.ip.IP_MF if more else 0))
        hdr[10:12] = b"\0\0"
        hdr[10:12] = struct.pack("!H", dpkt.in_cksum(bytes(hdr)))
        out.append(bytes(hdr) + part)
    return out


def fragment_ipv6(ip: bytes, size: int, ident: int = 0x1234) -> list[bytes]:
    """Split an IPv6 packet (no extension headers) into fragments of `size` payload bytes."""
    assert size % 8 == 0
    nh = ip[6]
    payload = ip[40:]
    out = []
    for off in range(0, len(payload), size):
        part = payload[off : off + size]
        more = off + size < len(payload)
        fh = struct.pack("!BBHI", nh, 0, off | int(more), ident)
        hdr = bytearray(ip[:40])
        hdr[4:6] = struct.pack("!H", 8 + len(part))
        hdr[6] = 44
        out.append(bytes(hdr) + fh + part)
    return out


# --------------------------------------------------------------------------- link layer

MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"


def ether(ip: bytes, *, vlans: Sequence[int] = (), tpids: Sequence[int] | None = None,
          ethertype: int | None = None, pad_to: int = 60) -> bytes:  # fmt: skip
    """Ethernet frame (padded to 60 bytes like the wire) with optional 802.1Q/QinQ tags."""
    if ethertype is None:
        ethertype = 0x86DD if ip[:1] and ip[0] >> 4 == 6 else 0x0800
    if tpids is None:
        tpids = [0x88A8] * (len(vlans) - 1) + [0x8100] if vlans else []
    frame = MAC_B + MAC_A
    for tpid, vid in zip(tpids, vlans, strict=True):
        frame += struct.pack("!HH", tpid, vid)
    frame += struct.pack("!H", ethertype) + ip
    return frame.ljust(pad_to, b"\0")


def arp() -> bytes:
    return bytes(
        dpkt.ethernet.Ethernet(src=MAC_A, dst=b"\xff" * 6, type=0x0806, data=dpkt.arp.ARP())
    )


def sll(ip: bytes, protocol: int | None = None) -> bytes:
    """Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 113)."""
    if protocol is None:
        protocol = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHH8sH", 0, 1, 6, MAC_A + b"\0\0", protocol) + ip


def sll2(ip: bytes, protocol: int | None = None) -> bytes:
    """Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 276)."""
    if protocol is None:
        protocol = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHIHBB8s", protocol, 0, 3, 1, 0, 6, MAC_A + b"\0\0") + ip


def null(ip: bytes, family: int | None = None, *, big_endian: bool = False) -> bytes:
    """BSD loopback (LINKTYPE_NULL, 0): family in the capturing host's byte order."""
    if family is None:
        family = 30 if ip[0] >> 4 == 6 else 2
    return struct.pack(">I" if big_endian else "<I", family) + ip


def loop(ip: bytes, family: int | None = None) -> bytes:
    """OpenBSD loopback (LINKTYPE_LOOP, 108): family in network byte order."""
    if family is None:
        family = 24 if ip[0] >> 4 == 6 else 2
    return struct.pack(">I", family) + ip
