"""Consumer-group behaviour: a member killed mid-stream, and a stop/restart of every member.

Input: synthetic keep-alive HTTP flows with large bodies, interleaved so that every flow
is open from the first half of the capture to the second. The oracle is replay_records()
of the same capture with as many virtual partitions as the topic.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from wirestream.streams.kafka_topics import changelog_topic
from wirestream.streams.replay import replay_records
from wirestream.streams.serde import dumps_record

try:
    from tests import brokers
except ImportError:
    import brokers

pytestmark = pytest.mark.kafka

PARTITIONS = 4
STEP_NS = 250_000  # capture time between packets: --pace plays the second half in ~1.5 s


@pytest.fixture(scope="module")
def capture_halves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two pcaps (first and second half of the packets) and the expected records."""
    frames = brokers.http_keepalive_packets(
        flows=24, requests=16, body=32 * 1024, mss=1200, step_ns=STEP_NS
    )
    half = len(frames) // 2
    d = tmp_path_factory.mktemp("capture")
    part1 = brokers.write_capture(d / "part1.pcap", frames[:half])
    part2 = brokers.write_capture(d / "part2.pcap", frames[half:])
    paths = [str(part1), str(part2)]
    want = Counter(dumps_record(r) for r in replay_records(paths, partitions=PARTITIONS))
    assert max(want.values()) == 1  # replay itself produces every record once
    return {"part1": str(part1), "part2": str(part2), "n1": half, "n2": len(frames) - half,
            "want": want}  # fmt: skip


def _outputs(bootstrap: str, prefix: str, read_committed: bool) -> list[Any]:
    skip = {prefix + "packets", prefix + "deadletter"}
    topics = [t for t in brokers.topics_with_prefix(bootstrap, prefix) if t not in skip]
    return brokers.read_all(bootstrap, topics, read_committed=read_committed)


def _assigned(member: brokers.Member) -> set[int]:
    """Partitions the member owns now, according to its log."""
    owned: set[int] = set()
    for event in member.events():
        if event.get("event") == "partition_ready":
            owned.add(event["partition"])
        elif event.get("event") in ("partitions_revoked", "partitions_lost"):
            owned -= set(event["partitions"])
    return owned


