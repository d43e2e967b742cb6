"""probe -> broker -> one `run` member: the output equals replay, record for record.

The oracle is `wirestream replay` (replay_records) on the same captures with as many
virtual partitions as the topic has: the Kafka mode must make the same decisions.
Runs on Apache Kafka (tests/brokers.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from wirestream.probe.bundle import is_bundle, split_bundle
from wirestream.probe.capture import open_capture
from wirestream.probe.flowkey import kafka_partition
from wirestream.probe.source import PacketSource
from wirestream.streams.replay import replay_records
from wirestream.streams.serde import dumps_record

try:
    from tests import brokers
except ImportError:
    import brokers

pytestmark = pytest.mark.kafka

PCAPS = Path(__file__).resolve().parents[1] / "fixtures" / "pcaps"
CAPTURES = [
    "own_nginx_keepalive_multi.pcap",
    "zeek__http__pipelined-requests.pcap",
    "own_wrk_small.pcap",
]
PARTITIONS = 4


def expected_records(paths: list[str], partitions: int) -> Counter[bytes]:
    return Counter(dumps_record(r) for r in replay_records(paths, partitions=partitions))


def keyed_in_order(paths: list[str]) -> list[tuple[bytes, bytes]]:
    """(flow key, packet record) of every packet the probe sends, in capture order."""
    source = PacketSource()
    out = []
    for path in paths:
        with open_capture(path) as capture:
            out += [(kp.key, kp.record()) for kp in source.keyed(capture)]
    return out


def keyed_packets(paths: list[str]) -> Counter[tuple[bytes, bytes]]:
    return Counter(keyed_in_order(paths))


def output_topics(bootstrap: str, prefix: str) -> list[str]:
    skip = {prefix + "packets", prefix + "deadletter"}
    return [t for t in brokers.topics_with_prefix(bootstrap, prefix) if t not in skip]


def bundled_records(packets: list[Any]) -> list[tuple[int, bytes]]:
    """(partition, packet record) of every record in the bundles, in topic order."""
    out = []
    for p in packets:
        assert is_bundle(p.value)
        spans, damage = split_bundle(p.value)
        assert damage == [] and spans
        out += [(p.partition, p.value[a:b]) for a, b in spans]
    return out


@pytest.mark.parametrize(
    ("layout", "guarantee"),
    [("bundle", "at_least_once"), ("bundle", "exactly_once"), ("packet", "at_least_once")],
)
def test_probe_then_run_equals_replay(
    broker: brokers.Broker, tmp_path: Path, layout: str, guarantee: str
) -> None:
    bs = broker.bootstrap
    prefix = brokers.unique("e2e") + "."
    topic = prefix + "packets"
    paths = [str(PCAPS / name) for name in CAPTURES]

    before_ms = time.time() * 1000
    done = brokers.cli(
        "probe", *paths, "--bootstrap-servers", bs, "--topic", topic,
        "--partitions", str(PARTITIONS), "--layout", layout, "--bundle-bytes", "20000",
    )  # fmt: skip
    after_ms = time.time() * 1000
    assert done.returncode == 0, done.stderr

    app = brokers.unique("app")
    member = brokers.Member(
        bs, app, tmp_path / "state",
        "--input-topic", topic, "--topic-prefix", prefix, "--exit-when-idle", "3",
        "--processing-guarantee", guarantee,
    )  # fmt: skip
    assert member.wait(120) == 0, member.log()[-3000:]

    records = brokers.read_all(
        bs, output_topics(bs, prefix), read_committed=guarantee == "exactly_once"
    )
    got = Counter(r.value for r in records)
    want = expected_records(paths, PARTITIONS)
    assert sum(want.values()) > 100
    assert got == want, member.log()[-4000:]
    for r in records:
        decoded = json.loads(r.value)
        assert r.key == decoded["uid"].encode()
        assert r.topic == prefix + decoded["type"]

    # The packets topic: every keyed packet once, partitioned by Kafka's default
    # partitioner on the flow key, stamped with the time of producing.
    packets = brokers.read_all(bs, [topic])
    for p in packets:
        assert p.partition == (kafka_python_murmur2(p.key) & 0x7FFFFFFF) % PARTITIONS
        assert before_ms - 2000 <= p.timestamp <= after_ms + 2000
    want_packets = keyed_packets(paths)
    if layout == "packet":
        assert Counter((p.key, p.value) for p in packets) == want_packets
    else:
        # Bundles: every packet once, in the partition of its own flow key, in capture
        # order within its partition; several packets per record.
        key_of = {value: key for key, value in want_packets}
        entries = bundled_records(packets)
        assert len(packets) < len(entries) / 3
        assert Counter((key_of[v], v) for _, v in entries) == want_packets
        for partition, value in entries:
            assert partition == (kafka_python_murmur2(key_of[value]) & 0x7FFFFFFF) % PARTITIONS
        in_order = [(kafka_partition(k, PARTITIONS), v) for k, v in keyed_in_order(paths)]
        for partition in range(PARTITIONS):
            got_order = [v for p, v in entries if p == partition]
            assert got_order == [v for p, v in in_order if p == partition]

    ready = member.events("partition_ready")
    assert sorted(e["partition"] for e in ready) == list(range(PARTITIONS))
    # The changelog exists, partitioned like the input.
    changelog = brokers.read_all(bs, [f"{app}-flows-changelog"])
    assert {r.partition for r in changelog} <= set(range(PARTITIONS))
    assert changelog and all(r.key for r in changelog)


def test_probe_truncated_capture_exits_1_after_producing_the_rest(
    broker: brokers.Broker, tmp_path: Path
) -> None:
    bs = broker.bootstrap
    good = PCAPS / "own_wrk_small.pcap"
    damaged = tmp_path / "damaged.pcap"
    data = good.read_bytes()
    damaged.write_bytes(data[: len(data) * 2 // 3])
    topic = brokers.unique("trunc") + ".packets"

    done = brokers.cli(
        "probe", str(damaged), "--bootstrap-servers", bs, "--topic", topic, "--partitions", "2"
    )
    assert done.returncode == 1
    errors = [json.loads(x) for x in done.stderr.splitlines() if '"capture_error"' in x]
    assert len(errors) == 1 and "truncated" in errors[0]["error"]

    # Everything before the damage was produced.
    source = PacketSource()
    before: Counter[bytes] = Counter()
    with open_capture(damaged) as capture:
        try:
            for kp in source.keyed(capture):
                before[kp.record()] += 1
        except Exception:
            pass
    assert sum(before.values()) > 0
    got = bundled_records(brokers.read_all(bs, [topic]))
    assert Counter(v for _, v in got) == before


def test_probe_requires_bootstrap_and_input(tmp_path: Path) -> None:
    env = brokers.env_without_wirestream()
    done = subprocess.run(
        brokers.wirestream("probe", str(PCAPS / "own_wrk_small.pcap")),
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "--bootstrap-servers" in done.stderr
    done = subprocess.run(
        brokers.wirestream("probe", "--bootstrap-servers", "127.0.0.1:1"),
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "--interface" in done.stderr
