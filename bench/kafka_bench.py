"""Kafka-mode benchmark on Apache Kafka (not a test): one capture, as ratios to replay.

    .venv/bin/python bench/kafka_bench.py [--capture perf.pcap]   # starts its own Apache Kafka
    .venv/bin/python bench/kafka_bench.py --bootstrap-servers HOST:PORT

Rows: `wirestream replay --partitions N` (the embedded path, the reference), `wirestream
probe` (bundles; and the per-packet layout for comparison), one `run` member, two members
on N partitions, the restore of a store holding 100k flows, and the members' peak RSS with
a backlog of 1x and 3x the capture (it must not grow with the backlog), and what
kafka-python alone spends reading the packets topic, as shipped and with the member's
changes to it (bench/bare_consumer.py).

The capture: ../shared/tools/make_perf_capture.sh (real nginx + wrk, needs root), given
with --capture, or the one bench/replay_bench.py left in $TMPDIR/wsbench (`make bench` runs
it first); without either a synthetic HTTP keep-alive capture is generated (said in the
output). Wall rates come from the programs' own JSON logs (replay's and the probe's
summaries, the members' input span from first to last input batch), so process start-up
and group joining are not counted. Per-core rates are packets per CPU-second of the
process over the same span (CpuSampler), and over the whole process (wait4: start-up,
joining, the idle wait before exit included): on cores other jobs share, wall time
measures the neighbours too. The broker runs on the same cores and is not counted.
Every path runs --rounds times (default 3), alternating round by round (round i starts
with path i); each ratio is taken within its round, and the table gives the medians and
the range of the per-CPU ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import brokers  # noqa: E402  (tests/brokers.py: broker start-up and member helpers)

JOIN_TIMEOUT = 180.0
T = TypeVar("T")

from devkafka import broker as kafka  # noqa: E402


def _event(stderr: str, name: str) -> dict:
    return next(json.loads(x) for x in stderr.splitlines() if f'"{name}"' in x)


_TICK = os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """The CPU seconds of a process over wall time (from /proc, every 20 ms), to count the
    CPU spent between two logged instants (e.g. a member's first and last input batch):
    start-up, group joining and the idle wait before exit are then left out, as they are
    from the wall rates."""

    def __init__(self, pid: int) -> None:
        self.samples: list[tuple[float, float]] = []
        self._path = f"/proc/{pid}/stat"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                with open(self._path) as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                return
            if fields[0] == "Z":
                return
            self.samples.append((time.time(), (int(fields[11]) + int(fields[12])) / _TICK))
            time.sleep(0.02)

    def between(self, start: float, end: float) -> float:
        self._thread.join(timeout=5)
        before = [c for t, c in self.samples if t <= start]
        after = [c for t, c in self.samples if t >= end]
        first = before[-1] if before else 0.0
        last = after[0] if after else self.samples[-1][1]
        return max(last - first, 1e-3)


def _ts(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def reap(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for `proc`: (exit code, its CPU seconds, user + system). CPU time is what
    "per core" means on a machine whose cores other jobs share: wall time is not."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def _run(args: list[str], what: str, event: str) -> dict:
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, text=True, cwd=ROOT)
        sampler = CpuSampler(proc.pid)
        code, cpu = reap(proc)
        err.seek(0)
        text = err.read()
    if code:
        raise SystemExit(f"{what} failed:\n{text[-2000:]}")
    summary = _event(text, event)
    end = _ts(summary)
    return {**summary, "cpu": cpu, "span_cpu": sampler.between(end - summary["seconds"], end)}


def replay(pcap: Path, partitions: int) -> dict:
    args = brokers.wirestream("replay", str(pcap), "--partitions", str(partitions), "-o",
                              "/dev/null", "--no-progress", "--log-format", "json")  # fmt: skip
    return _run(args, "replay", "replay_finished")


def probe(bootstrap: str, topic: str, pcaps: list[Path], partitions: int, *extra: str) -> dict:
    args = brokers.wirestream(
        "probe", *map(str, pcaps), "--bootstrap-servers", bootstrap, "--topic", topic,
        "--partitions", str(partitions), *extra, "--log-format", "json",
    )  # fmt: skip
    return _run(args, "probe", "probe_finished")


def consume(bootstrap: str, topic: str, members: int, work: Path, *extra: str) -> list[dict]:
    """Per member: input records, seconds from its first to its last input batch, peak
    RSS. The input is all in the topic before the members start."""
    app = brokers.unique("bench")
    args = ("--input-topic", topic, "--topic-prefix", f"{app}.", "--exit-when-idle", "3", *extra)
    ms = [brokers.Member(bootstrap, app, work / f"{app}-{i}", *args) for i in range(members)]
    samplers = [CpuSampler(m.proc.pid) for m in ms]
    out = []
    for m, sampler in zip(ms, samplers, strict=True):
        code, cpu = reap(m.proc)
        if code != 0:
            raise SystemExit(f"member failed:\n{m.log()[-3000:]}")
        end = m.events("end_of_input")[-1]
        first, last = end["input_span"] or (0.0, 0.0)
        out.append({
            "records": end["input_records"],
            "seconds": max(last - first, 1e-3),
            "rss": m.events("member_stopped")[-1]["peak_rss_mib"],
            "cpu": cpu,
            "span_cpu": sampler.between(first, last),
        })  # fmt: skip
    return out


def rotated(items: Sequence[T], i: int) -> list[T]:
    """`items` starting at item i: round i starts with a different path, so a burst of load
    elsewhere hits them alike."""
    k = i % len(items)
    return [*items[k:], *items[:k]]


def bare_reads(bootstrap: str, topic: str, rounds: int = 5) -> dict[str, float]:
    """Median CPU seconds of a bare consumer reading `topic` (bench/bare_consumer.py) in each
    mode, alternating round by round: what the member's read size and fewer copies save."""
    modes = ("shipped", "reads", "copies")
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    script = str(ROOT / "bench" / "bare_consumer.py")
    for i in range(rounds):
        for mode in rotated(modes, i):
            out = subprocess.run([sys.executable, script, bootstrap, topic, mode], cwd=ROOT,
                                 check=True, capture_output=True, text=True).stdout  # fmt: skip
            cpu[mode].append(json.loads(out)["cpu"])
    return {m: statistics.median(v) for m, v in cpu.items()}


def restore_case(bootstrap: str, flows: int, partitions: int, work: Path) -> dict:
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
    produced = probe(bootstrap, topic, [pcap], partitions)["records"]
    app = brokers.unique("restore")
    args = ("--input-topic", topic, "--topic-prefix", f"{app}.")
    first = brokers.Member(bootstrap, app, work / "r-first", *args)
    brokers.wait_committed(bootstrap, app, produced, timeout=1200)
    first.signal(signal.SIGTERM)
    first.wait(120)

    def ready(state_dir: Path) -> dict | None:
        m = brokers.Member(bootstrap, app, state_dir, *args)
        try:
            event = m.wait_event("partitions_assigned", timeout=JOIN_TIMEOUT)
        except AssertionError:  # seen once: a member that never got an assignment
            print(f"restore: no assignment within {JOIN_TIMEOUT} s", file=sys.stderr)
            m.kill()
            return None
        parts = m.events("partition_ready")
        m.signal(signal.SIGTERM)
        m.wait(120)
        return {
            "total": event["seconds"],
            "records": sum(e["restored_records"] for e in parts),
            "flows": sum(e["flows"] for e in parts),
            "read": max(e["seconds"] for e in parts),
            "rebuild": sum(e["rebuild_seconds"] for e in parts),
        }

    return {"flows": flows, "full": ready(work / "r-second"), "tail": ready(work / "r-second")}


def synthetic(work: Path, packets: int) -> Path:
    per_request = (32 * 1024) // 1200 + 3
    requests = max(1, packets // (32 * per_request))
    frames = brokers.http_keepalive_packets(flows=32, requests=requests, body=32 * 1024,
                                            mss=1200)  # fmt: skip
    return brokers.write_capture(work / "http.pcap", frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--capture", type=Path, default=None, help="the capture (default: synthetic)")
    ap.add_argument("--bootstrap-servers", default=None)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--packets", type=int, default=150_000, help="synthetic capture size")
    ap.add_argument("--flows", type=int, default=100_000, help="flows in the restore case")
    ap.add_argument("--compression", default="none", help="probe --compression")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of every path, alternating; the table gives medians")  # fmt: skip
    ap.add_argument("--skip", default="",
                    help="comma list of: packet-layout,restore,backlog,client")  # fmt: skip
    opts = ap.parse_args()
    skip = set(filter(None, opts.skip.split(",")))
    n = opts.partitions
    rows: list[tuple[str, ...]] = []
    other: list[tuple[str, str]] = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ws-kbench-")))
        bootstrap = opts.bootstrap_servers
        if bootstrap is None:
            broker = kafka.new_broker(work / "broker")
            broker.start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap
        pcap, kind = opts.capture, "given"
        if pcap is None:  # the perf capture replay_bench.py made in this `make bench`, if any
            made = sorted((Path(tempfile.gettempdir()) / "wsbench").glob("perf_*.pcap"),
                          key=lambda f: f.stat().st_mtime)  # fmt: skip
            pcap, kind = (made[-1], "perf capture of replay_bench.py") if made else (None, "")
        if pcap is None:
            pcap = synthetic(work, opts.packets)
            kind = "synthetic (tests/brokers.http_keepalive_packets): no perf capture"
        print(f"capture: {pcap.name} ({kind}), {pcap.stat().st_size >> 20} MiB; "
              f"{n} partitions; compression {opts.compression}", file=sys.stderr)  # fmt: skip

        topic = brokers.unique("bench") + ".packets"  # what the members read, every round
        probe(bootstrap, topic, [pcap], n, "--compression", opts.compression)
        paths = {
            f"`replay --partitions {n}`": lambda: [replay(pcap, n)],
            "`probe` (bundles)": lambda: [probe(bootstrap, brokers.unique("benchb") + ".packets",
                                                [pcap], n, "--compression", opts.compression)],
            "`probe --layout packet`": lambda: [probe(
                bootstrap, brokers.unique("benchp") + ".packets", [pcap], n,
                "--layout", "packet", "--compression", opts.compression)],
            "one `run` member": lambda: consume(bootstrap, topic, 1, work),
            "one member, 4 KiB socket reads": lambda: consume(
                bootstrap, topic, 1, work, "--socket-read-bytes", "4096"),
            "two members (together)": lambda: consume(bootstrap, topic, 2, work),
        }  # fmt: skip
        if "packet-layout" in skip:
            del paths["`probe --layout packet`"]
        names = list(paths)
        runs: dict[str, list[list[dict]]] = {name: [] for name in names}
        for i in range(opts.rounds):
            for name in rotated(names, i):
                runs[name].append(paths[name]())
            print(f"round {i + 1} of {opts.rounds} done", file=sys.stderr, flush=True)
        packets = runs[names[0]][0][0]["packets"]

        def rates(ms: list[dict]) -> tuple[float, float, float]:
            """(wall packets/s, packets per span CPU-second, per whole-process CPU-second)"""
            wall = ms[0]["packets_per_s"] if "packets_per_s" in ms[0] else (
                packets / max(m["seconds"] for m in ms))  # fmt: skip
            return (wall, packets / sum(m["span_cpu"] for m in ms),
                    packets / sum(m["cpu"] for m in ms))  # fmt: skip

        base = [rates(ms) for ms in runs[names[0]]]
        for name in names:
            own = [rates(ms) for ms in runs[name]]
            ratios = [tuple(a / b for a, b in zip(o, r, strict=True))
                      for o, r in zip(own, base, strict=True)]  # fmt: skip
            med = [statistics.median(v) for v in zip(*own, strict=True)]
            rmed = [statistics.median(v) for v in zip(*ratios, strict=True)]
            cpu_range = f"{min(r[1] for r in ratios):.2f} to {max(r[1] for r in ratios):.2f}"
            rows.append((name, f"{med[0]:,.0f}", f"{rmed[0]:.2f}", f"{med[1]:,.0f}",
                         f"{rmed[1]:.2f}", cpu_range, f"{rmed[2]:.2f}"))  # fmt: skip
            print(f"{name}: per round, wall vs replay "
                  f"{[round(r[0], 2) for r in ratios]}, per CPU-second vs replay "
                  f"{[round(r[1], 2) for r in ratios]}", file=sys.stderr, flush=True)  # fmt: skip
        one_s = statistics.median(ms[0]["seconds"] for ms in runs["one `run` member"])
        two_s = statistics.median(
            max(m["seconds"] for m in ms) for ms in runs["two members (together)"]
        )
        other.append(("two members / one member (wall, medians)", f"{one_s / two_s:.2f}"))
        if "client" not in skip:
            bare = bare_reads(bootstrap, topic)
            other.append((
                "kafka-python alone reading the packets topic (CPU s, median of 5): as "
                "shipped / 256 KiB reads / and fewer copies (the member's)",
                " / ".join(f"{bare[m]:.3f}" for m in ("shipped", "reads", "copies")),
            ))  # fmt: skip
        one = runs["one `run` member"][0]
        rss = [("1x", one[0]["rss"])]
        if "backlog" not in skip:
            big = brokers.unique("backlog") + ".packets"
            probe(bootstrap, big, [pcap] * 3, n, "--compression", opts.compression)
            three = consume(bootstrap, big, 1, work)
            rss.append(("3x", three[0]["rss"]))
        other.append(("one member's peak RSS, backlog " + " / ".join(b for b, _ in rss),
                      " / ".join(f"{m} MiB" for _, m in rss)))  # fmt: skip
        if "restore" not in skip:
            rc = restore_case(bootstrap, opts.flows, n, work)
            for name, case in (("empty state dir", rc["full"]), ("local state intact", rc["tail"])):
                if case is None:
                    other.append((f"restore {rc['flows']:,} flows, {name}", "no assignment"))
                    continue
                other.append((
                    f"restore {rc['flows']:,} flows, {name}",
                    f"{case['total']:.2f} s ({case['records']:,} changelog records read in "
                    f"{case['read']:.2f} s, {case['flows']:,} flows rebuilt in "
                    f"{case['rebuild']:.2f} s)",
                ))  # fmt: skip
    print(f"| Apache Kafka, {n} partitions, {packets:,} packets, medians of {opts.rounds} "
          "rounds | packets/s (wall) | vs replay | packets per CPU-second | vs replay | range "
          "| whole process CPU vs replay |", flush=True)  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|")
    for rw in rows:
        print("| " + " | ".join(rw) + " |")
    print("\n| measurement | result |\n|---|---|")
    for rw in other:
        print("| " + " | ".join(rw) + " |")


if __name__ == "__main__":
    main()
