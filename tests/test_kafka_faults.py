"""Broker and state-directory faults in the Kafka mode (issue 7, "broken input everywhere").

- Nothing listens on the bootstrap port: `probe` and `run` retry with backoff for
  `--connect-timeout`, then exit 3 with one error line naming the servers and what to do.
- The broker is stopped mid-run and restarted on the same port and data directory while a
  probe produces and a member consumes: both retry and finish; the packets topic holds every
  packet exactly once and the member's output equals replay (read_committed for
  exactly-once; at-least-once may repeat records, byte-identical).
- The broker stays away: the probe gives up after `--reconnect-timeout`, exit 3, and says
  how many records it produced and how many the broker acknowledged (all in the topic).
- The state directory is not writable, is used by another member, or holds a store another
  process has open: exit 2 before any broker call, naming the directory and what to do.

The broker is an Apache Kafka of the module's own (the tests stop it with SIGTERM and
start it again on the same ports and data directory, as an operator's restart does).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wirestream.probe.capture import open_capture
from wirestream.probe.source import PacketSource
from wirestream.state.store import StateStore
from wirestream.streams.replay import replay_records
from wirestream.streams.serde import dumps_record

try:
    from tests import brokers
except ImportError:
    import brokers

pytestmark = pytest.mark.kafka

PARTITIONS = 4
STEP_NS = 4_000_000  # capture time between packets: --pace plays the second half in ~9 s
RSS_LIMIT_MIB = 300  # a member or probe through an outage (measured: docs/hostile-input.md)


def _events(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def _popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        brokers.wirestream(*args, "--log-format", "json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=brokers.ROOT,
        env=env if env is not None else brokers.env_without_wirestream(),
    )


@pytest.fixture(scope="module")
def fault_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[brokers.Broker]:
    """An Apache Kafka of our own: the tests stop and restart it."""
    with brokers.running_broker(tmp_path_factory.mktemp("fault-kafka")) as broker:
        yield broker


@pytest.fixture
def broker(fault_broker: brokers.Broker) -> brokers.Broker:
    if fault_broker.proc is None or fault_broker.proc.poll() is not None:  # left stopped
        brokers.restart_broker(fault_broker)
    return fault_broker


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Keep-alive HTTP flows open across both halves; replay's records and the keyed packets
    of the whole capture are the oracles."""
    frames = brokers.http_keepalive_packets(
        flows=16, requests=12, body=24 * 1024, mss=1200, step_ns=STEP_NS
    )
    half = len(frames) // 2
    d = tmp_path_factory.mktemp("fault-capture")
    paths = [
        str(brokers.write_capture(d / "part1.pcap", frames[:half])),
        str(brokers.write_capture(d / "part2.pcap", frames[half:])),
    ]
    want = Counter(dumps_record(r) for r in replay_records(paths, partitions=PARTITIONS))
    assert max(want.values()) == 1
    packets: Counter[tuple[bytes, bytes]] = Counter()
    source = PacketSource()
    for path in paths:
        with open_capture(path) as cap:
            for kp in source.keyed(cap):
                packets[(kp.key, kp.record())] += 1
    return {"paths": paths, "n1": half, "want": want, "packets": packets}


# --------------------------------------------------------------------------- unreachable


def test_unreachable_broker_at_start_is_one_clear_error(tmp_path: Path) -> None:
    """probe and run against a port where nothing listens: bounded retries with backoff,
    then exit 3 with one error line naming the servers and the options to check."""
    servers = f"127.0.0.1:{brokers.free_port()}"
    pcap = str(brokers.ROOT / "fixtures" / "pcaps" / "own_wrk_small.pcap")
    common = ("--bootstrap-servers", servers, "--connect-timeout", "3")
    started = time.monotonic()
    procs = {
        "probe": _popen("probe", pcap, *common),
        "run": _popen("run", *common, "--application-id", "a", "--state-dir", str(tmp_path)),
    }
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=60)
        elapsed = time.monotonic() - started
        assert proc.returncode == 3, (name, stderr[-2000:])
        assert "Traceback" not in stderr
        assert 3 <= elapsed < 20, (name, elapsed)  # bounded by --connect-timeout
        events = _events(stderr)
        errors = [e for e in events if e.get("level") == "error"]
        assert len(errors) == 1, (name, errors)
        message = errors[0]["error"]
        assert "\n" not in message
        for needed in (servers, "--bootstrap-servers", "--connect-timeout", "refused"):
            assert needed in message, (name, message)
        retries = [e for e in events if e.get("event") == "broker_unreachable"]
        assert retries and all(0 < e["retry_in"] <= 6 for e in retries), (name, events)


