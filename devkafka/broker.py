"""A one-node Apache Kafka (KRaft, broker and controller in one JVM) for tests, benchmarks
and local tries.

Why Apache Kafka itself: users run wirestream against it, and the emulators used before
hid real failures (a consumer that reads nothing after a 100 MB backlog, no session
expiry, no compaction, aborted transactions visible to read_committed readers). The jars
come from Maven Central (there is no other way to fetch them on the project's machines)
into a cache kept between runs; the JVM is started on free loopback ports in a directory
of the caller's, and dies with the process that started it (PR_SET_PDEATHSIG), so a
killed test run leaks no broker.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17  # Kafka 4.x brokers need Java 17
POM = Path(__file__).with_name("pom.xml")
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
INSTALL_HINT = (
    "Apache Kafka for the tests needs a JDK >= 17 and Maven "
    "(Debian: apt-get install openjdk-17-jdk-headless maven)"
)

# Single-node settings (see ../shared/BROKER.md). Thread counts are small because the
# broker shares two cores with the tests; the log cleaner wakes up often so that
# compaction tests see compacted changelogs within seconds.
BASE_PROPERTIES: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.partitions": "1",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "log.cleaner.threads": "1",
    "log.cleaner.backoff.ms": "500",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    "message.max.bytes": str(8 * 1024 * 1024),
}


class BrokerUnavailable(RuntimeError):
    """Java or Maven missing or too old, or the jars could not be fetched: one line that
    says what to install."""


@dataclass
class KafkaBroker:
    """A running (or stopped, restartable) broker: its ports and data stay the same across
    `restart()`, as a real broker's do."""

    workdir: Path
    port: int
    controller_port: int
    libs: Path
    heap: str = "768m"
    properties: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kafka.log"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = READY_TIMEOUT) -> KafkaBroker:
        """Format the storage (first start only), start the JVM, wait until a metadata
        request answers."""
        props = self.workdir / "server.properties"
        if not props.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            props.write_text(_properties_text(self._all_properties()))
            _run_java(self.libs, ["kafka.tools.StorageTool", "format", "-t", _cluster_id(),
                                  "-c", str(props)], self.workdir)  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*_java(self.libs, self.heap), "kafka.Kafka", str(props)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        try:
            wait_ready(self.bootstrap, self.proc, timeout)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"Apache Kafka did not start: {exc}\n{self.log_tail()}") from exc
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM is a clean shutdown; SIGKILL a crash (the data directory stays)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self, timeout: float = READY_TIMEOUT) -> None:
        self.stop()
        self.start(timeout)

    def _all_properties(self) -> dict[str, str]:
        return {
            **BASE_PROPERTIES,
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "log.dirs": str(self.data_dir),
            **self.properties,
        }


# -------------------------------------------------------------------- installing


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = os.environ.get("WIRESTREAM_KAFKA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wirestream"
    )
    return Path(base) / f"kafka-{version}"


def check_prerequisites() -> None:
    """Raise BrokerUnavailable with the install line when java or mvn is missing or the
    JDK is older than 17."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise BrokerUnavailable(f"{' and '.join(missing)} not found. {INSTALL_HINT}")
    out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerUnavailable(f"java {major or '?'} is too old. {INSTALL_HINT}")


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """The broker's jars, fetched with Maven on first use (about a minute) under a file
    lock, so that parallel callers fetch once."""
    libs = cache_dir(version) / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    check_prerequisites()
    root = cache_dir(version)
    root.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return libs
        pom = root / "pom.xml"
        pom.write_text(POM.read_text().replace("@KAFKA_VERSION@", version))
        shutil.rmtree(libs, ignore_errors=True)
        result = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            tail = (result.stdout + result.stderr)[-2000:]
            raise BrokerUnavailable(f"mvn could not fetch Apache Kafka {version}:\n{tail}")
        done.touch()
    return libs


# -------------------------------------------------------------------- running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_broker(
    workdir: Path, properties: Mapping[str, str] | None = None, heap: str = "768m"
) -> KafkaBroker:
    """A broker description on two free loopback ports (not started yet)."""
    return KafkaBroker(
        workdir=workdir,
        port=free_port(),
        controller_port=free_port(),
        libs=ensure_jars(),
        heap=heap,
        properties=dict(properties or {}),
    )


@contextlib.contextmanager
def running(
    workdir: Path, properties: Mapping[str, str] | None = None, heap: str = "768m"
) -> Iterator[KafkaBroker]:
    broker = new_broker(workdir, properties, heap).start()
    try:
        yield broker
    finally:
        broker.stop()


def wait_ready(bootstrap: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until a metadata request answers (the port alone opens before the broker serves)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        if not _port_open(bootstrap):
            time.sleep(0.2)
            continue
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"broker at {bootstrap} not ready after {timeout:.0f} s: {last}")


def _port_open(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _java(libs: Path, heap: str) -> list[str]:
    return [
        "java",
        f"-Xmx{heap}",
        "-Xms128m",
        "-XX:+UseSerialGC",  # two cores: no parallel GC threads competing with the tests
        "-Djava.awt.headless=true",
        "-cp",
        f"{libs}/*",
    ]


def _run_java(libs: Path, args: list[str], cwd: Path) -> None:
    result = subprocess.run([*_java(libs, "256m"), *args], capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{(result.stdout + result.stderr)[-2000:]}")


def _cluster_id() -> str:
    """What `StorageTool random-uuid` prints (URL-safe base64 of 16 random bytes), made here
    to save a JVM start. Like Kafka's own Uuid.randomUuid(), never one that starts with
    '-': the tool's argument parser would take it for an option (1 start in 64 failed)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _properties_text(props: Mapping[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _die_with_parent() -> None:
    """Runs in the child: Linux sends it SIGTERM when the starting process dies, even by
    SIGKILL, so no broker outlives the test run that started it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
