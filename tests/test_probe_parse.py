"""probe.parse: every link type and header variant on synthetic frames built with dpkt,
and every packet of the public captures checked field by field against dpkt's decoding."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import pcapgen as g
from wirestream.probe.capture import open_capture
from wirestream.probe.errors import ParseError
from wirestream.probe.packet import ACK, PSH, SYN, Packet
from wirestream.probe.parse import Fragment, common_tcp4, parse_frame, parse_general, parse_ip

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
REAL = sorted(FIXTURES.glob("*.pcap*"))

V4A, V4B = "192.0.2.10", "198.51.100.20"
V6A, V6B = "2001:db8::10", "2001:db8:1::20"


def parse(linktype: int, frame: bytes, ts: int = 123, orig: int | None = None):
    return parse_frame(linktype, frame, ts, len(frame) if orig is None else orig)


def _ip(version: int, l4, **kw) -> bytes:
    if version == 4:
        return g.ipv4(l4, V4A, V4B, **kw)
    return g.ipv6(l4, V6A, V6B, **kw)


LINKS = {
    "ethernet": (1, g.ether),
    "vlan": (1, lambda ip: g.ether(ip, vlans=[42])),
    "qinq": (1, lambda ip: g.ether(ip, vlans=[100, 200])),
    "sll": (113, g.sll),
    "sll2": (276, g.sll2),
    "null_le": (0, g.null),
    "null_be": (0, lambda ip: g.null(ip, big_endian=True)),
    "loop": (108, g.loop),
    "raw101": (101, lambda ip: ip),
    "raw12": (12, lambda ip: ip),
    "raw14": (14, lambda ip: ip),
}


@pytest.mark.parametrize("link", sorted(LINKS))
@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("l4", ["tcp", "udp"])
def test_link_types_and_l4(link, version, l4):
    linktype, wrap = LINKS[link]
    payload = b"hello wirestream"
    if l4 == "tcp":
        seg = g.tcp(40000, 443, payload, flags=PSH | ACK, seq=0xDEADBEEF, ack=7, win=1234)
    else:
        seg = g.udp(40000, 53, payload)
    frame = wrap(_ip(version, seg))
    pkt = parse(linktype, frame, ts=99, orig=len(frame) + 4)
    assert isinstance(pkt, Packet)
    src, dst = (V4A, V4B) if version == 4 else (V6A, V6B)
    assert (pkt.ip_version, pkt.src, pkt.dst) == (version, g.addr(src), g.addr(dst))
    assert (pkt.sport, pkt.dport, pkt.payload) == (40000, 443 if l4 == "tcp" else 53, payload)
    assert (pkt.ts_ns, pkt.wire_len, pkt.truncated) == (99, len(frame) + 4, 0)
    if l4 == "tcp":
        assert (pkt.proto, pkt.tcp_flags, pkt.seq, pkt.ack, pkt.window) == (
            6,
            PSH | ACK,
            0xDEADBEEF,
            7,
            1234,
        )
    else:
        assert (pkt.proto, pkt.tcp_flags, pkt.seq) == (17, 0, 0)
    assert pkt.vlan == {"vlan": (42,), "qinq": (100, 200)}.get(link, ())


@pytest.mark.parametrize("tpids", [(0x8100,), (0x88A8, 0x8100), (0x9100, 0x8100)])
def test_vlan_tpids(tpids):
    vlans = list(range(5, 5 + len(tpids)))
    pkt = parse(1, g.ether(_ip(4, g.tcp()), vlans=vlans, tpids=tpids))
    assert pkt.vlan == tuple(vlans)


def test_vlan_zero_kept_in_packet():
    assert parse(1, g.ether(_ip(4, g.tcp()), vlans=[0])).vlan == (0,)


def test_three_vlan_tags_rejected():
    frame = g.ether(_ip(4, g.tcp()), vlans=[1, 2, 3], tpids=[0x88A8, 0x8100, 0x8100])
    with pytest.raises(ParseError, match="vlan_depth"):
        parse(1, frame)


def test_ethernet_padding_and_fcs_trimmed():
    ip = _ip(4, g.tcp(payload=b"a"))
    frame = g.ether(ip, pad_to=60) + b"\xde\xad\xbe\xef"  # padding + FCS
    assert len(frame) == 64
    assert parse(1, frame).payload == b"a"
    ip6 = _ip(6, g.udp(payload=b"b"))
    assert parse(1, g.ether(ip6) + b"FCS!").payload == b"b"


def test_ip_and_tcp_options():
    opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07\x04\x02\x00\x00"  # MSS, NOP, WS, SACK-perm
    ip = g.ipv4(g.tcp(payload=b"data", flags=SYN, opts=opts), V4A, V4B, opts=b"\x01" * 8)
    pkt = parse(1, g.ether(ip))
    assert (pkt.payload, pkt.tcp_flags) == (b"data", SYN)


IP6_EXT_CASES = {
    "hop_by_hop": [(0, b"")],
    "routing": [(43, b"\x00\x00" + b"\x00" * 4 + g.addr(V6B))],
    "dest_opts": [(60, b"\x01\x0c" + b"\x00" * 12)],
    "ah": [(51, b"\x00\x00" + b"\x00\x00\x10\x00" + b"\x00" * 4 + b"\x11" * 12)],
    "atomic_fragment": [(44, b"\x00\x00\x00\x00\x12\x34\x56")],
    "chain": [(0, b""), (60, b""), (43, b"x" * 14), (51, b"y" * 16), (60, b"z" * 30)],
}


@pytest.mark.parametrize("case", sorted(IP6_EXT_CASES))
def test_ipv6_extension_headers(case):
    ip = g.ipv6(g.tcp(1, 2, b"after ext"), V6A, V6B, ext=IP6_EXT_CASES[case])
    pkt = parse(1, g.ether(ip))
    assert isinstance(pkt, Packet)
    assert (pkt.proto, pkt.sport, pkt.dport, pkt.payload) == (6, 1, 2, b"after ext")


@pytest.mark.parametrize("nh", [50, 59])
def test_ipv6_stops_at_esp_and_no_next_header(nh):
    body = b"\x00\x00\x01\x00opaque esp"
    ip = g.ipv6(body, V6A, V6B, proto=nh, ext=[(0, b"")])
    pkt = parse(101, ip)
    assert (pkt.proto, pkt.sport, pkt.dport, pkt.payload) == (nh, 0, 0, body)


def test_other_protocols_have_zero_ports():
    gre = b"\x00\x00\x08\x00inner"
    pkt = parse(1, g.ether(g.ipv4(gre, V4A, V4B, proto=47)))
    assert (pkt.proto, pkt.sport, pkt.dport, pkt.payload) == (47, 0, 0, gre)
    assert pkt.ip_len == 20 + len(gre)


@pytest.mark.parametrize(
    "icmp_type,code,ports",
    [(8, 0, (8, 0)), (0, 0, (0, 8)), (13, 0, (13, 14)), (3, 1, (3, 1)), (11, 0, (11, 0))],
)
def test_icmp_ports_are_zeeks_type_and_counterpart_or_code(icmp_type, code, ports):
    icmp = bytes(dpkt.icmp.ICMP(type=icmp_type, code=code, data=b"\0\0\0\0ping"))
    pkt = parse(1, g.ether(g.ipv4(icmp, V4A, V4B, proto=1)))
    assert (pkt.proto, (pkt.sport, pkt.dport), pkt.payload) == (1, ports, icmp)


@pytest.mark.parametrize("icmp_type,ports", [(128, (128, 129)), (136, (136, 135)), (1, (1, 4))])
def test_icmp6_ports(icmp_type, ports):
    pkt = parse(101, g.ipv6(bytes((icmp_type, 4, 0, 0)) + b"data", V6A, V6B, proto=58))
    assert (pkt.proto, (pkt.sport, pkt.dport), pkt.ip_len) == (58, ports, 48)


@pytest.mark.parametrize(
    "linktype,frame",
    [
        (1, g.arp()),
        (1, g.ether(b"\xaa\xaa\x03" + b"\0" * 40, ethertype=46)),  # 802.3 length field
        (1, g.ether(b"\0" * 40, ethertype=0x88CC)),  # LLDP
        (113, g.sll(b"\0" * 28, protocol=0x0806)),
        (276, g.sll2(b"\0" * 28, protocol=0x0806)),
        (0, g.null(b"\x45" + b"\0" * 39, family=7)),
        (108, g.loop(b"\x45" + b"\0" * 39, family=99)),
    ],
)
def test_non_ip_is_none(linktype, frame):
    assert parse(linktype, frame) is None


def _mutate(data: bytes, off: int, new: bytes) -> bytes:
    return data[:off] + new + data[off + len(new) :]


IP4 = g.ipv4(g.tcp(payload=b"payload"), V4A, V4B)
IP6 = g.ipv6(g.tcp(payload=b"payload"), V6A, V6B)
UDP4 = g.ipv4(g.udp(payload=b"payload"), V4A, V4B)

MALFORMED = {
    "short_ethernet": (1, b"\x00" * 13, "truncated_link"),
    "short_sll": (113, b"\x00" * 15, "truncated_link"),
    "short_sll2": (276, b"\x00" * 19, "truncated_link"),
    "short_null": (0, b"\x02\x00", "truncated_link"),
    "short_vlan": (1, g.MAC_A * 2 + b"\x81\x00\x00", "truncated_link"),
    "unknown_linktype": (147, IP4, "unknown_linktype"),
    "empty_raw": (101, b"", "truncated_ipv4"),
    "short_ipv4": (1, g.ether(IP4[:19], pad_to=0), "truncated_ipv4"),
    "ipv4_version_mismatch": (1, g.ether(IP6, ethertype=0x0800), "bad_ip_header"),
    "raw_version_5": (101, b"\x55" + IP4[1:], "bad_ip_header"),
    "ihl_below_5": (101, _mutate(IP4, 0, b"\x44"), "bad_ip_header"),
    "total_below_ihl": (101, _mutate(IP4, 2, b"\x00\x10"), "bad_ip_header"),
    "ihl_beyond_capture": (101, _mutate(IP4, 0, b"\x4f\x00\x00\x64")[:40], "truncated_ipv4"),
    "short_ipv6": (101, IP6[:39], "truncated_ipv6"),
    "ipv6_ext_beyond_end": (101, g.ipv6(b"\x06\x05" + b"\0" * 6, proto=0), "bad_ipv6_ext"),
    "ipv6_version_mismatch": (1, g.ether(IP4, ethertype=0x86DD), "bad_ip_header"),
    "tcp_too_short": (101, g.ipv4(b"\0" * 12, proto=6), "truncated_tcp"),
    "tcp_offset_below_5": (101, _mutate(IP4, 32, b"\x40"), "bad_tcp_header"),
    "tcp_options_beyond_ip": (101, _mutate(IP4, 32, b"\xf0"), "bad_tcp_header"),
    "udp_too_short": (101, g.ipv4(b"\0" * 7, proto=17), "truncated_udp"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed(case):
    linktype, frame, kind = MALFORMED[case]
    with pytest.raises(ParseError) as ei:
        parse(linktype, frame)
    assert ei.value.kind == kind == str(ei.value)


def test_snapped_packet_keeps_captured_payload():
    ip = g.ipv4(g.tcp(payload=b"z" * 1000), V4A, V4B)
    frame = g.ether(ip)[:200]
    pkt = parse(1, frame, orig=14 + len(ip))
    assert pkt.payload == b"z" * (200 - 54)
    assert len(pkt.payload) + pkt.truncated == 1000
    ip6 = g.ipv6(g.udp(payload=b"u" * 500), V6A, V6B)
    pkt = parse(101, ip6[:100])
    assert pkt.payload == b"u" * 52 and pkt.truncated == 500 - 52


def test_snapped_tcp_header_is_an_error():
    with pytest.raises(ParseError, match="truncated_tcp"):
        parse(101, IP4[:30])


def test_udp_length_field_wins_over_ip_length():
    ip = bytearray(g.ipv4(g.udp(payload=b"abcdef"), V4A, V4B))
    ip[24:26] = struct.pack("!H", 8 + 3)  # UDP says 3 bytes of payload, IP says 6
    assert parse(101, bytes(ip)).payload == b"abc"


def test_tso_zero_total_length_uses_frame():
    ip = bytearray(g.ipv4(g.tcp(payload=b"q" * 3000), V4A, V4B))
    ip[2:4] = b"\0\0"
    pkt = parse(1, g.ether(bytes(ip)))
    assert pkt.payload == b"q" * 3000


def test_ipv4_fragments():
    big = g.ipv4(g.udp(payload=bytes(range(256)) * 4), V4A, V4B, ident=777)
    frags = g.fragment_ipv4(big, 256)
    parsed = [parse(1, g.ether(f, vlans=[9])) for f in frags]
    assert all(isinstance(p, Fragment) for p in parsed)
    assert [(p.offset, p.more) for p in parsed] == [(0, True), (256, True), (512, True),
                                                    (768, True), (1024, False)]  # fmt: skip
    first = parsed[0]
    assert (first.ident, first.proto, first.ip_version, first.vlan) == (777, 17, 4, (9,))
    assert first.header == frags[0][:20] and first.l2 == g.ether(frags[0], vlans=[9])[:18]
    assert b"".join(p.data for p in parsed) == big[20:]


def test_ipv6_fragment():
    big = g.ipv6(g.tcp(payload=b"F" * 2000), V6A, V6B)
    frags = g.fragment_ipv6(big, 1000, ident=0xABCDEF01)
    parsed = [parse(113, g.sll(f)) for f in frags]
    assert [(p.offset, p.more, p.ident, p.proto) for p in parsed] == [
        (0, True, 0xABCDEF01, 6),
        (1000, True, 0xABCDEF01, 6),
        (2000, False, 0xABCDEF01, 6),
    ]
    assert parsed[0].header == frags[0][:40] and parsed[0].nh_offset == 6
    assert b"".join(p.data for p in parsed) == big[40:]


def test_parse_ip():
    pkt = parse_ip(IP4, 5, vlan=(3,), wire_len=1000)
    assert (pkt.ts_ns, pkt.vlan, pkt.wire_len, pkt.payload) == (5, (3,), 1000, b"payload")
    assert parse_ip(IP6, 5).payload == b"payload"


@settings(max_examples=300, deadline=None)
@given(
    linktype=st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276]),
    data=st.binary(max_size=120),
)
def test_random_bytes_never_crash(linktype, data):
    try:
        parse(linktype, data)
    except ParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from([g.ether(IP4, vlans=[7]), g.ether(IP6), g.sll(UDP4), g.ether(UDP4)]),
    pos=st.integers(0, 100),
    value=st.binary(min_size=1, max_size=3),
    cut=st.integers(0, 120),
)
def test_mutated_frames_never_crash(base, pos, value, cut):
    frame = _mutate(base, pos % len(base), value)[: max(cut, 1)]
    linktype = 113 if base[:2] == b"\x00\x00" else 1
    try:
        parse(linktype, frame)
    except ParseError:
        pass


# --------------------------------------------------------------------------- real captures


def _dpkt_ip(linktype: int, buf: bytes):
    if linktype == 1:
        e = dpkt.ethernet.Ethernet(buf)
        vlan = tuple(t.id for t in getattr(e, "vlan_tags", []) or [])
        return e.data, vlan
    if linktype == 0:
        return dpkt.loopback.Loopback(buf).data, ()
    if linktype in (101, 228, 229):
        return (dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)), ()
    raise AssertionError(f"no dpkt decoder for linktype {linktype}")


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_captures_match_dpkt(path):
    """Every record parses (no exception); IP packets agree with dpkt field by field."""
    n = compared = 0
    for linktype, ts, orig_len, frame in open_capture(path):
        n += 1
        res = parse_frame(linktype, frame, ts, orig_len)
        ip, vlan = _dpkt_ip(linktype, frame)
        if res is None:
            assert not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6)
            continue
        assert isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6)
        assert (res.src, res.dst, res.vlan) == (ip.src, ip.dst, vlan)
        if isinstance(res, Fragment):
            assert (res.offset, res.more) == (ip.offset * 8, bool(ip.mf))  # dpkt: 8-byte units
            continue
        l4 = ip.data
        assert res.proto == ip.p  # dpkt IP6.p: the header after the extension headers
        if res.truncated:
            continue  # dpkt gives up on cut frames; checked against tshark below
        if res.proto in (6, 17):
            assert (res.sport, res.dport, res.payload) == (l4.sport, l4.dport, bytes(l4.data))
        if res.proto == 6:
            assert (res.seq, res.ack, res.tcp_flags, res.window) == (
                l4.seq,
                l4.ack,
                l4.flags & 0xFF,  # dpkt includes the NS bit
                l4.win,
            )
        compared += 1
    with open(path, "rb") as f:
        assert n == len(list(dpkt.pcap.UniversalReader(f)))
    assert compared > 0


def test_snapped_frames_match_tshark_gaps():
    """zeek tcp/reassembly.pcap has frames cut short; tshark reports the missing bytes as
    gaps of the same sizes."""
    path = FIXTURES / "zeek__tcp__reassembly.pcap"
    cut = [p.truncated for *_, p in _parsed(path) if isinstance(p, Packet) and p.truncated]
    assert cut
    flows = FIXTURES / "oracles" / path.name / "flows.jsonl"
    gaps = set()
    for line in flows.read_text().splitlines():
        gaps.update(n for _, n in json.loads(line)["tshark_follow"]["gaps"])
    assert set(cut) <= gaps


def _parsed(path):
    for linktype, ts, orig_len, frame in open_capture(path):
        yield linktype, ts, orig_len, parse_frame(linktype, frame, ts, orig_len)


# ------------------------------------------------ the fast path is a guard: same Packet


def _outcome(fn, linktype: int, frame: bytes):
    try:
        return fn(linktype, frame, 7, len(frame) + 3)
    except ParseError as exc:
        return ("error", exc.kind)


def _common_frames() -> list[bytes]:
    """Frames around the guard's edges: tiny and empty payloads (the old parse.py guard
    sent those under 20 bytes the long way), TCP and IP options, fragments, padding, cut
    frames, a zero total length (segmentation offload), VLANs, IPv6."""
    frames = []
    for payload in (b"", b"x", b"y" * 19, b"z" * 20, b"w" * 1400):
        seg = g.tcp(1234, 80, payload, flags=ACK | PSH)
        ip = g.ipv4(seg)
        frames += [g.ether(ip), g.ether(ip) + b"\0" * 30, g.ether(ip)[:-1], g.ether(ip, vlans=[5])]
        frames.append(g.ether(g.ipv6(seg)))
        frames += [g.ether(frag) for frag in g.fragment_ipv4(ip, 24)]
    seg = g.tcp(1234, 80, b"data", flags=ACK, opts=b"\x01\x01\x08\x0a" + b"\0" * 8)
    frames.append(g.ether(g.ipv4(seg)))
    frames.append(g.ether(g.ipv4(seg, opts=b"\x01" * 4)))
    ip = bytearray(g.ipv4(g.tcp(1, 2, b"abc")))
    ip[2:4] = b"\0\0"  # total length 0
    frames.append(g.ether(bytes(ip)))
    return frames


@pytest.mark.parametrize("index", range(len(_common_frames())))
def test_fast_path_gives_what_the_general_parser_gives(index):
    frame = _common_frames()[index]
    assert _outcome(parse_frame, 1, frame) == _outcome(parse_general, 1, frame)


def test_the_guard_takes_the_common_frame_and_nothing_else():
    small = g.ether(g.ipv4(g.tcp(1, 2, b"x")))  # 1 byte of payload: the common case
    assert common_tcp4(small, 0, len(small)) is not None
    assert common_tcp4(b"pad" + small, 3, 3 + len(small)) is not None  # an offset in a block
    with_vlan = g.ether(g.ipv4(g.tcp(1, 2, b"x")), vlans=[5])
    assert common_tcp4(with_vlan, 0, len(with_vlan)) is None
    big = g.ether(g.ipv4(g.tcp(1, 2, b"x" * 100)))
    assert common_tcp4(big, 0, len(big)) is not None
    assert common_tcp4(big, 0, len(big) - 1) is None  # cut by the snaplen: the long way
    opts = g.ether(g.ipv4(g.tcp(1, 2, b"x" * 100), opts=b"\x01" * 4))
    assert common_tcp4(opts, 0, len(opts)) is None  # IP options: the long way


@settings(max_examples=400, deadline=None)
@given(
    pos=st.integers(0, 80),
    value=st.binary(min_size=1, max_size=3),
    cut=st.integers(0, 120),
    payload=st.binary(max_size=40),
)
def test_mutated_common_frames_parse_the_same_both_ways(pos, value, cut, payload):
    base = g.ether(g.ipv4(g.tcp(1234, 80, payload, flags=ACK)))
    frame = _mutate(base, pos % len(base), value)[: max(cut, 1)]
    assert _outcome(parse_frame, 1, frame) == _outcome(parse_general, 1, frame)


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_fixtures_parse_the_same_both_ways(path):
    for linktype, _ts, _orig_len, frame in open_capture(path):
        assert _outcome(parse_frame, linktype, frame) == _outcome(parse_general, linktype, frame)