def test_bad_broker_options_name_the_option(tmp_path: Path) -> None:
    env = brokers.env_without_wirestream() | {"WIRESTREAM_RECONNECT_TIMEOUT": "soon"}
    cases = [
        (("probe", "x.pcap", "--bootstrap-servers", "h:1", "--connect-timeout", "0"), None,
         "--connect-timeout"),
        (("run", "--bootstrap-servers", "h:1", "--application-id", "a",
          "--connect-timeout", "-1"), None, "--connect-timeout"),
        (("run", "--bootstrap-servers", "h:1", "--application-id", "a"), env,
         "WIRESTREAM_RECONNECT_TIMEOUT"),
    ]  # fmt: skip
    for args, case_env, option in cases:
        done = subprocess.run(
            brokers.wirestream(*args), capture_output=True, text=True, timeout=60,
            cwd=brokers.ROOT, env=case_env or brokers.env_without_wirestream(),
        )  # fmt: skip
        assert done.returncode == 2, (args, done.stderr[-1000:])
        assert option in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- broker lost


def _wait_records(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> None:
    """Until the topic holds `count` records."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        deadline = time.monotonic() + timeout
        while sum(consumer.end_offsets(tps).values()) < count:
            assert time.monotonic() < deadline, f"{topic}: fewer than {count} records"
            time.sleep(0.05)
    finally:
        consumer.close()


def _outage(broker: brokers.Broker, sig: int, down: float) -> None:
    """Stop the broker while the clients run (SIGTERM: a clean shutdown; SIGKILL: a crash,
    the log recovered at the next start), keep it away for `down` seconds, start it again
    on the same ports and data directory."""
    brokers.stop_for_restart(broker, sig)
    time.sleep(down)
    brokers.restart_broker(broker)


@pytest.mark.parametrize(
    ("guarantee", "sig", "down"),
    # The crash keeps the broker away longer than the members' session timeout (6 s).
    [("at_least_once", signal.SIGTERM, 3.0), ("exactly_once", signal.SIGKILL, 8.0)],
    ids=["at_least_once-sigterm", "exactly_once-sigkill"],
)
def test_broker_restart_mid_run_loses_nothing(
    broker: brokers.Broker,
    capture: dict[str, Any],
    guarantee: str,
    sig: int,
    down: float,
    tmp_path: Path,
) -> None:
    bs = broker.bootstrap
    prefix = brokers.unique("lost") + "."
    topic = prefix + "packets"
    app = brokers.unique("app")
    part1, part2 = capture["paths"]
    # The per-packet layout: this test counts and compares records packet by packet (the
    # bundles go through a member's crash in test_kafka_group).
    probe_args = ("--bootstrap-servers", bs, "--topic", topic, "--partitions", str(PARTITIONS),
                  "--layout", "packet")  # fmt: skip
    first = brokers.cli("probe", part1, *probe_args)
    assert first.returncode == 0, first.stderr[-2000:]

    member = brokers.Member(
        bs, app, tmp_path / "state",
        "--input-topic", topic, "--topic-prefix", prefix, "--processing-guarantee", guarantee,
        # kafka-python may ride the outage out silently (no error to see): the member then
        # counts it as idle time, broker restart included, so the bound is generous.
        # A long commit interval: at the stop there is uncommitted work (open transactions).
        "--exit-when-idle", "30", "--commit-interval", "2", "--reconnect-timeout", "120",
    )  # fmt: skip
    second: subprocess.Popen[str] | None = None
    try:
        brokers.wait_committed(bs, app, capture["n1"], timeout=180)  # mid-run: flows open
        second = _popen("probe", part2, *probe_args, "--pace")  # and input arriving
        _wait_records(bs, topic, capture["n1"] + 400)
        # The outage comes while the member consumes (and, as a rule, while the paced probe
        # still produces: it plays ~9 s of capture time; a probe already done is no failure).
        assert member.proc.poll() is None
        _outage(broker, sig, down)
        _, probe_err = second.communicate(timeout=120)
        assert second.returncode == 0, probe_err[-3000:]
        assert member.wait(150) == 0, member.log()[-4000:]
    finally:
        member.kill()
        if second is not None and second.poll() is None:
            second.kill()
    assert "Traceback" not in member.log()

    # The probe retried through the outage: every packet exactly once (idempotent producer).
    packets = brokers.read_all(bs, [topic])
    assert Counter((p.key, p.value) for p in packets) == capture["packets"]

    # Apache Kafka keeps the group and its offsets across a clean restart: the member may
    # ride the outage out on reconnects alone, or lose its group, go back to the last
    # commit (the work since then done again) and resume from the restored state.
    events = member.events()
    seen = {e.get("event") for e in events}
    ready = [e for e in events if e.get("event") == "partition_ready"]
    total = sum(capture["packets"].values())
    stopped = events[-1]
    assert stopped["event"] == "member_stopped" and stopped["input_records"] >= total
    if seen & {"partitions_lost", "commit_failed"}:  # it rewound: state restored again
        assert len(ready) > PARTITIONS and any(e["flows"] > 0 for e in ready[PARTITIONS:])
    assert stopped["peak_rss_mib"] < RSS_LIMIT_MIB
    (finished,) = [e for e in _events(probe_err) if e.get("event") == "probe_finished"]
    assert finished["unacknowledged"] == 0 and finished["peak_rss_mib"] < RSS_LIMIT_MIB

    skip = {prefix + "packets", prefix + "deadletter"}
    outputs = [t for t in brokers.topics_with_prefix(bs, prefix) if t not in skip]
    want: Counter[bytes] = capture["want"]
    if guarantee == "exactly_once":
        got = Counter(r.value for r in brokers.read_all(bs, outputs, read_committed=True))
        assert got == want, _difference(set(got), set(want), member)  # nothing lost or repeated
    else:
        records = brokers.read_all(bs, outputs)
        by_id: dict[str, set[bytes]] = defaultdict(set)
        for r in records:
            by_id[json.loads(r.value)["id"]].add(r.value)
        assert all(len(v) == 1 for v in by_id.values())  # repeats are byte-identical
        got = {r.value for r in records}
        assert got == set(want), _difference(got, set(want), member)  # nothing lost, nothing else


def _difference(got: set[bytes], want: set[bytes], member: brokers.Member) -> str:
    missing = Counter(json.loads(v)["type"] for v in want - got)
    extra = Counter(json.loads(v)["type"] for v in got - want)
    return f"missing {dict(missing)}, unexpected {dict(extra)}\n{member.log()[-3000:]}"


def test_probe_gives_up_after_reconnect_timeout_and_counts(
    broker: brokers.Broker, capture: dict[str, Any]
) -> None:
    """The broker does not come back in time: exit 3, one error line with the counts; the
    topic holds exactly the records the probe says were acknowledged."""
    bs = broker.bootstrap
    topic = brokers.unique("giveup") + ".packets"
    probe = _popen(
        "probe", *capture["paths"], "--bootstrap-servers", bs, "--topic", topic,
        "--partitions", str(PARTITIONS), "--pace", "--reconnect-timeout", "3",
        "--layout", "packet",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until records arrive
            if brokers.topics_with_prefix(bs, topic) and brokers.read_all(bs, [topic]):
                break
            time.sleep(0.1)
        assert probe.poll() is None
        brokers.stop_for_restart(broker, signal.SIGTERM)
        _, stderr = probe.communicate(timeout=60)
    finally:
        if probe.poll() is None:
            probe.kill()
        if broker.proc is None or broker.proc.poll() is not None:
            brokers.restart_broker(broker)
    assert probe.returncode == 3, stderr[-3000:]
    assert "Traceback" not in stderr
    events = _events(stderr)
    (error,) = [e for e in events if e.get("level") == "error"]
    assert error["event"] == "broker_lost"
    assert "--reconnect-timeout" in error["error"] and bs in error["error"]
    assert 0 < error["records"] <= sum(capture["packets"].values())
    assert error["unacknowledged"] == error["records"] - error["acknowledged"] > 0
    # Nothing dropped without being reported: every acknowledged record is in the topic;
    # unacknowledged ones may be (the broker can die after storing, before answering).
    stored = Counter((p.key, p.value) for p in brokers.read_all(bs, [topic]))
    assert error["acknowledged"] <= sum(stored.values()) <= error["records"]
    assert not stored - capture["packets"]


# --------------------------------------------------------------------------- state dir


def _run(state_dir: Path, *extra: str, app: str = "app") -> subprocess.Popen[str]:
    return _popen(
        "run", "--bootstrap-servers", f"127.0.0.1:{brokers.free_port()}",
        "--application-id", app, "--state-dir", str(state_dir), "--connect-timeout", "20",
        *extra,
    )  # fmt: skip


def _state_error(proc: subprocess.Popen[str]) -> str:
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    (error,) = [e for e in _events(stderr) if e.get("level") == "error"]
    assert error["event"] == "state_dir_unusable"
    return str(error["error"])


def test_state_dir_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    message = _state_error(_run(blocker / "state"))
    assert str(blocker / "state" / "app") in message and "--state-dir" in message


def test_state_dir_used_by_another_member(tmp_path: Path) -> None:
    """The first member holds the directory (it is still trying to reach the brokers); the
    second refuses at once, naming the directory and the first one's pid."""
    state = tmp_path / "state"
    first = _run(state)
    try:
        deadline = time.monotonic() + 20
        lock = state / "app" / ".lock"
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.05)
        message = _state_error(_run(state))
        assert str(state / "app") in message
        assert f"another wirestream process (pid {first.pid})" in message
        assert "--state-dir" in message
    finally:
        first.kill()
        first.wait()


def test_store_locked_by_another_process(tmp_path: Path) -> None:
    """A RocksDB store of the directory is open elsewhere (here: in this test process)."""
    state = tmp_path / "state"
    store_dir = state / "app" / "flows-0"
    holder = StateStore(str(store_dir))
    try:
        message = _state_error(_run(state))
    finally:
        holder.close()
    assert str(store_dir) in message and "another wirestream process" in message
    # Released: the same directory is accepted again (the run then waits for brokers).
    again = _run(state, "--connect-timeout", "1")
    _, stderr = again.communicate(timeout=30)
    assert again.returncode == 3, stderr[-2000:]
    assert os.path.exists(store_dir)
