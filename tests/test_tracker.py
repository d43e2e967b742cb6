"""Flow table behaviour: stream-time timeouts, eviction, port reuse, UDP flows."""

from __future__ import annotations

from tests.test_reassembly import Recorder, seg
from wirestream.probe.flowkey import flow_key
from wirestream.probe.packet import ACK, FIN, PROTO_UDP, SYN, Packet
from wirestream.reassembly.limits import SECOND, Limits
from wirestream.reassembly.tracker import FlowTracker


class Table:
    def __init__(self, limits: Limits) -> None:
        self.finished: list[tuple[str, str]] = []
        self.anomalies: list[str] = []
        self.sinks: dict[str, Recorder] = {}
        self.tracker = FlowTracker(limits, self._sink, self._finished, self._anomaly)

    def _sink(self, flow):
        self.sinks[flow.uid] = Recorder()
        return self.sinks[flow.uid]

    def _finished(self, flow) -> None:
        self.finished.append((flow.uid, flow.close_reason))

    def _anomaly(self, flow, name: str, detail: str) -> None:
        self.anomalies.append(name)

    def feed(self, pkt: Packet) -> None:
        key, forward = flow_key(pkt)
        self.tracker.process(pkt, key, forward)


def tcp(client: bool, seq: int, ack: int, flags: int, payload: bytes = b"", ts_s: float = 0):
    pkt, _ = seg(client, seq, ack, flags, payload, ts=int(ts_s * SECOND))
    return pkt


def with_port(pkt: Packet, port: int) -> Packet:
    if pkt.sport == 80:
        pkt.dport = port
    else:
        pkt.sport = port
    return pkt


def test_idle_flows_expire_in_stream_time_not_wall_time() -> None:
    table = Table(Limits(tcp_idle_timeout_ns=10 * SECOND))
    table.feed(tcp(True, 0, 0, SYN, ts_s=0))
    table.feed(tcp(False, 0, 1, SYN | ACK, ts_s=0.1))
    table.feed(tcp(True, 1, 1, ACK, b"x", ts_s=0.2))
    assert table.finished == []
    # Another flow's packet moves stream time past the timeout: the first flow expires.
    table.feed(with_port(tcp(True, 0, 0, SYN, ts_s=11), 40001))
    assert [reason for _, reason in table.finished] == ["timeout"]
    assert len(table.tracker) == 1


def test_syn_only_flows_expire_sooner() -> None:
    table = Table(Limits(syn_only_timeout_ns=2 * SECOND, tcp_idle_timeout_ns=100 * SECOND))
    table.feed(tcp(True, 0, 0, SYN, ts_s=0))
    table.feed(with_port(tcp(True, 0, 0, SYN, ts_s=3), 40001))
    assert [reason for _, reason in table.finished] == ["timeout"]


def test_max_flows_evicts_the_least_recently_active_and_reports_it() -> None:
    table = Table(Limits(max_flows=3))
    for i in range(3):
        table.feed(with_port(tcp(True, 0, 0, SYN, ts_s=i), 41000 + i))
    table.feed(with_port(tcp(True, 1, 0, ACK, ts_s=3), 41000))  # flow 0 active again
    table.feed(with_port(tcp(True, 0, 0, SYN, ts_s=4), 41003))
    assert len(table.tracker) == 3
    assert table.anomalies == ["flow_evicted"]
    assert [reason for _, reason in table.finished] == ["evicted"]
    assert table.tracker.evicted == 1


def test_a_new_syn_on_a_closed_connection_starts_a_new_flow_with_a_new_uid() -> None:
    table = Table(Limits())
    for pkt in (
        tcp(True, 0, 0, SYN, ts_s=0),
        tcp(False, 0, 1, SYN | ACK, ts_s=0.1),
        tcp(True, 1, 1, FIN | ACK, ts_s=0.2),
        tcp(False, 1, 2, FIN | ACK, ts_s=0.3),
        tcp(True, 2, 2, ACK, ts_s=0.4),
        tcp(True, 90000, 0, SYN, ts_s=1.0),
    ):
        table.feed(pkt)
    assert len(table.finished) == 1
    table.tracker.close_all("end_of_input")
    uids = [uid for uid, _ in table.finished]
    assert len(set(uids)) == 2


def test_udp_flows_get_timeouts_and_both_directions() -> None:
    table = Table(Limits(udp_idle_timeout_ns=5 * SECOND))
    query = Packet(0, 4, PROTO_UDP, b"\x0a\0\0\1", b"\x0a\0\0\2", 5353, 53, b"q")
    answer = Packet(SECOND // 10, 4, PROTO_UDP, b"\x0a\0\0\2", b"\x0a\0\0\1", 53, 5353, b"ans")
    table.feed(query)
    table.feed(answer)
    flow = next(iter(table.tracker.flows.values()))
    assert flow.client_side >= 0
    assert flow.halves[flow.client_side].bytes == 1
    later = Packet(10 * SECOND, 4, PROTO_UDP, b"\x0a\0\0\3", b"\x0a\0\0\2", 5000, 53, b"x")
    table.feed(later)
    assert [reason for _, reason in table.finished] == ["timeout"]


def test_expire_with_a_wall_clock_time_closes_quiet_flows() -> None:
    table = Table(Limits(tcp_idle_timeout_ns=10 * SECOND))
    table.feed(tcp(True, 0, 0, SYN, ts_s=0))
    table.feed(tcp(False, 0, 1, SYN | ACK, ts_s=0.1))
    assert table.tracker.expire(now=table.tracker.stream_time + 60 * SECOND) == 1
    assert table.finished and table.finished[0][1] == "wallclock_timeout"


def test_task_memcap_makes_the_parking_flow_give_up_its_holes() -> None:
    limits = Limits(max_parked_bytes_task=3000, max_parked_bytes=1 << 20)
    table = Table(limits)
    for port in (41000, 41001):
        table.feed(with_port(tcp(True, 0, 0, SYN, ts_s=0), port))
        for i in range(1, 11):  # 10 segments of 200 bytes after a hole at offset 0
            table.feed(with_port(tcp(True, 1 + i * 200, 0, ACK, b"y" * 200, ts_s=0.1), port))
    assert table.tracker.budget.bytes <= 3000
    assert "task_memcap" in table.anomalies
    hit = [s for s in table.sinks.values() if s.events and s.events[0][0] == "gap"]
    assert hit, "the flow over the cap declared its first hole a gap"
    table.tracker.close_all("end_of_input")
    assert table.tracker.budget.bytes == 0
