"""probe.capture: pcap/pcapng reading, checked against dpkt's readers and the writers in
tests/pcapgen.py, plus error handling on damaged files."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest

from tests import pcapgen as g
from wirestream.probe.capture import MAX_CAPLEN, CaptureError, open_capture

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
REAL = sorted(FIXTURES.glob("*.pcap*"))

# Timestamps with nanosecond detail, some records with orig_len > caplen.
TS = [1_700_000_000_123_456_789, 1_700_000_000_999_999_999, 1_700_000_001_000_000_001, 5]
FRAMES = [g.ether(g.ipv4(g.tcp(payload=b"x" * n))) for n in (0, 10, 100, 1400)]


def _records():
    return [(ts, fr, len(fr) + i * 7) for i, (ts, fr) in enumerate(zip(TS, FRAMES, strict=True))]


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path, big_endian, nanosecond):
    path = g.write_pcap(
        tmp_path / "x.cap", _records(), 1, big_endian=big_endian, nanosecond=nanosecond
    )
    cap = open_capture(path)
    assert (cap.format, cap.linktype, cap.nanosecond) == ("pcap", 1, nanosecond)
    got = list(cap)
    want = [(1, ts if nanosecond else ts // 1000 * 1000, orig, fr) for ts, fr, orig in _records()]
    assert got == want
    assert cap.bytes_read == cap.size == path.stat().st_size
    # dpkt's reader agrees on frames and (float) timestamps
    with open(path, "rb") as f:
        theirs = list(dpkt.pcap.Reader(f))
    assert [fr for *_, fr in got] == [buf for _, buf in theirs]
    for (_, ts, _, _), (dts, _) in zip(got, theirs, strict=True):
        assert abs(float(dts) - ts / 1e9) < 1e-6


def test_modified_pcap_magic(tmp_path):
    body = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    for ts, fr, orig in _records():
        sec, ns = divmod(ts, 10**9)
        body += struct.pack("<IIII", sec, ns // 1000, len(fr), orig) + b"\0" * 8 + fr
    path = tmp_path / "kuznet.pcap"
    path.write_bytes(body)
    assert [r[3] for r in open_capture(path)] == FRAMES


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_interfaces_resolutions_and_skipped_blocks(tmp_path, big_endian):
    # 4 interfaces: Ethernet µs (default), raw IP ns, SLL 2^-20 s, NULL ms
    ifaces = [(1, None), (101, 9), (113, 0x80 | 20), (0, 3)]
    ip = g.ipv4(g.udp(payload=b"dns"))
    frames = [g.ether(ip), ip, g.sll(ip), g.null(ip)]
    pkts = [(i, TS[i % len(TS)] + i, frames[i], len(frames[i]) + 3) for i in range(4)]
    path = g.write_pcapng(tmp_path / "multi.pcap", pkts, ifaces, big_endian=big_endian)
    cap = open_capture(path)
    assert (cap.format, cap.linktype) == ("pcapng", 1)
    got = list(cap)
    assert [r[0] for r in got] == [1, 101, 113, 0]
    assert [r[2:] for r in got] == [(orig, fr) for _, _, fr, orig in pkts]
    # expected timestamps: ticks at each interface's resolution, back to ns (rounded down)
    for (_, ts, _, _), (iface, ts_in, _, _) in zip(got, pkts, strict=True):
        res = ifaces[iface][1]
        ticks = g.ns_to_ticks(ts_in, res)
        if res is not None and res & 0x80:
            assert ts == ticks * 10**9 >> (res & 0x7F)
        else:
            assert ts == ticks * 10 ** (9 - (6 if res is None else res))
        assert ts_in - ts < 10**9 // 1000  # never worse than the coarsest (ms) resolution
    assert cap.bytes_read == cap.size


def test_pcapng_tsoffset_and_second_section_other_byte_order(tmp_path):
    ip = g.ipv4(g.tcp())
    a = g.pcapng_bytes([(0, 1_000_000_123_000, g.ether(ip))], [(1, 9)], tsoffset=1_000)
    b = g.pcapng_bytes([(0, 2_000_000_000_456, ip)], [(101, 9)], big_endian=True)
    path = tmp_path / "two.pcapng"
    path.write_bytes(a + b)
    got = [(lt, ts) for lt, ts, _, _ in open_capture(path)]
    assert got == [(1, 1_000_000_123_000), (101, 2_000_000_000_456)]


def test_format_detected_by_magic_not_name(tmp_path):
    pcap_named_ng = g.write_pcap(tmp_path / "x.pcapng", _records())
    assert open_capture(pcap_named_ng).format == "pcap"
    ng_named_pcap = g.write_pcapng(tmp_path / "y.pcap", [(0, 1, FRAMES[0])])
    assert open_capture(ng_named_pcap).format == "pcapng"


def test_real_pcapng_named_pcap():
    cap = open_capture(FIXTURES / "tcpflow__tests__test5-lines-randomized.pcap")
    assert cap.format == "pcapng"
    assert len(list(cap)) > 0


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_captures_match_dpkt(path):
    """Same records, frames and link type as dpkt's readers; timestamps within 1 µs."""
    with open(path, "rb") as f:
        reader = dpkt.pcap.UniversalReader(f)
        theirs = list(reader)
        their_linktype = reader.datalink()
    cap = open_capture(path)
    ours = list(cap)
    assert len(ours) == len(theirs) > 0
    assert cap.linktype == their_linktype
    assert [r[3] for r in ours] == [buf for _, buf in theirs]
    assert all(r[0] == their_linktype for r in ours)
    for (_, ts, _, _), (dts, _) in zip(ours, theirs, strict=True):
        assert abs(ts - int(float(dts) * 1e9)) <= 1000
    data = path.read_bytes()
    if data[:4] == b"\xd4\xc3\xb2\xa1":  # orig_len: walk the record headers independently
        lens = [struct.unpack_from("<I", data, pos + 12)[0] for pos in _cut_positions(data)]
        assert [r[2] for r in ours] == lens
    assert cap.bytes_read == cap.size