def _wait_split(members: list[brokers.Member], timeout: float = 60.0) -> None:
    """Until every member owns some partitions and together they own all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owned = [_assigned(m) for m in members]
        if all(owned) and set().union(*owned) == set(range(PARTITIONS)):
            return
        time.sleep(0.2)
    logs = "\n".join(m.log()[-1500:] for m in members)
    raise AssertionError(f"partitions never split between the members:\n{logs}")


def _produced(probe: subprocess.Popen[str]) -> int:
    """Kafka records a finished probe produced (bundles: fewer than packets)."""
    assert probe.stderr is not None
    for line in probe.stderr.read().splitlines():
        if '"probe_finished"' in line:
            return int(json.loads(line)["records"])
    raise AssertionError("the probe did not finish")


def _probe(bootstrap: str, topic: str, path: str, *extra: str) -> subprocess.Popen[str]:
    # Small bundles: the kill lands between many input records, mid-stream.
    args = ["probe", path, "--bootstrap-servers", bootstrap, "--topic", topic,
            "--bundle-bytes", "8000"]  # fmt: skip
    return subprocess.Popen(
        brokers.wirestream(*args, "--log-format", "json", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=brokers.ROOT,
    )


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_member_killed_midstream_survivor_finishes(
    guarantee: str, capture_halves: dict[str, Any], broker: brokers.Broker, tmp_path: Path
) -> None:
    """SIGKILL, no goodbye: the broker's coordinator expires the victim's session (6 s) by
    itself, and the survivor takes its partitions over from the changelogs."""
    bs = broker.bootstrap
    prefix = brokers.unique("kill") + "."
    topic = prefix + "packets"
    app = brokers.unique("app")
    brokers.create_topic(bs, topic, PARTITIONS)
    args = ("--input-topic", topic, "--topic-prefix", prefix, "--processing-guarantee",
            guarantee, "--exit-when-idle", "20", "--commit-interval", "0.5")  # fmt: skip
    victim = brokers.Member(bs, app, tmp_path / "a", *args)
    survivor = brokers.Member(bs, app, tmp_path / "b", *args)
    try:
        _wait_split([victim, survivor])
        victim_parts = _assigned(victim)

        first = _probe(bs, topic, capture_halves["part1"])
        assert first.wait(60) == 0, first.stderr
        n1 = _produced(first)
        brokers.wait_committed(bs, app, n1, timeout=180)

        second = _probe(bs, topic, capture_halves["part2"], "--pace")
        brokers.wait_committed(bs, app, n1 + 8, timeout=180)
        victim.kill()  # SIGKILL, mid-stream: uncommitted work, open transactions
        survivor.wait_event(
            "partitions_assigned", 60, where=lambda e: victim_parts <= set(e["partitions"])
        )
        assert second.wait(60) == 0, second.stderr

        assert survivor.wait(120) == 0, survivor.log()[-3000:]
    finally:
        victim.kill()
        survivor.kill()

    # The survivor took the victim's partitions over and restored them from the changelog.
    taken = [e for e in survivor.events("partition_ready") if e["partition"] in victim_parts]
    assert {e["partition"] for e in taken} == victim_parts
    assert all(e["restored_records"] > 0 and e["flows"] > 0 for e in taken)

    want: Counter[bytes] = capture_halves["want"]
    if guarantee == "exactly_once":
        got = Counter(r.value for r in _outputs(bs, prefix, read_committed=True))
        assert got == want  # nothing lost, nothing duplicated
    else:
        records = _outputs(bs, prefix, read_committed=False)
        by_id: dict[str, set[bytes]] = defaultdict(set)
        for r in records:
            by_id[json.loads(r.value)["id"]].add(r.value)
        assert all(len(v) == 1 for v in by_id.values())  # duplicates only as identical bytes
        assert {r.value for r in records} == set(want)  # nothing lost, nothing else


def test_stop_and_restart_resumes_from_checkpoints(
    broker: brokers.Broker, capture_halves: dict[str, Any], tmp_path: Path
) -> None:
    bs = broker.bootstrap
    prefix = brokers.unique("restart") + "."
    topic = prefix + "packets"
    app = brokers.unique("app")
    brokers.create_topic(bs, topic, PARTITIONS)
    args = ("--input-topic", topic, "--topic-prefix", prefix)

    members = [brokers.Member(bs, app, tmp_path / name, *args) for name in ("a", "b")]
    try:
        _wait_split(members)
        first = _probe(bs, topic, capture_halves["part1"])
        assert first.wait(60) == 0, first.stderr
        n1 = _produced(first)
        brokers.wait_committed(bs, app, n1, timeout=180)
        for m in members:
            m.signal(signal.SIGTERM)
        for m in members:
            assert m.wait(30) == 0, m.log()[-3000:]
    finally:
        for m in members:
            m.kill()
    # The member that took a partition last holds its newest state: the one that stops
    # second may take the first one's partitions over (restored, checkpointed) on its way out.
    last_ready = sorted(
        (e["timestamp"], e["partition"], name)
        for name, m in zip("ab", members, strict=True)
        for e in m.events("partition_ready")
    )
    owned_before: dict[str, set[int]] = {"a": set(), "b": set()}
    last_owner = {partition: name for _, partition, name in last_ready}
    for partition, name in last_owner.items():
        owned_before[name].add(partition)
    first_run_input = sum(m.events("member_stopped")[-1]["input_records"] for m in members)
    assert first_run_input == n1

    second = _probe(bs, topic, capture_halves["part2"])
    assert second.wait(60) == 0, second.stderr
    n2 = _produced(second)

    again = [
        brokers.Member(bs, app, tmp_path / name, *args, "--exit-when-idle", "4")
        for name in ("a", "b")
    ]
    try:
        for m in again:
            assert m.wait(120) == 0, m.log()[-3000:]
    finally:
        for m in again:
            m.kill()

    # No committed input processed again: the second run read exactly the second half.
    assert sum(m.events("end_of_input")[-1]["input_records"] for m in again) == n2
    # Partitions that went back to the member holding their state restored only the
    # changelog tail (nothing: every commit was checkpointed locally before the stop).
    # (Only the first assignment counts: the member that finishes first leaves the group,
    # and the other one may then take its partitions over for the end of input.)
    # A partition the other member of the second run had first (its join ran ahead while
    # this one's was slow) changed since this member's checkpoint: restoring its tail is
    # right, so it is not counted as given back. (Timestamps of one host's clock; a
    # partition is ready at one member only after the other gave it up.)
    ready_at: dict[int, list[tuple[str, str]]] = {}
    for name, m in zip("ab", again, strict=True):
        for e in m.events("partition_ready"):
            ready_at.setdefault(e["partition"], []).append((e["timestamp"], name))
    returned = 0
    for name, m in zip("ab", again, strict=True):
        events = m.events()
        first = next(i for i, e in enumerate(events) if e["event"] == "partitions_assigned")
        for event in events[:first]:
            if event["event"] != "partition_ready" or event["partition"] not in owned_before[name]:
                continue
            earlier = [n for t, n in ready_at[event["partition"]] if t < event["timestamp"]]
            if all(n == name for n in earlier):
                history = "\n".join(x.log()[-4000:] for x in (*members, *again))
                assert event["changelog_from"] > 0, history
                assert event["restored_records"] == 0, history
                returned += 1
    assert returned >= 2  # the state-aware assignor gave partitions back to their owners
    # And the output is replay's, without duplicates.
    got = Counter(r.value for r in _outputs(bs, prefix, read_committed=False))
    assert got == capture_halves["want"]


def _written_and_left(bootstrap: str, topic: str) -> tuple[int, int]:
    """Records ever written to `topic` (its end offsets: at-least-once writes no
    transaction markers) and records still in it (the log cleaner removes the rest)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        written = sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()
    return written, len(brokers.read_all(bootstrap, [topic]))


