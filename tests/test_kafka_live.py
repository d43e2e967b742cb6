"""`wirestream probe --interface`: live capture on a veth pair into a network namespace.

The test builds the namespace itself (needs root and iproute2), serves HTTP inside it,
fetches a few URLs through the veth with a BPF filter that keeps only the HTTP port, and
checks that the captured records decode to exactly those requests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wirestream.decoders.registry import select
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.kafka_live import LiveCaptureError, compile_bpf
from wirestream.streams.packet_input import PacketInput
from wirestream.streams.task import Task

try:
    from tests import brokers
except ImportError:
    import brokers

HTTP_PORT = 8080
NOISE_PORT = 9999


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def veth_namespace() -> Iterator[tuple[str, str, str]]:
    """(host-side interface, host address, namespace-side address) of a fresh veth pair."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip`) is not installed")
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces and AF_PACKET capture need root")
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"ws{tag}", f"wsh{tag}", f"wsn{tag}"
    subnet = 100 + int(tag[:2], 16) % 100
    host_ip, ns_ip = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
    try:
        _ip("netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{host_ip}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{ns_ip}/24", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield ns, host_if, ns_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def test_bpf_filters_compile() -> None:
    try:
        code = compile_bpf(f"tcp port {HTTP_PORT}", 1)
    except LiveCaptureError as exc:
        pytest.skip(str(exc))
    assert code and len(code) % 8 == 0
    with pytest.raises(LiveCaptureError, match="bad BPF filter"):
        compile_bpf("tcp port nonsense-port", 1)


@pytest.mark.kafka
class _BadParts:
    def __init__(self) -> None:
        self.parts: list[tuple[str, bytes, int]] = []

    def append_part(self, reason: str, data: bytes, index: int) -> None:
        self.parts.append((reason, data, index))


def test_live_capture_on_veth(
    veth_namespace: tuple[str, str, str], broker: brokers.Broker, tmp_path: Path
) -> None:
    ns, host_if, ns_ip = veth_namespace
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from the namespace\n" * 200)
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", str(HTTP_PORT),
         "--bind", ns_ip, "--directory", str(www)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    topic = brokers.unique("live") + ".packets"
    log_path = tmp_path / "probe.log"
    with open(log_path, "wb") as log:
        probe = subprocess.Popen(
            brokers.wirestream(
                "probe", "--interface", host_if, "--bpf", f"tcp port {HTTP_PORT}",
                "--bootstrap-servers", broker.bootstrap, "--topic", topic,
                "--partitions", "2", "--log-format", "json",
            ),
            stdout=log, stderr=log, cwd=brokers.ROOT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "live_capture_started" not in log_path.read_text():
            assert probe.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        uris = ["/hello.txt", "/hello.txt?second", "/missing"]
        for uri in uris:
            for _ in range(50):  # the server may still be starting
                try:
                    with urllib.request.urlopen(f"http://{ns_ip}:{HTTP_PORT}{uri}", timeout=5):
                        pass
                    break
                except urllib.error.HTTPError:
                    break
                except OSError:
                    time.sleep(0.1)
        # Noise the filter must drop: UDP to another port.
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(5):
                s.sendto(b"noise", (ns_ip, NOISE_PORT))
        time.sleep(1.0)
        probe.send_signal(signal.SIGINT)
        assert probe.wait(30) == 0, log_path.read_text()
    finally:
        if probe.poll() is None:
            probe.kill()
        server.terminate()
        server.wait(10)

    finished = [json.loads(x) for x in log_path.read_text().splitlines() if "probe_finished" in x]
    assert finished and finished[0]["records"] > 0
    records = brokers.read_all(broker.bootstrap, [topic])
    assert len(records) == finished[0]["records"]

    # Decode what was captured, partition by partition, as `run` would.
    emitted: list[dict] = []
    decoders = select(None)
    bad = _BadParts()
    for partition in sorted({r.partition for r in records}):
        task = Task(partition, RuntimeConfig(), decoders, lambda t, k, rec: emitted.append(rec))
        reader = PacketInput(task, bad.append_part)  # bundles, as `run` reads
        for r in records:
            if r.partition == partition:
                reader.process(r.value)
        task.close_all("end_of_input")
        assert not task.bad_packets and not bad.parts
        assert reader.bundles == len([r for r in records if r.partition == partition])
    flows = [r for r in emitted if r["type"] == "flow"]
    assert flows and all(f["server"]["port"] == HTTP_PORT for f in flows)
    assert all(f["proto"] == "tcp" for f in flows)
    http = [r for r in emitted if r["type"] == "http"]
    if "http" in {cls.name for cls in decoders}:
        seen = sorted((h["request"]["uri"], h["response"]["status"]) for h in http)
        assert seen == sorted([("/hello.txt", 200), ("/hello.txt?second", 200), ("/missing", 404)])
