"""What kafka-python alone costs to read a topic (not a test; bench/kafka_bench.py runs it).

    .venv/bin/python bench/bare_consumer.py HOST:PORT TOPIC {shipped,reads,copies}

Reads every record of TOPIC from the beginning with a plain KafkaConsumer and prints one
JSON line: records, bytes, and the process's CPU seconds spent reading (start-up and
connecting excluded). Modes: `shipped` = kafka-python as installed; `reads` = with the
member's socket read size (streams/kafka_reads.py); `copies` = that and the member's
fewer copies of fetched bytes (streams/kafka_copies.py), i.e. what a member's consumer does.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from kafka import KafkaConsumer, TopicPartition

from wirestream.streams import kafka_copies, kafka_reads
from wirestream.streams.kafka_clients import CHECK_CRCS
from wirestream.streams.kafka_settings import RunSettings


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    bootstrap, topic, mode = sys.argv[1:4]
    kafka_copies.uninstall()
    if mode in ("reads", "copies"):
        member = RunSettings(bootstrap_servers="-", application_id="-")
        kafka_reads.read_in(member.socket_read_bytes)
    if mode == "copies":
        kafka_copies.install()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             check_crcs=CHECK_CRCS, max_poll_records=2_000)  # fmt: skip
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    records = size = 0
    started = _cpu()
    deadline = time.monotonic() + 300
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        if time.monotonic() > deadline:
            raise SystemExit("bare_consumer: could not read the topic to its end in 300 s")
        for batch in consumer.poll(timeout_ms=200).values():
            records += len(batch)
            size += sum(len(r.value or b"") for r in batch)
    cpu = _cpu() - started
    consumer.close()
    print(json.dumps({"mode": mode, "records": records, "bytes": size, "cpu": round(cpu, 3)}))


if __name__ == "__main__":
    main()
