"""Memory under floods (issue: reassembly limits), not a test: generate the capture, replay
it with default limits in a child process, report peak RSS and the limits that fired.

    python bench/floods.py [--ooo-flows 5000] [--syn-flows 300000]

ooo:  thousands of flows whose first byte never arrives, each followed by 100 KB, so every
      byte is parked out of order (caps: per direction, per task memcap).
syn:  hundreds of thousands of SYNs from distinct ports (flow table cap, SYN timeout).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pcapgen import ether, ipv4, tcp  # noqa: E402

SYN, ACK = 0x02, 0x10
T0 = 1_700_000_000_000_000_000


def ooo_flood(path: Path, flows: int, per_flow: int = 100_000, mss: int = 1448) -> int:
    """Flows with a handshake, then per_flow bytes starting one segment after the ISN."""
    count = 0
    with path.open("wb") as f:
        f.write(
            b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(8) + b"\x00\x00\x04\x00\x01\x00\x00\x00"
        )
        ts = T0
        payload = b"z" * mss

        def put(frame: bytes) -> None:
            nonlocal ts, count
            sec, ns = divmod(ts, 1_000_000_000)
            f.write(
                sec.to_bytes(4, "little")
                + (ns // 1000).to_bytes(4, "little")
                + len(frame).to_bytes(4, "little") * 2
                + frame
            )
            ts += 10_000
            count += 1

        for i in range(flows):
            src = f"10.{i // 60000 % 250}.{i // 250 % 240}.{1 + i % 250}"
            sport = 1024 + i % 60000
            put(ether(ipv4(tcp(sport, 80, flags=SYN, seq=1000, ack=0), src, "192.0.2.1")))
            for off in range(mss, per_flow, mss):  # the first segment never arrives
                seg = tcp(sport, 80, payload, flags=ACK, seq=1001 + off, ack=1)
                put(ether(ipv4(seg, src, "192.0.2.1")))
    return count


def syn_flood(path: Path, flows: int) -> int:
    from tests.pcapgen import write_pcap

    frames = []
    for i in range(flows):
        src = f"10.{i // 60000 % 250}.{i // 250 % 240}.{1 + i % 250}"
        frame = ether(ipv4(tcp(1024 + i % 60000, 80, flags=SYN, seq=i, ack=0), src, "192.0.2.1"))
        frames.append((T0 + i * 1000, frame))
    write_pcap(path, frames)
    return flows


def replay(path: Path) -> dict:
    """Replay in a child process: (peak RSS MiB, records by type, anomalies by name, s)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), "replay", str(path), "--log-format", "json"],
        capture_output=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    kinds: Counter[str] = Counter()
    anomalies: Counter[str] = Counter()
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        kinds[record["type"]] += 1
        if record["type"] == "anomaly":
            anomalies[record["name"]] += 1
    return {
        "exit": proc.returncode,
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "records": dict(kinds),
        "anomalies": dict(anomalies),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ooo-flows", type=int, default=5000)
    ap.add_argument("--syn-flows", type=int, default=300_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, make, n in (
            ("ooo", ooo_flood, args.ooo_flows),
            ("syn", syn_flood, args.syn_flows),
        ):
            path = Path(tmp) / f"{name}.pcap"
            packets = make(path, n)
            result = replay(path)
            size = path.stat().st_size >> 20
            print(f"{name}: {n} flows, {packets} packets, {size} MiB capture -> {result}")


if __name__ == "__main__":
    main()
