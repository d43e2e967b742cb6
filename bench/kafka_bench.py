"""Kafka-mode benchmark (not a test): probe produce rate, consume-and-decode rate per member
with one and two members, and restore time of a store holding many flows.

    .venv/bin/python bench/kafka_bench.py                 # starts its own noida-db
    .venv/bin/python bench/kafka_bench.py --broker tansu
    .venv/bin/python bench/kafka_bench.py --bootstrap-servers HOST:PORT

Numbers come from the members' own JSON logs (partitions_assigned / end_of_input /
partition_ready), so they measure the runtime, not process start-up. Prints a Markdown
table. Install the `crc32c` package for realistic numbers: without it kafka-python
computes CRC-32C in pure Python (the probe pays it on every batch it produces).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import brokers  # noqa: E402  (tests/brokers.py: broker start-up and member helpers)

PARTITIONS = 4


def ts(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def probe(bootstrap: str, topic: str, pcap: Path) -> dict:
    done = brokers.cli(
        "probe", str(pcap), "--bootstrap-servers", bootstrap, "--topic", topic,
        "--partitions", str(PARTITIONS), timeout=600,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"probe failed:\n{done.stderr[-2000:]}")
    import json

    return next(json.loads(x) for x in done.stderr.splitlines() if '"probe_finished"' in x)


def consume(bootstrap: str, topic: str, members: int, work: Path) -> list[tuple[int, float]]:
    """(records, seconds from its first to its last input batch) per member; the input is
    all in the topic before the members start."""
    app = brokers.unique("bench")
    extra = ("--input-topic", topic, "--topic-prefix", f"{app}.", "--exit-when-idle", "2")
    ms = [brokers.Member(bootstrap, app, work / f"{app}-{i}", *extra) for i in range(members)]
    out = []
    for m in ms:
        if m.wait(600) != 0:
            raise SystemExit(f"member failed:\n{m.log()[-3000:]}")
        end = m.events("end_of_input")[-1]
        first, last = end["input_span"] or (0.0, 0.0)
        out.append((end["input_records"], max(last - first, 1e-3)))
    return out


def restore_case(bootstrap: str, flows: int, work: Path) -> dict:
    """A store with `flows` open flows: full restore into an empty state dir, then a
    restart with the local state intact (changelog tail only)."""
    import dpkt
    import pcapgen

    frames = []
    for i in range(flows):
        seg = pcapgen.tcp(10_000 + i % 50_000, 80, flags=dpkt.tcp.TH_SYN, seq=i)
        src = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        frames.append((1_700_000_000_000_000_000 + i * 1000, pcapgen.ether(pcapgen.ipv4(seg, src))))
    pcap = brokers.write_capture(work / "flows.pcap", frames)
    topic = brokers.unique("restore") + ".packets"
    probe(bootstrap, topic, pcap)
    app = brokers.unique("restore")
    args = ("--input-topic", topic, "--topic-prefix", f"{app}.")
    first = brokers.Member(bootstrap, app, work / "r-first", *args)
    brokers.wait_committed(bootstrap, app, flows, timeout=600)
    first.signal(signal.SIGTERM)
    first.wait(120)

    def ready(state_dir: Path) -> dict:
        m = brokers.Member(bootstrap, app, state_dir, *args)
        event = m.wait_event("partitions_assigned", timeout=600)
        parts = m.events("partition_ready")
        m.signal(signal.SIGTERM)
        m.wait(120)
        return {
            "total": event["seconds"],
            "records": sum(e["restored_records"] for e in parts),
            "read": max(e["seconds"] for e in parts),
            "rebuild": sum(e["rebuild_seconds"] for e in parts),
        }

    return {"flows": flows, "full": ready(work / "r-second"), "tail": ready(work / "r-second")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bootstrap-servers", default=None)
    ap.add_argument("--broker", choices=("noida", "tansu"), default="noida")
    ap.add_argument("--packets", type=int, default=60_000, help="packets in the HTTP capture")
    ap.add_argument("--flows", type=int, default=100_000, help="flows in the restore case")
    opts = ap.parse_args()
    try:
        import crc32c  # noqa: F401

        crc = True
    except ImportError:
        crc = False
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ws-kbench-")))
        bootstrap = opts.bootstrap_servers
        kind = "given"
        if bootstrap is None:
            broker = stack.enter_context(brokers.running_broker(opts.broker, work / "broker"))
            bootstrap, kind = broker.bootstrap, opts.broker
        per_request = (32 * 1024) // 1200 + 3
        requests = max(1, opts.packets // (32 * per_request))
        t = time.perf_counter()
        frames = brokers.http_keepalive_packets(flows=32, requests=requests, body=32 * 1024,
                                                mss=1200)  # fmt: skip
        pcap = brokers.write_capture(work / "http.pcap", frames)
        built = time.perf_counter() - t
        size = pcap.stat().st_size >> 20
        print(f"capture: {len(frames)} packets, {size} MiB ({built:.1f} s to build); broker: "
              f"{kind}; crc32c: {'yes' if crc else 'no'}", file=sys.stderr)  # fmt: skip
        topic = brokers.unique("bench") + ".packets"
        p = probe(bootstrap, topic, pcap)
        one = consume(bootstrap, topic, 1, work)
        two = consume(bootstrap, topic, 2, work)
        r = restore_case(bootstrap, opts.flows, work)

    rows = [
        ("probe: produce", f"{p['records_per_s']:,} records/s",
         f"{p['records']:,} records, {p['record_bytes'] / p['seconds'] / 1e6:.1f} MB/s"),
        ("run, 1 member: consume + decode", f"{one[0][0] / one[0][1]:,.0f} records/s",
         f"{one[0][0]:,} records in {one[0][1]:.2f} s"),
    ]  # fmt: skip
    for i, (n, s) in enumerate(two):
        rows.append((f"run, 2 members: member {i + 1}", f"{n / s:,.0f} records/s",
                     f"{n:,} records in {s:.2f} s"))  # fmt: skip
    total = sum(n for n, _ in two)
    rows.append(("run, 2 members: together", f"{total / max(s for _, s in two):,.0f} records/s",
                 "total / slower member's time"))  # fmt: skip
    for name, case in (("empty state dir", r["full"]), ("local state intact", r["tail"])):
        rows.append((
            f"restore {r['flows']:,} flows, {name}", f"{case['total']:.2f} s",
            f"{case['records']:,} changelog records read in {case['read']:.2f} s, flows "
            f"rebuilt in {case['rebuild']:.2f} s",
        ))  # fmt: skip
    print(f"| measurement ({kind}, {PARTITIONS} partitions) | rate / time | detail |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
