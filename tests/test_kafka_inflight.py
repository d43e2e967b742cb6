"""streams/kafka_inflight.py (Kafka's buffer.memory for the probe): the bound holds, a full
buffer waits for acknowledgements, gives up after max_block, and a stop does not wait; on
Apache Kafka, the probe with a bound below one bundle keeps one bundle in flight and
delivers every packet."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
from kafka.errors import KafkaTimeoutError

from wirestream.probe.bundle import split_bundle
from wirestream.streams.kafka_inflight import InFlight

try:
    from tests import brokers
except ImportError:
    import brokers


def test_under_the_limit_nothing_waits_and_the_peak_is_kept() -> None:
    f = InFlight(limit=100, max_block=60)
    f.acquire(40)
    f.acquire(60)
    f.release(40)
    f.acquire(30)
    assert (f.bytes, f.peak, f.waits) == (90, 100, 0)


def test_a_full_buffer_waits_for_a_release() -> None:
    f = InFlight(limit=100, max_block=60)
    f.acquire(80)
    done = threading.Event()

    def send() -> None:
        f.acquire(50)
        done.set()

    t = threading.Thread(target=send, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while f.waits == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert f.waits == 1 and not done.is_set()  # it can only go on after a release
    f.release(80)
    assert done.wait(30)
    assert f.bytes == 50 and f.peak == 80


def test_gives_up_after_max_block() -> None:
    ticks = itertools.count(0, 5.0)  # each look at the clock: 5 s later
    f = InFlight(limit=100, max_block=12, clock=lambda: next(ticks))
    f.acquire(100)
    with pytest.raises(KafkaTimeoutError, match="not acknowledged"):
        f.acquire(1)
    assert f.bytes == 100


def test_a_record_larger_than_the_limit_goes_alone_and_a_stop_does_not_wait() -> None:
    f = InFlight(limit=10, max_block=60)
    f.acquire(500)  # nothing in flight: it goes
    assert f.bytes == 500
    stop = InFlight(limit=10, max_block=60, stopping=lambda: True)
    stop.acquire(8)
    stop.acquire(8)
    assert stop.bytes == 16


@pytest.mark.kafka
def test_probe_with_a_bound_below_one_bundle_sends_one_at_a_time(
    broker: brokers.Broker,
) -> None:
    capture = brokers.ROOT / "fixtures" / "pcaps" / "own_echo_post_chunked_upload.pcap"
    topic = brokers.unique("inflight") + ".packets"
    bundle = 32 << 10
    done = brokers.cli("probe", str(capture), "--bootstrap-servers", broker.bootstrap,
                       "--topic", topic, "--partitions", "2", "--bundle-bytes", str(bundle),
                       "--buffer-bytes", "1", "--log-format", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = next(json.loads(x) for x in done.stderr.splitlines() if "probe_finished" in x)
    records = brokers.read_all(broker.bootstrap, [topic])
    assert summary["unacknowledged"] == 0 and len(records) == summary["records"] > 3
    assert sum(len(split_bundle(r.value).spans) for r in records) == summary["packets"]
    assert summary["peak_unacknowledged_bytes"] == max(len(r.value) for r in records)