# --------------------------------------------------------------------------- errors


def test_not_a_capture(tmp_path):
    path = tmp_path / "notes.pcap"
    path.write_text("hello, I am text\n")
    with pytest.raises(CaptureError) as ei:
        open_capture(path)
    assert ei.value.offset == 0
    assert str(ei.value).startswith(f"{path}: offset 0: not a pcap")


@pytest.mark.parametrize("content", [b"", b"\xd4\xc3\xb2", b"\xd4\xc3\xb2\xa1\x02\x00"])
def test_empty_and_short_files(tmp_path, content):
    path = tmp_path / "short.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError):
        open_capture(path)


def test_missing_file(tmp_path):
    with pytest.raises(CaptureError) as ei:
        open_capture(tmp_path / "nope.pcap")
    assert "cannot open" in str(ei.value)


def _cut_positions(data: bytes) -> list[int]:
    """Record start offsets of a little-endian classic pcap."""
    pos, starts = 24, []
    while pos < len(data):
        starts.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return starts


def test_truncated_real_capture(tmp_path):
    src = FIXTURES / "own_wrk_small.pcap"
    data = src.read_bytes()
    full = list(open_capture(src))
    starts = _cut_positions(data)
    k = len(starts) // 2
    cut = starts[k] + 16 + 5  # inside the frame of record k
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:cut])
    got = []
    with pytest.raises(CaptureError) as ei:
        for rec in open_capture(path):
            got.append(rec)
    assert got == full[:k]
    assert ei.value.offset == starts[k]
    assert str(ei.value).startswith(f"{path}: offset {starts[k]}: truncated record")
    # cut inside a record header
    path.write_bytes(data[: starts[k] + 7])
    got = []
    with pytest.raises(CaptureError, match="truncated record header") as ei:
        for rec in open_capture(path):
            got.append(rec)
    assert got == full[:k] and ei.value.offset == starts[k]


@pytest.mark.parametrize("caplen", [0, MAX_CAPLEN + 1, 0xFFFFFFFF])
def test_bad_record_length(tmp_path, caplen):
    data = bytearray(g.pcap_bytes(_records()))
    second = 24 + 16 + len(FRAMES[0])
    data[second + 8 : second + 12] = struct.pack("<I", caplen)
    path = tmp_path / "bad.pcap"
    path.write_bytes(bytes(data))
    got = []
    with pytest.raises(CaptureError, match="bad record length") as ei:
        for rec in open_capture(path):
            got.append(rec)
    assert len(got) == 1 and ei.value.offset == second


def test_large_record_spanning_read_chunks(tmp_path):
    big = g.ether(g.ipv4(g.udp(payload=b"y" * 60000)))
    recs = [(i, big) for i in range(40)]  # > 2 MiB in total, records straddle chunks
    path = g.write_pcap(tmp_path / "big.pcap", recs)
    got = list(open_capture(path))
    assert len(got) == 40 and all(r[3] == big for r in got)


def test_pcapng_truncated_block(tmp_path):
    data = g.pcapng_bytes([(0, i, FRAMES[i % 4]) for i in range(6)], [(1, 9)])
    path = tmp_path / "cut.pcapng"
    path.write_bytes(data[:-10])
    got = []
    with pytest.raises(CaptureError, match="truncated block") as ei:
        for rec in open_capture(path):
            got.append(rec)
    assert len(got) == 5
    assert ei.value.offset == len(data) - (12 + 20 + len(FRAMES[1]) + (-len(FRAMES[1]) % 4))


def test_pcapng_trailer_mismatch_and_undefined_interface(tmp_path):
    data = bytearray(g.pcapng_bytes([(0, 1, FRAMES[0])], [(1, 9)], unknown_blocks=False))
    data[-4:] = struct.pack("<I", 12345)
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="trailer"):
        list(open_capture(path))
    data = g.pcapng_bytes([(0, 1, FRAMES[0])], [(1, 9)], unknown_blocks=False)
    shb_idb = data[: -(32 + len(FRAMES[0]) + (-len(FRAMES[0]) % 4))]
    epb = g.pcapng_block(6, struct.pack("<IIIII", 3, 0, 1, 4, 4) + b"abcd")
    path.write_bytes(shb_idb + epb)
    with pytest.raises(CaptureError, match="undefined interface 3"):
        list(open_capture(path))


def test_pcapng_simple_packet_block(tmp_path):
    ng = g.pcapng_bytes([(0, 7_000, FRAMES[1])], [(1, 9)], unknown_blocks=False)
    spb = g.pcapng_block(3, struct.pack("<I", len(FRAMES[2])) + FRAMES[2])
    path = tmp_path / "spb.pcapng"
    path.write_bytes(ng + spb)
    got = list(open_capture(path))
    assert got[1] == (1, 7_000, len(FRAMES[2]), FRAMES[2])  # SPB: previous timestamp


def test_context_manager_closes(tmp_path):
    path = g.write_pcap(tmp_path / "x.pcap", _records())
    with open_capture(path) as cap:
        assert cap.path == str(path)
    assert cap._file.closed
