"""Fuzzing the reassembly engine: TcpFlow and FlowTracker fed arbitrary segment sequences
(any order, overlaps, duplicates, flags, ACKs, sequence wrap, flows past every limit).

Invariants after every packet: nothing raises; parked data stays within its caps (per
direction, per task) and its accounting is exact; every stream position is delivered or
declared missed exactly once (delivered + missed = the stream's length so far); the flow's
sha256 is that of the delivered stream with gaps as zeros. With consistent data (every
copy of a byte the same), every delivered byte is the byte sent at that sequence number.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import fuzz
from wirestream.probe.flowkey import flow_key
from wirestream.probe.packet import ACK, FIN, PROTO_TCP, PROTO_UDP, PSH, RST, SYN, Packet
from wirestream.reassembly.halfstream import OVERLAP_POLICIES, HalfStream
from wirestream.reassembly.limits import Limits
from wirestream.reassembly.tcpflow import PHASE_CLOSED, TcpFlow
from wirestream.reassembly.tracker import FlowTracker
from wirestream.reassembly.udpflow import UdpFlow

M32 = 0xFFFFFFFF
IPS = (bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
PORTS = (40000, 80)


class Recorder:
    """StreamSink keeping every event per key orientation (side) of its flow, mapped from the
    direction with the roles of the moment. Gaps are kept as lengths, never as zeros."""

    def __init__(self) -> None:
        self.flow: TcpFlow | UdpFlow | None = None
        self.events: list[list[tuple[int, bytes | int]]] = [[], []]  # (start, data | gap len)
        self.length = [0, 0]  # stream positions delivered or missed
        self.delivered = [0, 0]
        self.missed = [0, 0]
        self.closed: list[str] = []
        self.anomalies: list[str] = []

    def _side(self, direction: int) -> int:
        assert self.flow is not None
        client = max(self.flow.client_side, 0)
        return client if direction == 0 else 1 - client

    def on_data(self, direction: int, data: bytes) -> None:
        side = self._side(direction)
        self.events[side].append((self.length[side], bytes(data)))
        self.length[side] += len(data)
        self.delivered[side] += len(data)

    def on_gap(self, direction: int, length: int) -> None:
        assert length > 0
        side = self._side(direction)
        self.events[side].append((self.length[side], length))
        self.length[side] += length
        self.missed[side] += length

    def digest(self, side: int) -> str:
        """sha256 of the delivered stream, gaps as zeros, trailing gaps left out."""
        events = self.events[side]
        last = max((i for i, (_, d) in enumerate(events) if isinstance(d, bytes)), default=-1)
        h = hashlib.sha256()
        for _, d in events[: last + 1]:
            if isinstance(d, bytes):
                h.update(d)
            else:
                while d:
                    k = min(d, 1 << 16)
                    h.update(bytes(k))
                    d -= k
        return h.hexdigest()

    def data(self, side: int) -> bytes:
        return b"".join(d if isinstance(d, bytes) else bytes(d) for _, d in self.events[side])

    def on_close(self, reason: str) -> None:
        self.closed.append(reason)

    def role_hint(self, data: bytes) -> int | None:
        return None

    def anomaly(self, name: str, detail: str) -> None:
        self.anomalies.append(name)


def check_half(half: HalfStream, limits: Limits) -> None:
    assert half.parked_bytes == sum(len(v) for v in half.parked.values())
    assert half.parked_bytes <= limits.max_parked_bytes
    assert len(half.parked) <= limits.max_parked_segments
    assert half.parked_offsets == sorted(half.parked)
    # Parked data starts at or beyond the delivery point (at it: see
    # test_filled_hole_delivers_the_parked_data_behind_it) and segments never overlap.
    low = half.next
    for off in half.parked_offsets:
        assert off >= low and half.parked[off]
        low = off + len(half.parked[off])


def check_flow(flow: TcpFlow, rec: Recorder, limits: Limits) -> None:
    for side in (0, 1):
        half = flow.halves[side]
        check_half(half, limits)
        assert half.bytes == rec.delivered[side]
        assert half.missed == rec.missed[side]
        assert half.next == rec.length[side]  # every position delivered or missed once


def check_digest(flow: TcpFlow, rec: Recorder) -> None:
    for side in (0, 1):
        assert flow.halves[side].digest() == rec.digest(side)


def new_flow() -> tuple[TcpFlow, Recorder]:
    rec = Recorder()
    flow = TcpFlow(b"key", "Cfuzz", 0, rec)
    rec.flow = flow
    return flow, rec


# ------------------------------------------------------------------ one flow
@st.composite
def conversations(draw, consistent: bool):
    """Two true streams with their ISNs, and segments of them in any order and shape."""
    isn = (draw(st.integers(0, M32)), draw(st.integers(0, M32)))
    true = (draw(st.binary(max_size=600)), draw(st.binary(max_size=600)))
    segs = []
    for _ in range(draw(st.integers(1, 40))):
        side = draw(st.integers(0, 1))
        flags = draw(
            st.sampled_from(
                [
                    ACK,
                    ACK | PSH,
                    ACK | PSH,
                    ACK,
                    SYN,
                    SYN | ACK,
                    ACK | FIN,
                    ACK | RST,
                    RST,
                    0,
                    FIN,
                    SYN | FIN | RST | ACK,
                ]
            )
        )
        peer = 1 - side
        if draw(st.integers(0, 5)):
            ack = (isn[peer] + 1 + draw(st.integers(0, len(true[peer]) + 4))) & M32
        else:
            ack = (isn[peer] + draw(st.integers(-(1 << 16), 1 << 16))) & M32
        if flags & SYN:
            seq, start = isn[side], 0
        elif draw(st.integers(0, 6)):
            start = draw(st.integers(-8, len(true[side]) + 8))
            seq = (isn[side] + 1 + start) & M32
        else:  # far behind or ahead (gaps of up to 2^31 bytes: see test_huge_gap_is_cheap)
            start = draw(st.integers(-(1 << 16), 1 << 16))
            seq = (isn[side] + 1 + start) & M32
        n = draw(st.integers(0, 200))
        if not consistent:
            payload = draw(st.binary(max_size=n))
        elif flags & SYN:  # TCP Fast Open: the SYN's data starts at offset 0
            payload = true[side][:n] if draw(st.booleans()) else b""
        elif 0 <= start <= len(true[side]):
            payload = true[side][start : start + n]
        else:
            payload = b""  # no true bytes there
        segs.append((side, seq, ack, flags, payload))
    return isn, true, segs


def _packet(side: int, seq: int, ack: int, flags: int, payload: bytes, ts: int) -> Packet:
    a, b = (0, 1) if side == 0 else (1, 0)
    return Packet(
        ts, 4, PROTO_TCP, IPS[a], IPS[b], PORTS[a], PORTS[b], payload, flags, seq, ack, 65535
    )


limits_st = st.builds(
    Limits,
    max_parked_bytes=st.integers(1, 2000),
    max_parked_segments=st.integers(1, 12),
    overlap_policy=st.sampled_from(OVERLAP_POLICIES),
)


def _run(segs, limits: Limits) -> tuple[TcpFlow, Recorder]:
    flow, rec = new_flow()
    for i, (side, seq, ack, flags, payload) in enumerate(segs):
        flow.on_packet(_packet(side, seq, ack, flags, payload, i), side, limits)
        check_flow(flow, rec, limits)
    flow.close("end_of_input")
    check_flow(flow, rec, limits)
    assert flow.phase == PHASE_CLOSED and rec.closed == [flow.close_reason]
    assert not flow.halves[0].parked and not flow.halves[1].parked
    check_digest(flow, rec)
    return flow, rec


@fuzz(250)
@given(conversations(consistent=False), limits_st)
def test_tcpflow_arbitrary_segments(conv, limits):
    _run(conv[2], limits)


@fuzz(250)
@given(conversations(consistent=True), limits_st)
def test_tcpflow_consistent_segments_deliver_the_true_bytes(conv, limits):
    isn, true, segs = conv
    flow, rec = _run(segs, limits)
    assert "overlap_different_data" not in rec.anomalies
    for side in (0, 1):
        base = flow.halves[side].base
        for start, data in rec.events[side]:
            if isinstance(data, bytes):
                idx = (base + start - isn[side] - 1) & M32
                assert true[side][idx : idx + len(data)] == data


@fuzz(300)
@given(
    st.binary(min_size=1, max_size=3000),
    st.lists(st.tuples(st.integers(0, 2999), st.integers(1, 300)), max_size=40),
    st.randoms(use_true_random=False),
    st.sampled_from(OVERLAP_POLICIES),
    st.integers(0, M32),
)
def test_any_order_overlaps_and_duplicates_rebuild_the_stream(data, extra, rnd, policy, isn):
    """Segments covering the whole stream, plus overlapping copies, shuffled: with room to
    park them all and no ACK ahead, the stream comes out whole, without a gap."""
    cover, pos = [], 0
    while pos < len(data):
        n = rnd.randint(1, 200)
        cover.append((pos, data[pos : pos + n]))
        pos += n
    segs = cover + [(s, data[s : s + n]) for s, n in extra if s < len(data)]
    rnd.shuffle(segs)
    limits = Limits(overlap_policy=policy, max_parked_segments=1000)
    flow, rec = new_flow()
    flow.on_packet(_packet(0, isn, 0, SYN, b"", 0), 0, limits)
    flow.on_packet(_packet(1, 77, (isn + 1) & M32, SYN | ACK, b"", 1), 1, limits)
    for i, (off, chunk) in enumerate(segs):
        flow.on_packet(_packet(0, (isn + 1 + off) & M32, 78, ACK, chunk, i + 2), 0, limits)
    flow.close("end_of_input")
    assert rec.data(0) == data and rec.missed[0] == 0
    assert flow.halves[0].digest() == hashlib.sha256(data).hexdigest()
    assert rec.anomalies == []


# ------------------------------------------------------------------ the flow table
@st.composite
def table_traffic(draw):
    """Packets of a handful of TCP and UDP 5-tuples, times that jump past the timeouts."""
    out, ts = [], 10**18
    for _ in range(draw(st.integers(1, 80))):
        ts += draw(st.sampled_from([0, 10**6, 10**9, 6 * 10**9, 40 * 10**9, 400 * 10**9]))
        if draw(st.integers(0, 20)) == 0:
            ts -= 10**9  # a little backwards
        host, port = draw(st.integers(1, 4)), draw(st.integers(0, 3))
        forward = draw(st.booleans())
        proto = PROTO_UDP if draw(st.integers(0, 6)) == 0 else PROTO_TCP
        flags = draw(st.sampled_from([SYN, SYN | ACK, ACK, ACK | PSH, ACK | FIN, RST, ACK | RST]))
        seq = 1000 + draw(st.integers(-2, 30)) * 100
        ack = 5000 + draw(st.integers(-2, 30)) * 100
        payload = draw(st.binary(max_size=300))
        ends = [(bytes([10, 0, 0, host]), 40000 + port), (bytes([10, 0, 1, 1]), 80)]
        (src, sport), (dst, dport) = ends if forward else ends[::-1]
        out.append(
            Packet(
                ts,
                4,
                proto,
                src,
                dst,
                sport,
                dport,
                payload,
                flags if proto == PROTO_TCP else 0,
                seq,
                ack,
                65535,
            )
        )
    return out


@fuzz(300)
@given(
    table_traffic(),
    st.integers(1, 5),
    st.integers(1, 3000),
    limits_st,
)
def test_flow_table_limits_and_accounting(packets, max_flows, task_cap, limits):
    limits = replace(limits, max_flows=max_flows, max_parked_bytes_task=task_cap)
    sinks: dict[int, Recorder] = {}
    finished: list = []
    evicted: list = []

    def new_sink(flow):
        rec = Recorder()
        rec.flow = flow
        sinks[id(flow)] = rec
        return rec

    def on_finished(flow):
        finished.append((flow, sinks[id(flow)]))

    tracker = FlowTracker(limits, new_sink, on_finished, lambda f, n, d: evicted.append(n))
    for pkt in packets:
        key, forward = flow_key(pkt)
        tracker.process(pkt, key, forward)
        assert len(tracker) <= max_flows
        parked = sum(f.parked_bytes() for f in tracker.flows.values() if isinstance(f, TcpFlow))
        assert tracker.budget.bytes == parked <= task_cap
        for flow, rec in finished:  # gone for good: closed, nothing parked, told once
            assert flow.phase >= PHASE_CLOSED and len(rec.closed) == 1
    tracker.close_all("end_of_input")
    assert len(tracker) == 0 and tracker.budget.bytes == 0
    assert len({id(f) for f, _ in finished}) == len(finished) == len(sinks)
    assert evicted.count("flow_evicted") == tracker.evicted
    for flow, rec in finished:
        if isinstance(flow, TcpFlow):
            check_flow(flow, rec, limits)
            check_digest(flow, rec)


# ------------------------------------------------------------------ bugs found by the fuzzers
class DirectionRecorder(Recorder):
    """Also keeps the raw (direction, kind, value) events, as a decoder sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[tuple[int, str, bytes | int]] = []

    def on_data(self, direction: int, data: bytes) -> None:
        super().on_data(direction, data)
        self.raw.append((direction, "data", bytes(data)))

    def on_gap(self, direction: int, length: int) -> None:
        super().on_gap(direction, length)
        self.raw.append((direction, "gap", length))


