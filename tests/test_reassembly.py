"""Property and unit tests of the sans-IO TCP engine (reassembly/), fed Packets directly."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from wirestream.probe.packet import ACK, FIN, PROTO_TCP, RST, SYN, Packet
from wirestream.reassembly.halfstream import HalfStream
from wirestream.reassembly.limits import Limits
from wirestream.reassembly.tcpflow import CLIENT, SERVER, TcpFlow

C_IP, S_IP = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


class Recorder:
    """A StreamSink that keeps everything it is told."""

    def __init__(self) -> None:
        self.data = {CLIENT: bytearray(), SERVER: bytearray()}
        self.events: list[tuple] = []
        self.anomalies: list[str] = []
        self.closed: str | None = None

    def on_data(self, direction: int, data: bytes) -> None:
        self.data[direction] += data
        self.events.append(("data", direction, bytes(data)))

    def on_gap(self, direction: int, length: int) -> None:
        self.data[direction] += bytes(length)
        self.events.append(("gap", direction, length))

    def on_close(self, reason: str) -> None:
        self.closed = reason

    def role_hint(self, data: bytes) -> int | None:
        return None

    def anomaly(self, name: str, detail: str) -> None:
        self.anomalies.append(name)


def seg(
    client: bool, seq: int, ack: int, flags: int, payload: bytes = b"", ts: int = 0
) -> tuple[Packet, int]:
    src, dst, sport, dport = (C_IP, S_IP, 40000, 80) if client else (S_IP, C_IP, 80, 40000)
    pkt = Packet(
        ts_ns=ts,
        ip_version=4,
        proto=PROTO_TCP,
        src=src,
        dst=dst,
        sport=sport,
        dport=dport,
        payload=payload,
        tcp_flags=flags,
        seq=seq & 0xFFFFFFFF,
        ack=ack & 0xFFFFFFFF,
        window=65535,
    )
    return pkt, 0 if client else 1


def new_flow() -> tuple[TcpFlow, Recorder]:
    rec = Recorder()
    return TcpFlow(b"k", "Ctest", 0, rec), rec


def cut(data: bytes, sizes: list[int]) -> list[tuple[int, bytes]]:
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)] if sizes else len(data)
        out.append((pos, data[pos : pos + n]))
        pos += n
        i += 1
    return out


def handshake(flow: TcpFlow, isn_c: int, isn_s: int, limits: Limits) -> None:
    for pkt, side in (
        seg(True, isn_c, 0, SYN),
        seg(False, isn_s, isn_c + 1, SYN | ACK),
        seg(True, isn_c + 1, isn_s + 1, ACK),
    ):
        flow.on_packet(pkt, side, limits)


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=3000),
    sizes=st.lists(st.integers(1, 700), min_size=1, max_size=8),
    isn=st.integers(0, 2**32 - 1) | st.integers(2**32 - 2000, 2**32 - 1),
    seed=st.integers(0, 2**32),
    window=st.integers(1, 6),
    dup_rate=st.floats(0, 0.5),
)
def test_any_segmentation_order_and_duplication_gives_the_original_stream(
    data: bytes, sizes: list[int], isn: int, seed: int, window: int, dup_rate: float
) -> None:
    limits = Limits()
    flow, rec = new_flow()
    handshake(flow, isn, 5000, limits)
    rnd = random.Random(seed)
    segments = cut(data, sizes)
    # Duplicates (identical retransmissions, also overlapping ones), then local reordering.
    stream: list[tuple[int, bytes]] = []
    for off, chunk in segments:
        stream.append((off, chunk))
        if rnd.random() < dup_rate:
            lo = rnd.randrange(0, off + 1)
            stream.append((lo, data[lo : off + len(chunk)]))
    for i in range(len(stream)):
        j = min(len(stream) - 1, i + rnd.randrange(0, window))
        stream[i], stream[j] = stream[j], stream[i]
    for off, chunk in stream:
        flow.on_packet(*seg(True, isn + 1 + off, 5001, ACK, chunk), limits)
    flow.close("end_of_input")
    assert bytes(rec.data[CLIENT]) == data
    assert not [e for e in rec.events if e[0] == "gap"]
    half = flow.halves[0]
    assert half.digest() == hashlib.sha256(data).hexdigest()
    assert half.bytes == len(data) and half.missed == 0


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(min_size=10, max_size=2000),
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=5),
    drop=st.sets(st.integers(0, 30), max_size=6),
    isn=st.integers(0, 2**32 - 1),
)
def test_removed_segments_become_gaps_of_the_right_length_and_the_rest_is_intact(
    data: bytes, sizes: list[int], drop: set[int], isn: int
) -> None:
    limits = Limits()
    flow, rec = new_flow()
    handshake(flow, isn, 7000, limits)
    segments = cut(data, sizes)
    expected = bytearray()
    for i, (off, chunk) in enumerate(segments):
        if i in drop:
            expected += bytes(len(chunk))
        else:
            expected += chunk
            flow.on_packet(*seg(True, isn + 1 + off, 7001, ACK, chunk), limits)
    # The FIN says where the stream ends, so a trailing hole is a gap too.
    flow.on_packet(*seg(True, isn + 1 + len(data), 7001, FIN | ACK), limits)
    flow.close("end_of_input")
    assert bytes(rec.data[CLIENT]) == bytes(expected)
    lost = sum(len(c) for i, (_, c) in enumerate(segments) if i in drop)
    assert flow.halves[0].missed == lost
    gaps = sum(e[2] for e in rec.events if e[0] == "gap")
    assert gaps == lost


def overlap_run(policy: str) -> tuple[bytes, list[str]]:
    """Old parked segment A at 10..20; B at 5..15 (starts before A, ends inside it);
    C at 12..22 (starts after A, ends beyond); then the in-order head 0..5."""
    limits = Limits(overlap_policy=policy)
    flow, rec = new_flow()
    handshake(flow, 100, 900, limits)
    flow.on_packet(*seg(True, 101 + 10, 901, ACK, b"AAAAAAAAAA"), limits)
    flow.on_packet(*seg(True, 101 + 5, 901, ACK, b"BBBBBBBBBB"), limits)
    flow.on_packet(*seg(True, 101 + 12, 901, ACK, b"CCCCCCCCCC"), limits)
    flow.on_packet(*seg(True, 101, 901, ACK, b"01234"), limits)
    flow.close("end_of_input")
    return bytes(rec.data[CLIENT]), rec.anomalies


def test_overlap_policies_follow_suricatas_target_based_rules() -> None:
    # first: every byte keeps its first copy.
    assert overlap_run("first")[0] == b"01234BBBBBAAAAAAAAAACC"
    # last: every byte takes its last copy.
    assert overlap_run("last")[0] == b"01234BBBBBBBCCCCCCCCCC"
    # bsd/windows: a new segment wins where it starts before the old one (B over A).
    assert overlap_run("bsd")[0] == b"01234BBBBBBBBBBAAAAACC"
    assert overlap_run("windows")[0] == overlap_run("bsd")[0]
    # linux: as bsd here (no two segments start at the same place).
    assert overlap_run("linux")[0] == overlap_run("bsd")[0]
    # solaris: a new segment wins where it ends after the old one (C over A's tail).
    assert overlap_run("solaris")[0] == b"01234BBBBBAACCCCCCCCCC"
    for policy in ("first", "last", "bsd", "linux", "solaris"):
        assert "overlap_different_data" in overlap_run(policy)[1]


def test_a_retransmission_filling_a_hole_wins_over_parked_data_under_bsd() -> None:
    """The default policy (bsd, Suricata's default): the in-order segment starts before
    the parked one, so its bytes win, as the receiving stack would take them."""
    limits = Limits()
    flow, rec = new_flow()
    handshake(flow, 0, 0, limits)
    flow.on_packet(*seg(True, 1 + 5, 1, ACK, b"xxxxx"), limits)
    flow.on_packet(*seg(True, 1, 1, ACK, b"0123456789"), limits)
    assert bytes(rec.data[CLIENT]) == b"0123456789"
    assert rec.anomalies == ["overlap_different_data"]


def test_ack_beyond_a_hole_declares_the_gap_without_waiting_for_the_end() -> None:
    limits = Limits()
    flow, rec = new_flow()
    handshake(flow, 1000, 2000, limits)
    flow.on_packet(*seg(True, 1001, 2001, ACK, b"hello "), limits)
    flow.on_packet(*seg(True, 1001 + 10, 2001, ACK, b"world"), limits)  # 4-byte hole before
    assert bytes(rec.data[CLIENT]) == b"hello "
    flow.on_packet(*seg(False, 2001, 1001 + 15, ACK), limits)  # server acked past the hole
    assert bytes(rec.data[CLIENT]) == b"hello \0\0\0\0world"
    assert ("gap", CLIENT, 4) in rec.events
    assert rec.closed is None


def test_parking_cap_gives_up_the_first_hole() -> None:
    limits = Limits(max_parked_bytes=100, max_parked_segments=1000)
    flow, rec = new_flow()
    handshake(flow, 0, 0, limits)
    for i in range(1, 20):
        flow.on_packet(*seg(True, 1 + i * 10, 1, ACK, b"x" * 10), limits)
    assert flow.halves[0].parked_bytes <= 100
    assert flow.halves[0].missed == 10
    assert bytes(rec.data[CLIENT]).startswith(bytes(10) + b"x" * 10)


def test_sequence_wraparound_is_seamless() -> None:
    limits = Limits()
    flow, rec = new_flow()
    isn = 2**32 - 5
    handshake(flow, isn, 0, limits)
    flow.on_packet(*seg(True, isn + 1, 1, ACK, b"abcdefgh"), limits)  # crosses 2^32
    flow.on_packet(*seg(True, isn + 9, 1, ACK, b"ijkl"), limits)
    assert bytes(rec.data[CLIENT]) == b"abcdefghijkl"


def test_syn_with_data_is_delivered_tcp_fast_open() -> None:
    limits = Limits()
    flow, rec = new_flow()
    flow.on_packet(*seg(True, 500, 0, SYN, b"GET / HTTP/1.1\r\n"), limits)
    flow.on_packet(*seg(False, 9000, 500 + 17, SYN | ACK), limits)
    flow.on_packet(*seg(True, 517, 9001, ACK, b"Host: x\r\n\r\n"), limits)
    assert bytes(rec.data[CLIENT]) == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_rst_out_of_window_is_ignored_and_reported() -> None:
    limits = Limits()
    flow, rec = new_flow()
    handshake(flow, 0, 0, limits)
    flow.on_packet(*seg(False, 1 + (1 << 30), 1, RST), limits)
    assert rec.closed is None
    assert rec.anomalies == ["rst_invalid"]
    flow.on_packet(*seg(True, 1, 1, ACK, b"still here"), limits)
    assert bytes(rec.data[CLIENT]) == b"still here"


def test_data_after_a_valid_reset_is_still_seen_and_flagged() -> None:
    limits = Limits()
    flow, rec = new_flow()
    handshake(flow, 0, 0, limits)
    flow.on_packet(*seg(False, 1, 1, RST | ACK), limits)
    flow.on_packet(*seg(True, 1, 1, ACK, b"evasion"), limits)
    assert bytes(rec.data[CLIENT]) == b"evasion"
    assert "data_after_reset" in rec.anomalies
    flow.close("rst")
    assert flow.conn_state() == "RSTR"


def test_midstream_flow_is_oriented_by_likely_server_port() -> None:
    limits = Limits()
    flow, rec = new_flow()
    flow.on_packet(*seg(False, 7000, 100, ACK, b"HTTP/1.1 200 OK\r\n\r\n"), limits)
    assert flow.client_side == 0 and flow.flipped  # the sender (port 80) is the server
    assert bytes(rec.data[SERVER]) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert flow.history().startswith("^")
    assert flow.conn_state() == "OTH"


def test_conn_states_follow_zeek() -> None:
    limits = Limits()
    flow, _ = new_flow()
    flow.on_packet(*seg(True, 0, 0, SYN), limits)
    assert flow.conn_state() == "S0"
    flow.on_packet(*seg(False, 0, 1, RST | ACK), limits)
    assert flow.conn_state() == "REJ"

    flow, rec = new_flow()
    handshake(flow, 0, 0, limits)
    flow.on_packet(*seg(True, 1, 1, FIN | ACK), limits)
    assert flow.conn_state() == "S2" and rec.closed is None
    flow.on_packet(*seg(False, 1, 2, FIN | ACK), limits)
    assert flow.conn_state() == "SF" and rec.closed == "fin"
    assert flow.history() == "ShAFf"


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=1500),
    sizes=st.lists(st.integers(1, 200), min_size=1, max_size=5),
    seed=st.integers(0, 2**32),
    cut_at=st.integers(0, 100),
)
def test_snapshot_restore_mid_stream_changes_nothing(
    data: bytes, sizes: list[int], seed: int, cut_at: int
) -> None:
    import msgpack

    limits = Limits()
    rnd = random.Random(seed)
    segments = cut(data, sizes)
    order = list(range(len(segments)))
    for i in range(len(order)):
        j = min(len(order) - 1, i + rnd.randrange(0, 3))
        order[i], order[j] = order[j], order[i]
    packets = [seg(True, 1 + segments[i][0], 1, ACK, segments[i][1]) for i in order]

    ref, ref_rec = new_flow()
    handshake(ref, 0, 0, limits)
    for pkt, side in packets:
        ref.on_packet(pkt, side, limits)
    ref.close("end_of_input")

    flow, rec = new_flow()
    handshake(flow, 0, 0, limits)
    split = cut_at % (len(packets) + 1)
    for pkt, side in packets[:split]:
        flow.on_packet(pkt, side, limits)
    state = msgpack.unpackb(msgpack.packb(flow.snapshot(), use_bin_type=True), raw=False)
    restored = TcpFlow.restore(b"k", state, rec)
    for pkt, side in packets[split:]:
        restored.on_packet(pkt, side, limits)
    restored.close("end_of_input")
    assert bytes(rec.data[CLIENT]) == bytes(ref_rec.data[CLIENT]) == data
    assert restored.halves[0].digest() == ref.halves[0].digest()
    assert restored.history() == ref.history()


def test_halfstream_offsets_unwrap_near_the_delivery_point() -> None:
    half = HalfStream()
    half.set_base(2**32 - 10)
    assert half.offset(2**32 - 10) == 0
    assert half.offset(5) == 15
    half.next = 2**32 + 100  # after more than 4 GiB delivered
    assert half.offset((2**32 - 10 + 2**32 + 100) & 0xFFFFFFFF) == 2**32 + 100


def test_a_retransmission_with_other_bytes_than_delivered_is_reported() -> None:
    limits = Limits()
    flow, rec = new_flow()
    handshake(flow, 0, 0, limits)
    flow.on_packet(*seg(True, 1, 1, ACK, b"GET /index.html"), limits)
    flow.on_packet(*seg(True, 1, 1, ACK, b"GET /index.html"), limits)  # same bytes: fine
    assert rec.anomalies == []
    flow.on_packet(*seg(True, 1, 1, ACK, b"GET /evil.htmlx"), limits)  # Zeek: rexmit_inconsistency
    assert rec.anomalies == ["rexmit_inconsistency"]
    assert bytes(rec.data[CLIENT]) == b"GET /index.html"  # what was delivered stands
    assert "I" in flow.history()


def test_simultaneous_open_delivers_both_directions() -> None:
    limits = Limits()
    flow, rec = new_flow()
    flow.on_packet(*seg(True, 100, 0, SYN), limits)
    flow.on_packet(*seg(False, 900, 0, SYN), limits)  # both sides open at once
    flow.on_packet(*seg(True, 100, 901, SYN | ACK), limits)
    flow.on_packet(*seg(False, 900, 101, SYN | ACK), limits)
    flow.on_packet(*seg(True, 101, 901, ACK, b"hello"), limits)
    flow.on_packet(*seg(False, 901, 106, ACK, b"world"), limits)
    assert bytes(rec.data[CLIENT]) == b"hello" and bytes(rec.data[SERVER]) == b"world"
    assert flow.client_side == 0  # the first SYN's sender


def test_syn_and_fin_retransmissions_change_nothing() -> None:
    limits = Limits()
    flow, rec = new_flow()
    flow.on_packet(*seg(True, 100, 0, SYN), limits)
    flow.on_packet(*seg(True, 100, 0, SYN), limits)  # SYN retransmitted
    flow.on_packet(*seg(False, 900, 101, SYN | ACK), limits)
    flow.on_packet(*seg(False, 900, 101, SYN | ACK), limits)  # SYN-ACK retransmitted
    flow.on_packet(*seg(True, 101, 901, ACK, b"data"), limits)
    flow.on_packet(*seg(True, 105, 901, FIN | ACK), limits)
    flow.on_packet(*seg(True, 105, 901, FIN | ACK), limits)  # FIN retransmitted
    flow.on_packet(*seg(False, 901, 106, FIN | ACK), limits)
    assert bytes(rec.data[CLIENT]) == b"data" and rec.closed == "fin"
    assert flow.conn_state() == "SF" and flow.halves[0].missed == 0
