"""probe.defrag: reassembly in any order, overlap policy, limits, IPv6, real captures."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import pcapgen as g
from wirestream.probe.capture import open_capture
from wirestream.probe.defrag import Defragmenter
from wirestream.probe.packet import Packet
from wirestream.probe.parse import Fragment, parse_frame

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
SEC = 1_000_000_000
BODY = bytes(range(256)) * 12  # 3072 bytes


def _frags(frames, linktype=1, t0=0, step=1000):
    out = []
    for i, fr in enumerate(frames):
        f = parse_frame(linktype, fr, t0 + i * step, len(fr))
        assert isinstance(f, Fragment)
        out.append(f)
    return out


def _feed_all(d, frags):
    done = [r for r in (d.feed(f) for f in frags) if r is not None]
    return done


def _v4(ident=1, payload=BODY, size=512, vlans=()):
    ip = g.ipv4(g.udp(4000, 53, payload), "10.0.0.1", "10.0.0.2", ident=ident)
    return ip, [g.ether(f, vlans=vlans) for f in g.fragment_ipv4(ip, size)]


def _check(res, ip, vlans=()):
    pkt = parse_frame(res.linktype, res.frame, res.ts_ns, len(res.frame))
    assert isinstance(pkt, Packet)
    assert (pkt.sport, pkt.dport, pkt.vlan) == (4000, 53, tuple(vlans))
    assert res.frame[res.ip_offset :] == ip  # header fixed up: identical to the original
    return pkt


def test_in_order():
    ip, frames = _v4()
    d = Defragmenter()
    done = _feed_all(d, _frags(frames))
    assert len(done) == 1 and len(d) == 0
    assert _check(done[0], ip).payload == BODY
    assert done[0].ts_ns == 1000 * (len(frames) - 1) and done[0].fragments == len(frames)
    assert (d.stats.fragments, d.stats.reassembled) == (len(frames), 1)


def test_reversed_and_shuffled_and_vlan():
    ip, frames = _v4(vlans=[0x10, 0x20])
    d = Defragmenter()
    done = _feed_all(d, _frags(frames[::-1]))
    assert len(done) == 1
    assert _check(done[0], ip, (0x10, 0x20)).payload == BODY
    assert done[0].frame[: done[0].ip_offset] == frames[0][:22]


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_any_order_with_duplicates(data):
    ip, frames = _v4(size=512)
    frags = _frags(frames)
    order = data.draw(st.permutations(frags))
    dups = data.draw(st.lists(st.sampled_from(frags[1:]), max_size=4))
    d = Defragmenter()
    done = _feed_all(d, dups + order)
    assert len(done) == 1
    assert done[0].frame[14:] == ip
    assert d.stats.overlap_conflicts == 0
    # a duplicate arriving after completion starts a new datagram instead of overlapping
    assert d.stats.overlaps + len(d) >= 1 if dups else d.stats.overlaps == 0


def test_duplicate_fragments_counted_as_overlap():
    ip, frames = _v4()
    frags = _frags(frames)
    d = Defragmenter()
    assert d.feed(frags[0]) is None
    assert d.feed(frags[0]) is None
    done = _feed_all(d, frags[1:])
    assert done[0].frame[14:] == ip
    assert d.stats.overlaps == 1 and d.stats.overlap_conflicts == 0 and not done[0].anomalies


def _overlapping():
    """Datagram of 48 bytes: [0,24) 'A', [24,48) 'B' + last [16,48) with 'X' (conflict)."""
    body = g.udp(4000, 53, b"A" * 16 + b"B" * 24)  # 8 + 40 = 48 bytes of UDP
    ip = g.ipv4(body, "10.0.0.1", "10.0.0.2", ident=5)
    f1, f2 = g.fragment_ipv4(ip, 24)
    raw = bytes(body)
    # a fragment covering [16, 48) with different bytes in [16, 24)
    hdr = bytearray(ip[:20])
    hdr[2:4] = (20 + 32).to_bytes(2, "big")
    hdr[6:8] = (16 // 8).to_bytes(2, "big")
    evil = bytes(hdr) + b"X" * 8 + raw[24:]
    return raw, [g.ether(f) for f in (f1, evil, f2)]


@pytest.mark.parametrize("policy", ["first", "last"])
def test_overlap_with_different_data(policy):
    raw, frames = _overlapping()
    d = Defragmenter(overlap_policy=policy)
    done = _feed_all(d, _frags(frames))
    assert len(done) == 1
    pkt = parse_frame(1, done[0].frame, 0, 0)
    want = raw if policy == "first" else raw[:16] + b"X" * 8 + raw[24:]
    assert pkt.payload == want[8:]
    assert d.stats.overlap_conflicts == 1 and d.stats.overlaps >= 1
    assert done[0].anomalies == ("fragment_overlap_conflict",)


def test_timeout_in_capture_time():
    _, frames = _v4()
    frags = _frags(frames, step=10 * SEC)  # 6 fragments over 50 s
    d = Defragmenter()  # 30 s
    assert _feed_all(d, frags) == []
    assert d.stats.timeouts >= 1 and d.stats.reassembled == 0
    d = Defragmenter(timeout_ns=60 * SEC)
    assert len(_feed_all(d, frags)) == 1


def test_expire_and_flush():
    _, frames = _v4()
    d = Defragmenter()
    d.feed(_frags(frames)[0])
    assert d.expire(29 * SEC) == 0 and len(d) == 1
    assert d.expire(31 * SEC) == 1 and len(d) == 0
    d.feed(_frags(frames)[0])
    assert d.flush() == 1 and d.stats.flushed == 1


def test_max_datagrams_evicts_oldest():
    d = Defragmenter(max_datagrams=3)
    firsts = [_frags(_v4(ident=i)[1])[0] for i in range(4)]
    for f in firsts:
        assert d.feed(f) is None
    assert len(d) == 3 and d.stats.evictions == 1
    # ident 0 was evicted: its remaining fragments cannot complete it
    _, frames0 = _v4(ident=0)
    assert _feed_all(d, _frags(frames0)[1:]) == []
    # ident 3 still completes
    ip3, frames3 = _v4(ident=3)
    done = _feed_all(d, _frags(frames3)[1:])
    assert len(done) == 1 and done[0].frame[14:] == ip3


def test_max_fragments_per_datagram():
    _, frames = _v4(size=64)  # 48 fragments
    d = Defragmenter(max_fragments=10)
    assert _feed_all(d, _frags(frames)) == []
    assert d.stats.too_many_fragments >= 1
    assert len(_feed_all(Defragmenter(), _frags(frames))) == 1


def test_oversize_datagram_dropped():
    hdr = bytearray(g.ipv4(b"\0" * 8, proto=17, ident=9)[:20])
    hdr[2:4] = (20 + 16).to_bytes(2, "big")
    hdr[6:8] = ((65528 // 8) | 0x0000).to_bytes(2, "big")  # last fragment ending at 65544
    frag = parse_frame(101, bytes(hdr) + b"\0" * 16, 0, 36)
    d = Defragmenter()
    assert d.feed(frag) is None and d.stats.oversize == 1 and len(d) == 0


def test_misaligned_fragment_ignored():
    _, frames = _v4()
    frags = _frags(frames)
    bad = frags[0]
    bad.data = bad.data[:-3]  # not a multiple of 8 but MF set
    d = Defragmenter()
    assert d.feed(bad) is None and d.stats.bad_fragments == 1


def test_ipv6_reassembly_any_order():
    ip = g.ipv6(g.udp(4000, 53, BODY), "2001:db8::1", "2001:db8::2")
    frames = [g.sll(f) for f in g.fragment_ipv6(ip, 1024, ident=77)]
    for order in (frames, frames[::-1]):
        d = Defragmenter()
        done = _feed_all(d, _frags(order, linktype=113))
        assert len(done) == 1
        assert done[0].linktype == 113 and done[0].frame[16:] == ip
        assert parse_frame(113, done[0].frame, 0, 0).payload == BODY


def test_ipv6_with_extension_header_before_fragment():
    inner = bytes(g.udp(4000, 53, BODY))
    unfrag = g.ipv6(b"", "2001:db8::1", "2001:db8::2", proto=44, ext=[(0, b"")])
    hbh = unfrag[40:]
    frames = []
    for off in range(0, len(inner), 1024):
        part = inner[off : off + 1024]
        more = off + 1024 < len(inner)
        fh = bytes([17, 0]) + (off | more).to_bytes(2, "big") + (5).to_bytes(4, "big")
        hdr = bytearray(unfrag[:40])
        hdr[4:6] = (len(hbh) + 8 + len(part)).to_bytes(2, "big")
        frames.append(g.ether(bytes(hdr) + hbh + fh + part))
    frags = _frags(frames)
    assert frags[0].nh_offset == 40  # the hop-by-hop header names the fragment header
    done = _feed_all(Defragmenter(), frags[::-1])
    ip6 = dpkt.ip6.IP6(done[0].frame[14:])
    assert ip6.nxt == 0 and ip6.p == 17 and ip6.plen == len(hbh) + len(inner)
    assert parse_frame(1, done[0].frame, 0, 0).payload == BODY


def test_same_ident_different_vlans_are_separate():
    _, frames_a = _v4(vlans=[1])
    _, frames_b = _v4(vlans=[2])
    d = Defragmenter()
    fa, fb = _frags(frames_a), _frags(frames_b)
    done = _feed_all(d, [x for pair in zip(fa, fb, strict=True) for x in pair])
    assert sorted(parse_frame(1, r.frame, 0, 0).vlan for r in done) == [(1,), (2,)]


def _real_defrag(name, **kw):
    d = Defragmenter(**kw)
    out = []
    for lt, ts, ol, fr in open_capture(FIXTURES / name):
        r = parse_frame(lt, fr, ts, ol)
        if isinstance(r, Fragment):
            done = d.feed(r)
            if done is not None:
                out.append(parse_frame(done.linktype, done.frame, done.ts_ns, len(done.frame)))
    return d, out


@pytest.mark.parametrize("policy", ["first", "last"])
def test_zeek_fragmented_4(policy):
    """4 overlapping fragments of one TCP segment. Wireshark keeps the last copy, so with
    overlap_policy="last" the payload matches tshark's follow-stream oracle."""
    d, pkts = _real_defrag("zeek__ipv4__fragmented-4.pcap", overlap_policy=policy)
    assert d.stats.reassembled == 1 and d.stats.overlap_conflicts == 1 and len(d) == 0
    (pkt,) = pkts
    assert (pkt.proto, pkt.sport, pkt.dport) == (6, 7790, 80)
    oracle = FIXTURES / "oracles" / "zeek__ipv4__fragmented-4.pcap" / "flows.jsonl"
    flows = [json.loads(line) for line in oracle.read_text().splitlines()]
    (flow,) = [f for f in flows if f["src"] == "128.32.46.142" and f["dport"] == 80]
    tshark = flow["tshark_follow"]
    assert len(pkt.payload) == tshark["len"]
    matches = hashlib.sha256(pkt.payload).hexdigest() == tshark["sha256"]
    assert matches == (policy == "last")
    if policy == "first":
        assert pkt.payload.startswith(b"GET /msadc/") and b"cmd.exe" in pkt.payload


