"""Fuzzing the probe side (hypothesis, seeded with the fixtures): capture readers, frame
parsing, defragmentation, capture-order repair, flow keys and packet records.

Contract: only the documented exception of each entry point may escape (CaptureError,
ParseError, RecordError, FlowKeyError), nothing is lost, and memory stays within the caps.
Bounded in the normal run; `WIRESTREAM_FUZZ_EXAMPLES=N` (make fuzz, fuzz/run_fuzz.py) runs N
examples per test with a random seed.
"""

from __future__ import annotations

import struct
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st

from tests import pcapgen as g
from tests.fuzzing import fuzz
from wirestream.probe.capture import MAX_CAPLEN, open_capture
from wirestream.probe.defrag import Defragmenter
from wirestream.probe.errors import CaptureError, FlowKeyError, ParseError, RecordError
from wirestream.probe.flowkey import decode_flow_key, flow_key, kafka_partition
from wirestream.probe.packet import Packet
from wirestream.probe.parse import Fragment, parse_frame
from wirestream.probe.record import decode_record, encode_record
from wirestream.probe.reorder import reorder
from wirestream.probe.source import PacketSource

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "fixtures" / "pcaps").glob("*.pcap*"))


def _load_frames() -> list[tuple[int, bytes]]:
    """Up to 40 (linktype, frame) seeds per fixture: real frames of every link type seen."""
    out = []
    for path in FIXTURES:
        try:
            with open_capture(path) as cap:
                for i, (linktype, _ts, _orig, frame) in enumerate(cap):
                    if i >= 40:
                        break
                    out.append((linktype, frame))
        except CaptureError:
            pass
    return out


SEED_FRAMES = _load_frames()
SEED_FILES = {p.name: p.read_bytes() for p in FIXTURES if p.stat().st_size < 300_000}
LINKTYPES = sorted({lt for lt, _ in SEED_FRAMES} | {0, 1, 12, 14, 101, 108, 113, 228, 229, 276})


