"""Apache Kafka for the tests, and helpers to drive wirestream against it.

The broker is Apache Kafka itself (devkafka/broker.py: jars fetched from Maven Central
into a cache, one KRaft node on free loopback ports), started once per session on first
use and stopped at the end; tests isolate themselves with unique topic names and
application ids instead of fresh brokers. Tests that stop and restart the broker get one
of their own (test_kafka_faults.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from devkafka import broker as kafka
from devkafka.broker import KafkaBroker as Broker
from devkafka.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
# The lowest session timeout Apache Kafka accepts by default (group.min.session.timeout.ms):
# a SIGKILLed member is expired 6 s after its last heartbeat.
GROUP_TIMEOUTS = ["--session-timeout-ms", "6000", "--heartbeat-interval-ms", "1000"]
CLIENT_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

__all__ = ["Broker", "free_port"]


@contextlib.contextmanager
def running_broker(workdir: Path, properties: dict[str, str] | None = None) -> Iterator[Broker]:
    """An Apache Kafka for the duration of the block. Without java or mvn the whole test
    run stops at once with one line saying what to install."""
    try:
        broker = kafka.new_broker(workdir, properties)
    except kafka.BrokerUnavailable as exc:
        pytest.exit(f"Kafka tests cannot run: {exc}", returncode=3)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# --------------------------------------------------------------------------- helpers


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def wirestream(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "runner.py"), *args]


def cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run a wirestream command to completion (JSON logs on stderr)."""
    return subprocess.run(
        wirestream(*args, "--log-format", "json"),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


class Member:
    """A `wirestream run` subprocess whose JSON log lines are kept in a file."""

    def __init__(self, bootstrap: str, app: str, state_dir: Path, *extra: str) -> None:
        self.log_path = state_dir.parent / f"{state_dir.name}.{uuid.uuid4().hex[:6]}.log"
        self.args = wirestream(
            "run",
            "--bootstrap-servers", bootstrap,
            "--application-id", app,
            "--state-dir", str(state_dir),
            *GROUP_TIMEOUTS,
            *extra,
            "--log-format", "json",
        )  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, cwd=ROOT)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                out.append(event)
        return out

    def wait_event(self, name: str, timeout: float, where: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(name):
                if where is None or where(event):
                    return event
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {name!r} event within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            tail = self.log()[-3000:]
            raise AssertionError(f"member still running after {timeout} s:\n{tail}") from None

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def create_topic(
    bootstrap: str, topic: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs or {})])
    finally:
        admin.close()


def topics_with_prefix(bootstrap: str, prefix: str) -> list[str]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return sorted(t for t in admin.list_topics() if t.startswith(prefix))
    finally:
        admin.close()


def read_all(
    bootstrap: str, topics: Sequence[str], read_committed: bool = False, timeout: float = 60.0
) -> list[Any]:
    """Every record of `topics`, read until each partition's position reaches the high
    watermark reported by a fetch (never end_offsets(): Tansu's are off)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    try:
        tps = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
        ]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        pending = set(tps)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {sorted(map(str, pending))} to the end")
            for recs in consumer.poll(timeout_ms=300).values():
                records.extend(recs)
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if hw is not None and consumer.position(tp) >= hw:
                    pending.discard(tp)
        return records
    finally:
        consumer.close()


def group_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """Committed offsets of a group (list_group_offsets: describe_groups fails on Tansu)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except Exception:  # group not there yet (no commit), coordinator moving
        offsets = {}
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def wait_committed(bootstrap: str, group: str, total: int, timeout: float) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    offsets: dict[int, int] = {}
    while time.monotonic() < deadline:
        offsets = group_offsets(bootstrap, group)
        if sum(offsets.values()) >= total:
            return offsets
        time.sleep(0.2)
    raise AssertionError(f"group {group} committed {offsets}, expected {total} records in all")


def env_without_wirestream() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WIRESTREAM_")}


# --------------------------------------------------------------------------- captures


def http_keepalive_packets(
    flows: int = 24,
    requests: int = 12,
    body: int = 48 * 1024,
    mss: int = 1448,
    start_ns: int = 1_700_000_000_000_000_000,
    step_ns: int = 20_000,
) -> list[tuple[int, bytes]]:
    """Synthetic keep-alive HTTP/1.1 flows with large bodies, interleaved packet by packet
    (so that every flow is open across the whole capture), as (ts_ns, ethernet frame)."""
    import dpkt

    syn, ack, fin, psh = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_PUSH
    per_flow: list[list[bytes]] = []
    for i in range(flows):
        conn = _Conn(f"10.1.{i // 250}.{i % 250 + 1}", "10.2.0.1", 40_000 + i, 80, i)
        conn.send(True, flags=syn)
        conn.send(False, flags=syn | ack)
        conn.send(True)
        for r in range(requests):
            conn.send(True, f"GET /obj/{i}/{r} HTTP/1.1\r\nHost: example.test\r\n\r\n".encode(),
                      ack | psh)  # fmt: skip
            content = (f"flow {i} request {r} " * (body // 16 + 1)).encode()[:body]
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(content)}\r\n\r\n"
            ).encode()
            data = head + content
            for off in range(0, len(data), mss):
                conn.send(False, data[off : off + mss])
            conn.send(True)
        conn.send(True, flags=fin | ack)
        conn.send(False, flags=fin | ack)
        conn.send(True)
        per_flow.append(conn.frames)
    frames: list[tuple[int, bytes]] = []
    longest = max(len(x) for x in per_flow)
    for k in range(longest):
        for packets in per_flow:
            if k < len(packets):
                frames.append((start_ns + len(frames) * step_ns, packets[k]))
    return frames


class _Conn:
    """Both directions of one synthetic TCP connection, with their sequence numbers."""

    def __init__(self, client: str, server: str, cport: int, sport: int, n: int) -> None:
        self.ends = ((client, cport), (server, sport))
        self.seq = [1_000 + n, 900_000 + n]
        self.frames: list[bytes] = []

    def send(self, from_client: bool, payload: bytes = b"", flags: int | None = None) -> None:
        import dpkt

        try:
            from tests import pcapgen
        except ImportError:
            import pcapgen

        flags = dpkt.tcp.TH_ACK if flags is None else flags
        me, peer = (0, 1) if from_client else (1, 0)
        (src, sport), (dst, dport) = self.ends[me], self.ends[peer]
        ack = self.seq[peer] if flags & dpkt.tcp.TH_ACK else 0
        seg = pcapgen.tcp(sport, dport, payload, flags=flags, seq=self.seq[me], ack=ack)
        self.frames.append(pcapgen.ether(pcapgen.ipv4(seg, src, dst)))
        self.seq[me] += len(payload) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)


def write_capture(path: Path, frames: Sequence[tuple[int, bytes]]) -> Path:
    try:
        from tests import pcapgen
    except ImportError:
        import pcapgen
    return pcapgen.write_pcap(path, frames, nanosecond=True)


# --------------------------------------------------------------------------- broker faults


def stop_for_restart(broker: Broker, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
    """Stop the broker process (SIGTERM: a clean shutdown; SIGKILL: a crash), keeping its
    ports and data directory for `restart_broker`."""
    broker.stop(sig, timeout)


def restart_broker(broker: Broker) -> None:
    """Start the broker again on the same ports with the same data directory."""
    broker.start()
