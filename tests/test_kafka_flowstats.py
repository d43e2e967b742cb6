"""The flow statistics upsert topic and the per-protocol substreams, exactly-once, on Apache Kafka.

Oracles: the `flow` records of replay on the same captures (the final statistics of each
flow: after --exit-when-idle every flow is closed, as at the end of a replay), and the
input topic itself for the substreams (each record once, in the topic of its IP protocol
as the packet record's own frame says, same key, same partition).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from wirestream.probe.bundle import split_bundle
from wirestream.probe.parse import parse_frame
from wirestream.probe.record import decode_record
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
    "zeek__dns__mdns.pcap",  # IGMP and ICMPv6 besides UDP: the `other` substream
    "zeek__dns-edns-ecs.pcap",
]
PARTITIONS = 3


def _substream(value: bytes) -> str:
    rec = decode_record(value)
    pkt = parse_frame(rec.linktype, rec.frame, rec.ts_ns, rec.orig_len)
    return {6: "tcp", 17: "udp"}.get(pkt.proto, "other")


def _final_stats(flow: dict[str, Any]) -> dict[str, Any]:
    """The flow record's fields the table keeps."""
    keep = ("uid", "proto", "client", "server", "ts_start", "ts_end", "state", "close_reason",
            "service")  # fmt: skip
    out = {k: flow[k] for k in keep}
    for direction in ("client_to_server", "server_to_client"):
        d = flow[direction]
        out[direction] = {k: d[k] for k in ("packets", "bytes", "missed_bytes")}
    out["open"] = False
    return out


def test_flowstats_topic_and_substreams_exactly_once(
    broker: brokers.Broker, tmp_path: Path
) -> None:
    bs = broker.bootstrap
    prefix = brokers.unique("fs") + "."
    topic = prefix + "packets"
    paths = [str(PCAPS / name) for name in CAPTURES]
    brokers.create_topic(bs, topic, PARTITIONS)
    done = brokers.cli("probe", *paths, "--bootstrap-servers", bs, "--topic", topic)
    assert done.returncode == 0, done.stderr

    member = brokers.Member(
        bs, brokers.unique("app"), tmp_path / "state",
        "--input-topic", topic, "--topic-prefix", prefix, "--exit-when-idle", "3",
        "--processing-guarantee", "exactly_once", "--substreams", "--flow-stats-topic",
        "--flow-stats-retention", "1e10",
    )  # fmt: skip
    assert member.wait(120) == 0, member.log()[-3000:]

    # Substreams: every input packet once, in its protocol's topic and the input's
    # partition, in input order; a bundle per protocol, keyed by its first packet's flow.
    def entries(records: list[Any]) -> list[tuple[str, int, bytes, bytes]]:
        out = []
        for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
            spans, damage = split_bundle(r.value)
            assert spans and not damage
            out += [(r.topic, r.partition, r.key, r.value[a:b]) for a, b in spans]
        return out

    packets = entries(brokers.read_all(bs, [topic]))
    want = [(f"{topic}.{_substream(v)}", p, v) for _, p, _, v in packets]
    assert {t for t, *_ in want} == {f"{topic}.{s}" for s in ("tcp", "udp", "other")}
    subs = [f"{topic}.{s}" for s in ("tcp", "udp", "other")]
    got = entries(brokers.read_all(bs, subs, read_committed=True))
    assert Counter((t, p, v) for t, p, _, v in got) == Counter(want)
    for t, _p, key, _ in got:
        assert t == f"{topic}.{ {6: 'tcp', 17: 'udp'}.get(key[2], 'other') }"
    for sub in subs:
        for p in range(PARTITIONS):
            order = [v for t, q, _, v in got if (t, q) == (sub, p)]
            assert order == [v for t, q, v in want if (t, q) == (sub, p)]

    # The upsert topic: the last value of each uid is the flow's final statistics.
    replayed = replay_records(paths, partitions=PARTITIONS)
    flows = {r["uid"]: r for r in replayed if r["type"] == "flow"}
    latest: dict[bytes, Any] = {}
    stats = brokers.read_all(bs, [prefix + "flowstats"], read_committed=True)
    for r in sorted(stats, key=lambda r: (r.partition, r.offset)):
        latest[r.key] = r.value
    assert {k.decode() for k in latest} == set(flows)
    for uid, flow in flows.items():
        assert json.loads(latest[uid.encode()]) == _final_stats(flow)

    # Outputs are unaffected by the features.
    skip = {topic, *subs, prefix + "deadletter", prefix + "flowstats"}
    outputs = [t for t in brokers.topics_with_prefix(bs, prefix) if t not in skip]
    got_records = Counter(r.value for r in brokers.read_all(bs, outputs, read_committed=True))
    assert got_records == Counter(dumps_record(r) for r in replayed)
