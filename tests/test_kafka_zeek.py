"""--zeek-topics in Kafka mode: a member writes each Zeek JSON log to its own topic,
`<prefix>zeek-conn`, `<prefix>zeek-http`, ... (zeek-kafka's layout), keyed by the flow's
uid, with the same lines `replay --format zeek-json` writes to conn.log, http.log, ..."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from wirestream.runner import main

try:
    from tests import brokers
except ImportError:
    import brokers

pytestmark = pytest.mark.kafka

PCAPS = Path(__file__).resolve().parents[1] / "fixtures" / "pcaps"
CAPTURES = ["zeek__http__get.pcap", "zeek__dns__long-connection.pcap", "zeek__tls__tls1.2.pcap"]


def test_member_writes_zeek_json_logs_to_one_topic_per_log(
    broker: brokers.Broker, tmp_path: Path
) -> None:
    bs = broker.bootstrap
    prefix = brokers.unique("zeek") + "."
    topic = prefix + "packets"
    paths = [str(PCAPS / name) for name in CAPTURES]
    done = brokers.cli(
        "probe", *paths, "--bootstrap-servers", bs, "--topic", topic, "--partitions", "2"
    )
    assert done.returncode == 0, done.stderr
    member = brokers.Member(
        bs, brokers.unique("app"), tmp_path / "state",
        "--input-topic", topic, "--topic-prefix", prefix, "--exit-when-idle", "3",
        "--zeek-topics",
    )  # fmt: skip
    assert member.wait(120) == 0, member.log()[-3000:]

    logs = tmp_path / "logs"
    args = ["--format", "zeek-json", "-o", str(logs), "--partitions", "2", "--no-progress"]
    assert main(["replay", *paths, *args]) == 0  # as many partitions as the topic
    for log in sorted(logs.iterdir()):
        records = brokers.read_all(bs, [f"{prefix}zeek-{log.stem}"])
        want = Counter(line.encode() for line in log.read_text().splitlines())
        assert want and Counter(r.value for r in records) == want, log.stem
        # Keyed by the flow's uid (x509.log lines carry none: keyed by their flow's too).
        for r in records:
            line = json.loads(r.value)
            assert r.key == line["uid"].encode() if "uid" in line else r.key.startswith(b"C")
