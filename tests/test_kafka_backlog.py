"""A member started after a backlog of more than 200 MB consumes all of it.

The emulators used before could not: a consumer that started after ~100 MB had been
produced read nothing. On Apache Kafka the member must read the whole backlog, decode it
as replay does, and keep its memory bounded (the backlog is not held in memory).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from wirestream.streams.replay import replay_records
from wirestream.streams.serde import dumps_record

try:
    from tests import brokers
except ImportError:
    import brokers

pytestmark = pytest.mark.kafka

PARTITIONS = 4
BACKLOG_BYTES = 200 * 1000 * 1000
RSS_LIMIT_MIB = 400  # far below the backlog: the member streams it


def test_member_started_after_a_200_mb_backlog_consumes_all_of_it(
    broker: brokers.Broker, tmp_path: Path
) -> None:
    frames = brokers.http_keepalive_packets(
        flows=32, requests=48, body=128 * 1024, mss=1448, step_ns=5_000
    )
    capture = brokers.write_capture(tmp_path / "backlog.pcap", frames)
    assert os.path.getsize(capture) > BACKLOG_BYTES
    del frames

    bs = broker.bootstrap
    prefix = brokers.unique("backlog") + "."
    topic = prefix + "packets"
    app = brokers.unique("app")
    brokers.create_topic(bs, topic, PARTITIONS)
    probe = brokers.cli("probe", str(capture), "--bootstrap-servers", bs, "--topic", topic,
                        timeout=600)  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    produced = [
        e for e in map(_json, probe.stderr.splitlines()) if e.get("event") == "probe_finished"
    ]
    assert produced and produced[0]["unacknowledged"] == 0

    member = brokers.Member(bs, app, tmp_path / "state", "--input-topic", topic,
                            "--topic-prefix", prefix, "--exit-when-idle", "5")  # fmt: skip
    try:
        assert member.wait(600) == 0, member.log()[-3000:]
    finally:
        member.kill()
    stopped = member.events("member_stopped")[-1]
    want = Counter(dumps_record(r) for r in replay_records([str(capture)], partitions=PARTITIONS))
    assert stopped["input_records"] == produced[0]["records"]
    assert stopped["peak_rss_mib"] < RSS_LIMIT_MIB

    skip = {prefix + "packets", prefix + "deadletter"}
    outputs = [t for t in brokers.topics_with_prefix(bs, prefix) if t not in skip]
    records = brokers.read_all(bs, outputs, timeout=300)
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        by_id[json.loads(r.value)["id"]].add(r.value)
    assert all(len(v) == 1 for v in by_id.values())
    assert {r.value for r in records} == set(want)


def _json(line: str) -> dict:
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}
