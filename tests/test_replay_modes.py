"""Replay's modes give the same records: virtual partitions, worker processes, and the
packet-record round trip (what the Kafka mode consumes)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from wirestream.streams.replay import replay_records
from wirestream.streams.serde import dumps_record

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
CAPTURES = [
    str(FIXTURES / name)
    for name in (
        "own_wrk_small.pcap",
        "zeek__http__pipelined-requests.pcap",
        "zeek__wikipedia.pcap",
        "tcpflow__samplePcaps__jpegs.cap",
        "zeek__ipv4__fragmented-4.pcap",
    )
]


def as_multiset(records: list[dict]) -> Counter[bytes]:
    return Counter(dumps_record(r) for r in records)


def test_partitions_do_not_change_records_when_no_limit_is_hit() -> None:
    one = replay_records(CAPTURES, partitions=1)
    four = replay_records(CAPTURES, partitions=4)
    assert one and as_multiset(one) == as_multiset(four)


def test_worker_processes_give_the_records_of_one_process() -> None:
    single = replay_records(CAPTURES, partitions=4)
    parallel = replay_records(CAPTURES, partitions=4, workers=2)
    assert single and as_multiset(parallel) == as_multiset(single)
    # Grouped by partition, each partition in its own order: a stable layout.
    again = replay_records(CAPTURES, partitions=4, workers=3)
    assert [dumps_record(r) for r in again] == [dumps_record(r) for r in parallel]


def test_processing_through_packet_records_changes_nothing() -> None:
    direct = replay_records(CAPTURES)
    via_records = replay_records(CAPTURES, verify_records=True)
    assert [dumps_record(r) for r in via_records] == [dumps_record(r) for r in direct]
