"""A task restored from its RocksDB store in the middle of a capture emits exactly what an
uninterrupted task emits: the property the Kafka mode's crash safety rests on."""

from __future__ import annotations

from pathlib import Path

import pytest

from wirestream.decoders.registry import select
from wirestream.probe.capture import open_capture
from wirestream.probe.source import PacketSource
from wirestream.state.store import StateStore
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.serde import dumps_record
from wirestream.streams.task import Task

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
DECODERS: list[str] | None = None  # all registered decoders
CAPTURES = [
    "own_nginx_keepalive_multi.pcap",
    "zeek__http__pipelined-requests.pcap",
    "zeek__http__100-continue.pcap",
    "own_echo_post_chunked_upload.pcap",
    "tcpflow__samplePcaps__jpegs.cap",
    "sv__http-gap-simple__input.pcap",
    "zeek__http__zero-length-bodies-with-drops.pcap",
    "zeek__tcp__reassembly.pcap",
    "zeek__wikipedia.pcap",
    "zeek__dns__mdns.pcap",  # UDP, ICMPv6 and IGMP flows
]


def keyed_packets(name: str) -> list:
    return list(PacketSource().keyed(open_capture(FIXTURES / name)))


def run(
    packets: list,
    store_dir: Path,
    restart_at: set[int],
    config: RuntimeConfig | None = None,
    decoders: list[str] | None = DECODERS,
) -> list[bytes]:
    """Run packets through a task (with the `decoders` selected; None = all); at each index
    in `restart_at`, commit, drop the task and continue with a fresh one restored from the
    store (a crash after a commit)."""
    out: list[bytes] = []
    selected = select(decoders)
    config = config or RuntimeConfig()

    def emit(_type: str, _key: str, record: dict) -> None:
        out.append(dumps_record(record))

    store = StateStore(str(store_dir))
    task = Task(0, config, selected, emit, store)
    for i, kp in enumerate(packets):
        if i in restart_at:
            task.commit()
            store.close()
            store = StateStore(str(store_dir))
            task = Task(0, config, selected, emit, store)
            task.restore()
        task.process_record(kp.record())
    task.close_all("end_of_input")
    task.commit()
    store.close()
    return out


@pytest.mark.parametrize("name", CAPTURES)
def test_restoring_mid_capture_changes_no_record(name: str, tmp_path: Path) -> None:
    packets = keyed_packets(name)
    reference = run(packets, tmp_path / "ref", set())
    assert reference, "the capture produced no records"
    n = len(packets)
    restarts = {n // 7, n // 3, n // 2, (2 * n) // 3, n - 2} - {0}
    restored = run(packets, tmp_path / "restored", restarts)
    assert restored == reference


def test_restore_at_every_packet_of_a_small_capture(tmp_path: Path) -> None:
    packets = keyed_packets("zeek__http__get.pcap")
    reference = run(packets, tmp_path / "ref", set())
    restored = run(packets, tmp_path / "every", set(range(1, len(packets))))
    assert restored == reference


def test_icmp_and_other_flows_restore_at_every_packet(tmp_path: Path) -> None:
    from tests.test_community_id import icmp_capture

    capture = icmp_capture(tmp_path / "icmp.pcap")
    packets = list(PacketSource().keyed(open_capture(capture)))
    reference = run(packets, tmp_path / "ref", set())
    flows = [r for r in reference if b'"type":"flow"' in r]
    assert len(flows) == 4 and any(b'"ip_bytes":84' in r for r in flows)
    restored = run(packets, tmp_path / "every", set(range(1, len(packets))))
    assert restored == reference