def test_restore_after_the_log_cleaner_compacted_the_changelog(
    broker: brokers.Broker, capture_halves: dict[str, Any], tmp_path: Path
) -> None:
    """The broker's log cleaner really compacts the changelog (small segments, a low dirty
    ratio, short tombstone retention) before a member with no local state restores from it:
    it gets the same state, and the output of both halves is replay's."""
    bs = broker.bootstrap
    prefix = brokers.unique("compact") + "."
    topic = prefix + "packets"
    app = brokers.unique("app")
    changelog = changelog_topic(app, "flows")
    brokers.create_topic(bs, topic, PARTITIONS)
    brokers.create_topic(bs, changelog, PARTITIONS, {
        "cleanup.policy": "compact", "segment.ms": "100", "segment.bytes": "1048576",
        "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "100",
        "max.message.bytes": str(8 * 1024 * 1024),
    })  # fmt: skip
    # Commits every 0.1 s write each open flow's state many times: much to compact away.
    args = ("--input-topic", topic, "--topic-prefix", prefix, "--commit-interval", "0.1")
    a = brokers.Member(bs, app, tmp_path / "a", *args)
    try:  # stopped, not idle: its flows stay open in the changelog (idleness would end them)
        # Paced, one record per packet, into a member already consuming: many commits,
        # each writing the open flows again.
        a.wait_event("partitions_assigned", 60)
        first = _probe(bs, topic, capture_halves["part1"], "--pace", "--layout", "packet")
        assert first.wait(60) == 0, first.stderr
        n1 = _produced(first)  # Kafka records (bundles), not packets
        brokers.wait_committed(bs, app, n1, timeout=120)
        a.signal(signal.SIGTERM)
        assert a.wait(60) == 0, a.log()[-3000:]
    finally:
        a.kill()
    deadline = time.monotonic() + 120
    while True:  # until the cleaner has removed superseded states and tombstoned flows
        written, left = _written_and_left(bs, changelog)
        if left < written:
            break
        assert time.monotonic() < deadline, f"the log cleaner never ran: {broker.log_tail()}"
        time.sleep(0.5)

    second = _probe(bs, topic, capture_halves["part2"])
    assert second.wait(60) == 0, second.stderr
    b = brokers.Member(bs, app, tmp_path / "b", *args, "--exit-when-idle", "4")  # no state
    try:
        assert b.wait(120) == 0, b.log()[-3000:]
    finally:
        b.kill()
    ready = b.events("partition_ready")
    assert {e["partition"] for e in ready} == set(range(PARTITIONS))
    assert sum(e["restored_records"] for e in ready) <= left < written
    assert any(e["flows"] > 0 for e in ready)  # flows open across the halves were restored
    got = Counter(r.value for r in _outputs(bs, prefix, read_committed=False))
    assert got == capture_halves["want"]  # nothing lost, nothing repeated