def test_filled_hole_delivers_the_parked_data_behind_it():
    flow, rec = new_flow()
    limits = Limits()
    for seq, payload in ((1000, b"01234"), (1009, b"9"), (1005, b"5678")):
        flow.on_packet(_packet(0, seq, 0, PSH, payload, seq), 0, limits)  # no ACK flag
    assert rec.data(0) == b"0123456789"


def test_roles_do_not_change_after_a_gap_was_delivered():
    rec = DirectionRecorder()
    flow = TcpFlow(b"key", "Cfuzz", 0, rec)
    rec.flow = flow
    limits = Limits()
    for side, seq, ack, flags in (
        (1, 0, 0, ACK),
        (0, 0, 0, ACK),
        (0, 0, 1, ACK),
        (0, 0, 0, SYN | ACK),
    ):
        flow.on_packet(_packet(side, seq, ack, flags, b"", 0), side, limits)
    (gap_direction, kind, length) = rec.raw[0]
    assert (kind, length) == ("gap", 1)
    assert flow.direction(1) == gap_direction  # side 1 lost the byte


def test_huge_gap_is_cheap():
    flow, rec = new_flow()
    limits = Limits()
    flow.on_packet(_packet(0, 1000, 0, SYN, b"", 0), 0, limits)
    flow.on_packet(_packet(1, 5000, 1001, SYN | ACK, b"", 1), 1, limits)
    flow.on_packet(_packet(0, 1001, 5001, ACK | PSH, b"x", 2), 0, limits)
    ahead = (1002 + (1 << 31) - 16) & M32
    started = time.process_time()
    flow.on_packet(_packet(1, 5001, ahead, ACK, b"", 3), 1, limits)  # acknowledges 2 GiB
    assert "ack_above_data" in rec.anomalies  # far above anything sent: ignored
    flow.on_packet(_packet(0, ahead, 5001, ACK | PSH, b"y", 4), 0, limits)
    flow.close("end_of_input")  # the byte after the hole is delivered across the gap
    elapsed = time.process_time() - started
    assert rec.missed[0] == (1 << 31) - 16 and rec.delivered[0] == 2
    assert elapsed < 0.25
    # A gap beyond the hashing budget leaves the stream without a hash rather than
    # spending seconds hashing zeros.
    assert flow.halves[0].digest() is None