def test_dns_over_fragmented_udp():
    """4 DNS responses in 2 fragments each; tshark's DNS oracle lists each message."""
    d, pkts = _real_defrag("zeek__dns-edns-ecs.pcap")
    assert d.stats.reassembled == 4 and len(d) == 0
    oracle = FIXTURES / "oracles" / "zeek__dns-edns-ecs.pcap" / "dns_tshark.jsonl"
    seen = {
        (m["sport"], m["dport"], m["id"], m["qname"], m["response"])
        for m in map(json.loads, oracle.read_text().splitlines())
    }
    for p in pkts:
        dns_id, flags = int.from_bytes(p.payload[:2], "big"), p.payload[2]
        labels, pos = [], 12
        while p.payload[pos]:
            labels.append(p.payload[pos + 1 : pos + 1 + p.payload[pos]].decode())
            pos += 1 + p.payload[pos]
        assert (p.sport, p.dport, dns_id, ".".join(labels), bool(flags & 0x80)) in seen


def test_memory_budget_evicts_oldest():
    d = Defragmenter(max_bytes=70_000)
    base = _frags(_v4()[1])[1]
    high = [dataclasses.replace(base, ident=i, offset=60_000) for i in range(3)]
    for f in high:
        assert d.feed(f) is None
    assert d.stats.evictions == 2 and len(d) == 1
    assert d.buffered == 60_000 + len(base.data)
    assert d.flush() == 1 and d.buffered == 0


def test_buffered_bytes_released_on_completion_and_timeout():
    d = Defragmenter()
    frags = _frags(_v4()[1])
    _feed_all(d, frags)
    assert d.buffered == 0 and len(d) == 0
    d.feed(frags[2])
    assert d.buffered > 0
    d.expire(frags[2].ts_ns + 31 * SEC)
    assert d.buffered == 0