@st.composite
def mutated(draw, data: bytes, max_flips: int = 12) -> bytes:
    """`data` with a few bytes flipped, maybe truncated, maybe a range duplicated or cut."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, max_flips))):
        if not buf:
            break
        buf[draw(st.integers(0, len(buf) - 1))] ^= draw(st.integers(1, 255))
    if buf and draw(st.booleans()):
        del buf[draw(st.integers(0, len(buf))) :]
    if buf and draw(st.integers(0, 3)) == 0:
        a = draw(st.integers(0, len(buf) - 1))
        b = draw(st.integers(a, min(len(buf), a + 64)))
        buf[a:b] = buf[a:b] * draw(st.integers(0, 3))
    return bytes(buf)


frames = st.one_of(
    st.sampled_from(SEED_FRAMES).flatmap(lambda s: mutated(s[1]).map(lambda f: (s[0], f))),
    st.tuples(st.sampled_from(LINKTYPES), st.binary(max_size=120)),
    st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=80)),
)


# ------------------------------------------------------------------ capture readers
def _read_all(data: bytes) -> tuple[int, CaptureError | None]:
    """Read a whole capture from bytes; returns (records, error). Only CaptureError may
    escape open_capture or the iteration."""
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(data)
        f.flush()
        count = 0
        try:
            with open_capture(f.name) as cap:
                for linktype, ts_ns, orig_len, frame in cap:
                    assert isinstance(linktype, int) and 0 <= linktype <= 0xFFFFFFFF
                    assert 0 < len(frame) <= MAX_CAPLEN
                    assert isinstance(ts_ns, int) and isinstance(orig_len, int)
                    assert cap.bytes_read <= cap.size
                    count += 1
        except CaptureError as exc:
            assert exc.path == f.name and 0 <= exc.offset <= len(data)
            assert "\n" not in str(exc)
            return count, exc
        return count, None


@fuzz(300)
@given(st.sampled_from(sorted(SEED_FILES)).flatmap(lambda n: mutated(SEED_FILES[n], 24)))
def test_capture_reader_on_mutated_fixtures(data):
    _read_all(data)


@fuzz(200)
@given(
    st.sampled_from(
        [
            b"\xd4\xc3\xb2\xa1",
            b"\xa1\xb2\xc3\xd4",
            b"\x4d\x3c\xb2\xa1",
            b"\x34\xcd\xb2\xa1",
            b"\x0a\x0d\x0d\x0a",
            b"",
        ]
    ),
    st.binary(max_size=400),
)
def test_capture_reader_on_random_bytes(magic, rest):
    _read_all(magic + rest)


@fuzz(100)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.binary(min_size=1, max_size=64)), max_size=8),
    st.integers(0, 2),
)
def test_pcapng_blocks_of_any_type(blocks, cut):
    """Well-framed blocks of arbitrary type and content after a valid SHB and IDB."""
    body = g.pcapng_bytes([], unknown_blocks=False)
    for btype, content in blocks:
        body += g.pcapng_block((1, 2, 3, 6)[btype], content)
    _read_all(body[: len(body) - cut])


def test_truncation_at_every_offset_of_a_small_capture():
    """Every prefix of a capture: the records read are exactly those wholly inside it."""
    frames_ = [(10**18 + i, g.ether(g.ipv4(g.tcp(payload=b"p" * i)))) for i in range(6)]
    data = g.pcap_bytes(frames_)
    ends, pos = [], 24
    for _, frame in frames_:
        pos += 16 + len(frame)
        ends.append(pos)
    for cut in range(len(data) + 1):
        count, error = _read_all(data[:cut])
        assert count == sum(1 for e in ends if e <= cut)
        assert (error is None) == (cut >= 24 and cut in (24, *ends))


# ------------------------------------------------------------------ frame parsing
def _check_packet(pkt: Packet, frame: bytes) -> None:
    assert pkt.ip_version in (4, 6)
    assert len(pkt.src) == len(pkt.dst) == (4 if pkt.ip_version == 4 else 16)
    assert 0 <= pkt.sport <= 0xFFFF and 0 <= pkt.dport <= 0xFFFF
    assert len(pkt.payload) <= len(frame) and pkt.truncated >= 0
    assert len(pkt.vlan) <= 2 and all(0 <= v <= 0xFFF for v in pkt.vlan)


@fuzz(1500)
@given(frames)
def test_parse_frame_only_raises_parse_error(case):
    linktype, frame = case
    try:
        out = parse_frame(linktype, frame, 1, len(frame))
    except ParseError as exc:
        assert exc.kind and exc.kind.isidentifier()
        return
    if isinstance(out, Packet):
        _check_packet(out, frame)
        key, forward = flow_key(out)
        fields = decode_flow_key(key)
        assert {fields.lower, fields.higher} == {(out.src, out.sport), (out.dst, out.dport)}
        assert fields.lower == ((out.src, out.sport) if forward else (out.dst, out.dport))
        assert 0 <= kafka_partition(key, 7) < 7
    elif isinstance(out, Fragment):
        assert out.offset % 8 == 0 and len(out.data) <= len(frame)
    else:
        assert out is None


# ------------------------------------------------------------------ defragmentation
def _v4_header(src: bytes, ident: int, proto: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, ident, 0, 64, proto, 0, src, b"\x0a\0\0\x02")


def _v6_header(src: bytes, proto: int) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, 0, 44, 64, src, b"\x20\x01" + bytes(14))


def _fragment(v6: bool, host: int, ident: int, proto: int, offset: int, more: bool,
              data: bytes, ts: int) -> Fragment:  # fmt: skip
    src = bytes([10, 0, 0, host]) if not v6 else bytes(15) + bytes([host])
    header = _v6_header(src, proto) if v6 else _v4_header(src, ident, proto)
    return Fragment(
        ts_ns=ts,
        ip_version=6 if v6 else 4,
        proto=proto,
        src=src,
        dst=header[24:40] if v6 else header[16:20],
        ident=ident,
        offset=offset,
        more=more,
        header=header,
        data=data,
        vlan=(),
        wire_len=0,
        linktype=101,
        l2=b"",
        nh_offset=6 if v6 else 9,
    )


_FRAGMENT_FIELDS = st.tuples(
    st.booleans(),
    st.integers(1, 3),
    st.integers(0, 3),
    st.sampled_from([6, 17, 1]),
    st.one_of(st.integers(0, 64).map(lambda k: 8 * k), st.integers(0, 70_000)),
    st.booleans(),
    st.binary(max_size=48),
    st.sampled_from([0, 1000, 10**9, 31 * 10**9]),  # time step: some expire the pending
)


def _fragment_stream(fields: list[tuple]) -> list[Fragment]:
    out, ts = [], 10**18
    for *head, step in fields:
        ts += step
        out.append(_fragment(*head, ts))
    return out


fragment_streams = st.lists(_FRAGMENT_FIELDS, min_size=1, max_size=60).map(_fragment_stream)


@fuzz(400)
@given(
    fragment_streams,
    st.integers(1, 6),
    st.integers(1, 8),
    st.integers(0, 4096),
    st.sampled_from(["first", "last"]),
)
def test_defragmenter_never_raises_and_stays_within_caps(frags, max_dg, max_frags, budget, pol):
    d = Defragmenter(
        max_datagrams=max_dg,
        max_fragments=max_frags,
        max_bytes=budget,
        max_size=4096,
        overlap_policy=pol,
    )
    for n, frag in enumerate(frags, 1):
        done = d.feed(frag)
        assert len(d) <= max_dg
        assert d.buffered == sum(len(dg.buf) for dg in d._pending.values()) <= d.max_bytes
        assert d.stats.fragments == n
        if done is not None:
            assert len(done.frame) - done.ip_offset <= 4096 + 40
            try:
                parse_frame(done.linktype, done.frame, done.ts_ns, len(done.frame))
            except ParseError:
                pass
    d.flush()
    assert len(d) == 0 and d.buffered == 0


@fuzz(150)
@given(
    st.binary(min_size=1, max_size=600),
    st.sampled_from([8, 16, 64]),
    st.randoms(use_true_random=False),
)
def test_fragments_in_any_order_with_duplicates_give_the_datagram(payload, size, rnd):
    """Nothing lost: shuffled and duplicated fragments (same bytes) rebuild the original."""
    ip = g.ipv4(g.udp(4000, 53, payload), ident=7)
    pieces = g.fragment_ipv4(ip, size)
    assume(len(pieces) > 1)
    order = list(range(len(pieces))) + [rnd.randrange(len(pieces)) for _ in range(len(pieces))]
    rnd.shuffle(order)
    completes_at = max(order.index(k) for k in range(len(pieces)))
    del order[completes_at + 1 :]  # (a whole second copy would rightly complete it again)
    d = Defragmenter()
    done = []
    for i, k in enumerate(order):
        frag = parse_frame(101, pieces[k], 10**18 + i, len(pieces[k]))
        assert isinstance(frag, Fragment)
        r = d.feed(frag)
        if r is not None:
            done.append((i, r))
    assert [i for i, _ in done] == [completes_at]
    assert done[0][1].frame == ip and done[0][1].anomalies == ()


# ------------------------------------------------------------------ capture-order repair
@fuzz(300)
@given(
    st.lists(st.integers(0, 5_000), max_size=80),
    st.integers(0, 3_000),
    st.integers(1, 20),
    st.integers(-1, 80),
)
def test_reorder_loses_nothing(stamps, window, max_frames, fail_at):
    """Every frame comes out exactly once, even when the input fails half-way (a damaged
    capture): frames read before the failure are all released, then the error."""
    frames_ = [(1, ts, i, b"") for i, ts in enumerate(stamps)]

    def source():
        for i, f in enumerate(frames_):
            if i == fail_at:
                raise CaptureError("x", i, "damaged")
            yield f

    out = []
    try:
        for f in reorder(source(), window, max_frames=max_frames):
            out.append(f)
        failed = False
    except CaptureError:
        failed = True
    read = frames_[:fail_at] if 0 <= fail_at < len(frames_) else frames_
    assert failed == (0 <= fail_at < len(frames_))
    assert Counter(f[2] for f in out) == Counter(f[2] for f in read)
    if window == 0:
        assert out == read


@fuzz(200)
@given(st.lists(frames, max_size=40), st.integers(0, 2))
def test_packet_source_accounts_for_every_frame(batch, window_s):
    """parse + defrag + key: never raises, and every frame is counted somewhere."""
    src = PacketSource(reorder_window_ns=window_s * 10**9)
    out = list(src.keyed((lt, 10**18 + i, len(f), f) for i, (lt, f) in enumerate(batch)))
    assert src.frames == len(batch)
    for kp in out:
        assert decode_flow_key(kp.key).proto == kp.packet.proto
        assert decode_record(kp.record()).frame == kp.frame
    fragments = src.defrag.stats.fragments
    assert len(out) + sum(src.bad.values()) + src.non_ip + fragments >= len(batch)


# ------------------------------------------------------------------ codecs
@fuzz(600)
@given(st.binary(max_size=64))
def test_decode_record_only_raises_record_error(data):
    try:
        rec = decode_record(data)
    except RecordError as exc:
        assert exc.reason in ("too_short", "unknown_version")
        return
    assert encode_record(rec.linktype, rec.ts_ns, rec.orig_len, rec.frame, rec.flags) == data


@fuzz(300)
@given(
    st.integers(-5, 70_000),
    st.integers(-5, 2**64 + 5),
    st.integers(-5, 2**32 + 5),
    st.binary(max_size=32),
    st.integers(-1, 256),
)
def test_record_roundtrip_or_record_error(linktype, ts, orig_len, frame, flags):
    try:
        data = encode_record(linktype, ts, orig_len, frame, flags)
    except RecordError as exc:
        assert exc.reason == "field_out_of_range"
        assert not (
            0 <= linktype <= 0xFFFF and 0 <= ts < 2**64 and 0 <= orig_len < 2**32
            and 0 <= flags <= 255
        )  # fmt: skip
        return
    rec = decode_record(data)
    assert (rec.linktype, rec.ts_ns, rec.orig_len, rec.frame, rec.flags) == (
        linktype, ts, orig_len, frame, flags,
    )  # fmt: skip


@fuzz(600)
@given(st.one_of(st.binary(max_size=48), st.binary(min_size=4, max_size=4).map(
    lambda h: b"\x01" + h[1:2] + h[2:3] + bytes([h[3] % 4]))))  # fmt: skip
def test_decode_flow_key_only_raises_flow_key_error(data):
    try:
        fields = decode_flow_key(data)
    except FlowKeyError as exc:
        assert exc.reason in ("too_short", "unknown_version", "bad_ip_version", "vlan_depth",
                              "bad_length")  # fmt: skip
        return
    assert fields.version == 1 and fields.ip_version in (4, 6) and len(fields.vlans) <= 2


@fuzz(400)
@given(
    st.booleans(),
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=16),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.lists(st.integers(0, 0xFFF), max_size=3),
)
def test_flow_key_symmetric_and_decodable(v6, a, b, pa, pb, proto, vlans):
    n = 16 if v6 else 4
    fwd = Packet(1, 6 if v6 else 4, proto, a[:n], b[:n], pa, pb, b"", vlan=tuple(vlans))
    rev = Packet(1, 6 if v6 else 4, proto, b[:n], a[:n], pb, pa, b"", vlan=tuple(vlans))
    try:
        k1, f1 = flow_key(fwd)
    except FlowKeyError:
        assert len([v for v in vlans if v]) > 2
        return
    k2, f2 = flow_key(rev)
    assert k1 == k2
    assert f1 != f2 or (a[:n], pa) == (b[:n], pb)
    fields = decode_flow_key(k1)
    assert fields.vlans == tuple(v for v in vlans if v)
    assert {fields.lower, fields.higher} == {(a[:n], pa), (b[:n], pb)}


def test_fuzz_harnesses_run_on_their_seeds():
    """The atheris targets (fuzz/harnesses.py) pass on their own starting corpus."""
    from fuzz import harnesses

    for name, target in harnesses.TARGETS.items():
        corpus = list(harnesses.seeds(name))
        assert corpus, name
        for data in corpus[:40]:
            target(data)


def test_reorder_window_holds_a_bounded_number_of_bytes():
    frame = bytes(64 * 1024)  # one object, counted many times: no real memory used
    held, peak = 0, 0

    def source():
        nonlocal held, peak
        for i in range(4096):  # 256 MiB within one millisecond of capture time
            held += len(frame)
            peak = max(peak, held)
            yield (1, 10**18 + i * 100, len(frame), frame)

    for _ in reorder(source(), 10**9):
        held -= len(frame)
    assert peak <= 64 * 1024 * 1024
