"""Snapshots are lists of named fields (as the tracker's _META_FIELDS): every piece of a
flow's or a session's state is named once, and a restore reads it by name."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from tests.test_task_restore import keyed_packets, run
from wirestream.reassembly.ipflow import IpFlow
from wirestream.reassembly.limits import Limits
from wirestream.reassembly.tcpflow import TcpFlow
from wirestream.reassembly.tracker import FlowTracker
from wirestream.reassembly.udpflow import UdpFlow
from wirestream.streams.session import FlowSession

# Slots that are not state: wiring given again on restore, or derived from other fields.
NOT_STATE = {
    TcpFlow: {"key", "sink", "_callbacks", "hist_seen"},
    UdpFlow: {"key", "sink"},
    IpFlow: {"key", "sink", "header"},
    # _community_id: derived from the flow key and the configured seed.
    FlowSession: {"conn", "config", "_info", "_replay_ts", "_community_id"},
}


@pytest.mark.parametrize("cls", [TcpFlow, UdpFlow, IpFlow, FlowSession])
def test_every_slot_is_a_named_field_or_declared_not_state(cls: type) -> None:
    fields = getattr(cls, "_STATE_FIELDS", None) or cls._FIELDS
    assert len(set(fields)) == len(fields)
    assert set(cls.__slots__) - NOT_STATE[cls] == set(fields)


@pytest.mark.parametrize(
    "name",
    ["zeek__dns__long-connection.pcap", "zeek__dns__mdns.pcap", "zeek__tcp__reassembly.pcap"],
)
def test_udp_and_tcp_flows_restore_mid_capture(name: str, tmp_path: Path) -> None:
    packets = keyed_packets(name)
    reference = run(packets, tmp_path / "ref", set())
    n = len(packets)
    assert run(packets, tmp_path / "restored", {n // 3, n // 2, n - 1} - {0}) == reference


def test_a_tcp_snapshot_survives_msgpack_and_restore() -> None:
    flows: list[TcpFlow] = []

    packets = keyed_packets("zeek__http__get.pcap")

    class Sink:
        def __init__(self, flow) -> None:
            flows.append(flow)

        def on_data(self, *a) -> None: ...
        def on_gap(self, *a) -> None: ...
        def on_close(self, *a) -> None: ...
        def role_hint(self, data: bytes) -> None: ...
        def anomaly(self, *a) -> None: ...

    tracker = FlowTracker(Limits(), Sink, lambda flow: None, lambda *a: None)
    for kp in packets[:8]:
        tracker.process(kp.packet, kp.key, kp.forward)
    (flow,) = flows
    state = msgpack.unpackb(msgpack.packb(flow.snapshot(), use_bin_type=True), raw=False)
    again = TcpFlow.restore(flow.key, state, flow.sink)
    assert again.snapshot() == state
    assert (again.hist, again.hist_seen, again.ts_first) == (
        flow.hist,
        flow.hist_seen,
        flow.ts_first,
    )
