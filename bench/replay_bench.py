#!/usr/bin/env python3
"""Replay throughput benchmark: `wirestream replay` next to tshark and tcpflow on one capture.

Not a test. In one run, alternating the tools round by round (so that load from elsewhere hits
them alike), each tool runs `--runs` times on the same capture; the table gives the median wall
time as packets/s and MB/s (captured bytes), the peak RSS, and the ratios to tshark and
tcpflow. Then the scaling runs: the capture concatenated 2x and 4x (time-shifted copies, as a
longer recording) gives throughput and peak RSS against size. The numbers are written between
the markers of docs/benchmarks.md, with a plot in docs/benchmarks.png.

Capture, in order of preference:
  --pcap FILE                      use it;
  --make perf (default when root)  record real nginx + wrk traffic through a veth pair with
                                   ../shared/tools/make_perf_capture.sh (needs root and
                                   `apt-get install -y nginx-light wrk curl tcpdump ethtool`);
  --make synth (fallback)          concatenate time- and port-shifted copies of
                                   fixtures/pcaps/own_wrk_small.pcap until --packets packets.
Generated captures are kept in --workdir and reused (pass --fresh to remake them).

Usage: .venv/bin/python bench/replay_bench.py [--pcap FILE] [--runs 5] [--scales 1,2,4]
"""

from __future__ import annotations

import argparse
import compileall
import heapq
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PERF_SCRIPT = REPO.parent / "shared" / "tools" / "make_perf_capture.sh"  # next to the repository
PERF_PACKAGES = ("nginx", "wrk", "curl", "tcpdump", "ethtool", "ip")
TEMPLATE = REPO / "fixtures" / "pcaps" / "own_wrk_small.pcap"
DOCS = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks.png"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
INSTALL_HINT = {
    "tshark": "apt-get install -y tshark",
    "tcpflow": "apt-get install -y tcpflow",
}


# --- capture -----------------------------------------------------------------------------------
def perf_capture_possible() -> str | None:
    """None if make_perf_capture.sh can run here, else why not."""
    if not PERF_SCRIPT.exists():
        return f"{PERF_SCRIPT} not found"
    if os.geteuid() != 0:
        return "needs root (network namespace + veth pair)"
    missing = [t for t in PERF_PACKAGES if shutil.which(t) is None]
    if missing:
        return (
            f"missing {' '.join(missing)}: "
            "apt-get install -y nginx-light wrk curl tcpdump ethtool iproute2"
        )
    return None


def make_perf_capture(out: Path, seconds: int, connections: int) -> None:
    print(f"recording {seconds}s of nginx+wrk traffic ({connections} connections) -> {out}")
    tmp = out.with_suffix(".part")
    subprocess.run(["bash", str(PERF_SCRIPT), str(tmp), str(seconds), str(connections)], check=True)
    tmp.replace(out)


def _copy(template: list, i: int, step: float) -> Iterator[tuple[float, int, int]]:
    """(ts, copy, index) of copy i, in time order, for heap-merging the copies."""
    for j, (ts, _) in enumerate(template):
        yield ts + i * step, i, j


def synthesize(out: Path, target_packets: int, concurrency: int = 8) -> None:
    """Shifted copies of own_wrk_small.pcap: client ports renumbered per copy, timestamps offset
    so about `concurrency` copies overlap in time, checksums recomputed."""
    import dpkt

    with TEMPLATE.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        if reader.datalink() != dpkt.pcap.DLT_EN10MB:
            raise SystemExit(f"{TEMPLATE}: expected an Ethernet capture")
        template = [(ts, bytes(buf)) for ts, buf in reader]
    parsed = [dpkt.ethernet.Ethernet(buf) for _, buf in template]
    server_ports = {
        e.data.data.dport
        for e in parsed
        if isinstance(e.data, dpkt.ip.IP)
        and isinstance(e.data.data, dpkt.tcp.TCP)
        and e.data.data.flags & dpkt.tcp.TH_SYN
        and not e.data.data.flags & dpkt.tcp.TH_ACK
    }
    copies = -(-target_packets // len(template))
    span = template[-1][0] - template[0][0]
    step = max(span / max(concurrency, 1), 0.001)
    print(
        f"synthesizing {copies} copies of {TEMPLATE.name} ({len(template)} packets each, "
        f"server ports {sorted(server_ports)}) -> {out}"
    )
    port_of: dict[tuple[int, int], int] = {}
    counter = itertools.count()

    def remap(copy: int, port: int) -> int:
        if port in server_ports:
            return port
        if (copy, port) not in port_of:
            port_of[(copy, port)] = 20000 + next(counter) % 40000
        return port_of[(copy, port)]

    tmp = out.with_suffix(".part")
    with tmp.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB, snaplen=262144)
        merged = heapq.merge(*(_copy(template, i, step) for i in range(copies)))
        for ts, i, j in merged:
            eth = dpkt.ethernet.Ethernet(template[j][1])
            ip, tcp = eth.data, getattr(eth.data, "data", None)
            if isinstance(ip, dpkt.ip.IP) and isinstance(tcp, dpkt.tcp.TCP):
                tcp.sport, tcp.dport = remap(i, tcp.sport), remap(i, tcp.dport)
                tcp.sum = 0
                ip.sum = 0
            w.writepkt(bytes(eth), ts=ts)
    tmp.replace(out)


def _pcap_records(path: Path) -> tuple[bytes, str, Iterator[tuple[int, bytes, bytes]]]:
    """(file header, byte order, iterator of (seconds, rest of the record header, data)) of a
    classic pcap, for rewriting timestamps without parsing packets."""
    f = path.open("rb")
    head = f.read(24)
    bo = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<"}.get(head[:4])
    bo = bo or {b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}.get(head[:4])
    if bo is None:
        f.close()
        raise SystemExit(f"{path}: scaling needs a classic pcap (not pcapng)")

    def records() -> Iterator[tuple[int, bytes, bytes]]:
        with f:
            while len(hdr := f.read(16)) == 16:
                sec, rest, caplen = struct.unpack(bo + "I4sI", hdr[:12])
                yield sec, rest + hdr[8:], f.read(caplen)

    return head, bo, records()


def scaled_capture(src: Path, factor: int, out: Path) -> Path:
    """`factor` copies of `src` one after the other, each shifted by the capture's span plus
    a minute (past every linger and SYN timeout): a longer recording of the same traffic.
    Flows reuse their 5-tuples in each copy, as new connections (new SYNs)."""
    if factor == 1:
        return src
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    head, bo, recs = _pcap_records(src)
    first = last = None
    for sec, _, _ in recs:
        first = sec if first is None else first
        last = sec
    shift = (last or 0) - (first or 0) + 60
    print(f"writing {out.name}: {factor} copies of {src.name}, {shift}s apart")
    tmp = out.with_suffix(".part")
    with tmp.open("wb", buffering=1 << 20) as w:
        w.write(head)
        for k in range(factor):
            _, _, recs = _pcap_records(src)
            for sec, rest, data in recs:
                w.write(struct.pack(bo + "I", sec + k * shift) + rest + data)
    tmp.replace(out)
    return out


def capture_stats(path: Path) -> tuple[int, int]:
    """(packets, captured bytes)."""
    sys.path.insert(0, str(REPO))
    from wirestream.probe.capture import open_capture

    packets = nbytes = 0
    with open_capture(path) as cap:
        for _, _, _, frames in cap.batches():
            packets += len(frames)
            nbytes += sum(map(len, frames))
    return packets, nbytes


def get_capture(a: argparse.Namespace) -> Path:
    a.workdir.mkdir(parents=True, exist_ok=True)
    if a.pcap:
        return Path(a.pcap)
    mode = a.make
    if mode == "auto":
        why = perf_capture_possible()
        mode = "perf" if why is None else "synth"
        if why:
            print(f"real traffic capture not possible ({why}); using a synthesized one")
    if mode == "perf":
        why = perf_capture_possible()
        if why:
            raise SystemExit(f"--make perf: {why}")
        out = a.workdir / f"perf_{a.seconds}s_{a.connections}c.pcap"
        if a.fresh or not out.exists():
            make_perf_capture(out, a.seconds, a.connections)
        return out
    out = a.workdir / f"synth_{a.packets}.pcap"
    if a.fresh or not out.exists():
        synthesize(out, a.packets)
    return out


# --- running -----------------------------------------------------------------------------------
def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and its descendants (Linux /proc), in KiB."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


# As an installed tool runs: with its modules' bytecode cached (main() compiles them once),
# even when this shell sets PYTHONDONTWRITEBYTECODE (the project's sources would otherwise be
# compiled again by every run: ~50 ms of start-up).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(cmd: list[str], cwd: Path) -> tuple[float, int, int, bytes]:
    """(wall seconds, peak RSS KiB, exit status, stderr tail) of one child. Peak RSS: the
    largest of the child's own peak (wait4) and the sum over its process tree sampled every
    20 ms (for replay --workers, whose worker processes run side by side)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=CHILD_ENV)
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], _tree_rss_kb(p.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return wall, max(int(usage.ru_maxrss), peak[0]), p.returncode, err.read()[-4000:]


@dataclass
class Tool:
    name: str
    cmd: Callable[[Path], list[str]]
    kind: str  # "ws" (wirestream), "tshark", "tcpflow"
    cleanup: Callable[[], None] | None = None


@dataclass
class Result:
    tool: str
    kind: str
    times: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    error: str | None = None
    stderr: bytes = b""

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def bench_round_robin(tools: list[Tool], pcap: Path, runs: int, label: str = "") -> list[Result]:
    """Each tool `runs` times, alternating: round i runs every tool once, starting with a
    different tool each round, so slow phases of the machine are shared out."""
    results = [Result(t.name, t.kind) for t in tools]
    for i in range(runs):
        order = list(range(len(tools)))
        order = order[i % len(order) :] + order[: i % len(order)]
        for k in order:
            tool, res = tools[k], results[k]
            if res.error:
                continue
            wall, rss, rc, err = run_once(tool.cmd(pcap), REPO)
            if tool.cleanup:
                tool.cleanup()
            if rc != 0:
                tail = err.decode("utf-8", "replace").strip().splitlines() or [""]
                res.error = f"exit {rc}: {tail[-1][:200]}"
                print(f"  {label}{tool.name} run {i + 1}: FAILED ({res.error})")
                continue
            res.times.append(wall)
            res.rss_kb.append(rss)
            res.stderr = err
            print(
                f"  {label}{tool.name:<34} run {i + 1}/{runs}: {wall:6.2f}s, "
                f"peak RSS {rss / 1024:5.0f} MiB"
            )
    return results


def replay_summary(stderr: bytes) -> dict | None:
    """wirestream's own end-of-replay log line (JSON on a non-terminal), as a sanity check."""
    for line in reversed(stderr.decode("utf-8", "replace").splitlines()):
        if '"replay_finished"' in line:
            try:
                return json.loads(line[line.index("{") :])
            except ValueError:
                return None
    return None


def wirestream_cmd(*extra: str) -> Callable[[Path], list[str]]:
    py = REPO / ".venv" / "bin" / "python"
    base = [str(py if py.exists() else sys.executable), str(REPO / "runner.py"), "replay"]
    return lambda pcap: [*base, str(pcap), "--output", "/dev/null", "--no-progress", *extra]


TSHARK_FIELDS = ["tcp.stream", "http.request.method", "http.request.uri", "http.response.code"]


def tshark_cmd(pcap: Path) -> list[str]:
    cmd = ["tshark", "-n", "-r", str(pcap), "-Y", "http", "-T", "fields"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    return cmd


def make_tools(a: argparse.Namespace) -> list[Tool]:
    tools = [
        Tool("wirestream replay (HTTP)", wirestream_cmd(), "ws"),
        Tool("wirestream --decoders none", wirestream_cmd("--decoders", "none"), "ws"),
    ]
    if a.workers > 1:
        w, parts = str(a.workers), str(a.partitions)
        tools.append(
            Tool(
                f"wirestream --workers {w} (HTTP)",
                wirestream_cmd("--workers", w, "--partitions", parts),
                "ws",
            )
        )
        tools.append(
            Tool(
                f"wirestream --workers {w} --decoders none",
                wirestream_cmd("--workers", w, "--partitions", parts, "--decoders", "none"),
                "ws",
            )
        )
    if a.no_compare:
        return tools
    if shutil.which("tshark"):
        tools.append(Tool("tshark -Y http -T fields", tshark_cmd, "tshark"))
    else:
        print(f"tshark not installed ({INSTALL_HINT['tshark']}); skipping it")
    if shutil.which("tcpflow"):
        outdir = Path(tempfile.mkdtemp(prefix="wsbench-tcpflow-"))

        def tcpflow_cmd(pcap: Path) -> list[str]:
            outdir.mkdir(exist_ok=True)
            return ["tcpflow", "-r", str(pcap), "-o", str(outdir)]

        tools.append(
            Tool(
                "tcpflow -r -o DIR",
                tcpflow_cmd,
                "tcpflow",
                cleanup=lambda: shutil.rmtree(outdir, ignore_errors=True),
            )
        )
    else:
        print(f"tcpflow not installed ({INSTALL_HINT['tcpflow']}); skipping it")
    return tools


# --- reporting ---------------------------------------------------------------------------------
def _ratio(r: Result, base: Result | None) -> str:
    if base is None or not base.times or r.kind != "ws":
        return "-"
    return f"{base.median / r.median:.2f}x"


def table(results: list[Result], packets: int, nbytes: int) -> str:
    tshark = next((r for r in results if r.kind == "tshark"), None)
    tcpflow = next((r for r in results if r.kind == "tcpflow"), None)
    lines = [
        "| tool | runs | median s | packets/s | MB/s | peak RSS MiB | vs tshark | vs tcpflow |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        if not r.times:
            lines.append(f"| {r.tool} | {r.error or 'not run'} | | | | | | |")
            continue
        m = r.median
        lines.append(
            f"| {r.tool} | {len(r.times)} | {m:.2f} | {packets / m:,.0f} | "
            f"{nbytes / m / 1e6:.1f} | {max(r.rss_kb) / 1024:.0f} | {_ratio(r, tshark)} | "
            f"{_ratio(r, tcpflow)} |"
        )
    return "\n".join(lines)


def scaling_table(scaled: dict[int, tuple[int, int, list[Result]]]) -> str:
    tools = [r.tool for r in next(iter(scaled.values()))[2]]
    head = "| tool | " + " | ".join(f"{f}x packets/s | {f}x peak RSS MiB" for f in scaled)
    lines = [head + " |", "|---|" + "--:|--:|" * len(scaled)]
    for i, tool in enumerate(tools):
        cells = []
        for packets, _, results in scaled.values():
            r = results[i]
            if r.times:
                cells += [f"{packets / r.median:,.0f}", f"{max(r.rss_kb) / 1024:.0f}"]
            else:
                cells += ["-", "-"]
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPUs ({model}){mem}, Linux {platform.release()}"


def versions() -> str:
    out = [f"Python {platform.python_version()}"]
    for tool, args in (("tshark", ["-v"]), ("tcpflow", ["-V"])):
        if shutil.which(tool):
            try:
                text = subprocess.run(
                    [tool, *args], capture_output=True, text=True, timeout=20
                ).stdout
                m = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
                out.append(f"{tool} {m.group(1) if m else '?'}")
            except (OSError, subprocess.SubprocessError):
                pass
    return ", ".join(out)


def plot(
    results: list[Result],
    packets: int,
    scaled: dict[int, tuple[int, int, list[Result]]],
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    ok = [r for r in results if r.times]
    names = [r.tool.replace(" (HTTP)", "\n(HTTP)").replace(" -", "\n-") for r in ok]
    rates = [packets / r.median / 1000 for r in ok]
    colors = ["#1f77b4" if r.kind == "ws" else "#999999" for r in ok]
    bars = ax1.barh(names, rates, color=colors)
    ax1.bar_label(bars, labels=[f"{x:,.0f}k" for x in rates], fontsize=8, padding=2)
    ax1.invert_yaxis()
    ax1.set_xlabel("thousand packets/s (median, higher is better)")
    ax1.set_title("Throughput on the benchmark capture", fontsize=10)
    ax1.tick_params(axis="y", labelsize=8)
    ax1.set_xlim(0, max(rates) * 1.2)
    if scaled:
        factors = list(scaled)
        for i, r in enumerate(next(iter(scaled.values()))[2]):
            ys = [
                max(res[2][i].rss_kb) / 1024 if res[2][i].times else None for res in scaled.values()
            ]
            if any(y is not None for y in ys):
                style = "-o" if r.kind == "ws" else "--s"
                ax2.plot(factors, ys, style, label=r.tool, markersize=4)
        ax2.set_xticks(factors)
        ax2.set_xticklabels([f"{f}x\n({scaled[f][0] / 1e6:.2f}M pkts)" for f in factors])
        ax2.set_ylabel("peak RSS MiB")
        ax2.set_yscale("log")
        ax2.set_title("Peak RSS as the capture grows", fontsize=10)
        ax2.legend(fontsize=7, loc="center right")
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def write_docs(path: Path, body: str) -> None:
    """Replace the generated part of docs/benchmarks.md (between the markers), keeping the
    hand-written text around it."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    pre, rest = text.split(BEGIN, 1)
    _, post = rest.split(END, 1)
    path.write_text(f"{pre}{BEGIN}\n{body.strip()}\n{END}{post}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pcap", help="capture to replay (default: make one)")
    ap.add_argument("--make", choices=("auto", "perf", "synth"), default="auto")
    ap.add_argument("--seconds", type=int, default=3, help="perf capture: wrk duration")
    ap.add_argument("--connections", type=int, default=16, help="perf capture: wrk connections")
    ap.add_argument("--packets", type=int, default=200_000, help="synth capture: packets")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wsbench")
    ap.add_argument("--fresh", action="store_true", help="remake a generated capture")
    ap.add_argument("--runs", type=int, default=5, help="runs per tool (median reported)")
    ap.add_argument("--workers", type=int, default=2, help="the all-cores row (1: none)")
    ap.add_argument(
        "--partitions", type=int, default=5,
        help="virtual partitions of the all-cores row (flows are hashed onto them)",
    )  # fmt: skip
    ap.add_argument("--scales", default="1,2,4", help="capture sizes for scaling ('' = none)")
    ap.add_argument("--scale-runs", type=int, default=3, help="runs per tool and size")
    ap.add_argument("--no-compare", action="store_true", help="skip tshark and tcpflow")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/ (plot, md)")
    a = ap.parse_args()

    compileall.compile_dir(REPO, quiet=1, rx=re.compile(r"/(\.venv|\.git|tests|fuzz|bench)/"))
    pcap = get_capture(a)
    packets, nbytes = capture_stats(pcap)
    print(f"{pcap}: {packets} packets, {nbytes / 1e6:.1f} MB captured")
    load0 = os.getloadavg()[0]
    if load0 > 0.5:
        print(f"note: load average {load0:.2f} before the runs: ratios hold, absolutes may not")
    started = time.time()

    tools = make_tools(a)
    results = bench_round_robin(tools, pcap, a.runs)
    summary = replay_summary(results[0].stderr)
    if summary:
        keys = ("packets", "flows", "transactions", "anomalies", "undecodable_packets")
        print("wirestream says: " + ", ".join(f"{k} {summary.get(k)}" for k in keys))
        if summary.get("packets") != packets:
            print(f"  WARNING: wirestream counted {summary.get('packets')} packets, not {packets}")

    scaled: dict[int, tuple[int, int, list[Result]]] = {}
    factors = [int(x) for x in a.scales.split(",") if x.strip()]
    for f in factors:
        if f == 1:
            scaled[1] = (packets, nbytes, results)
            continue
        big = scaled_capture(pcap, f, a.workdir / f"{pcap.stem}_x{f}.pcap")
        scaled[f] = (packets * f, nbytes * f, bench_round_robin(tools, big, a.scale_runs, f"{f}x "))
    load1 = os.getloadavg()[0]

    report = [
        f"Capture: `{pcap.name}`: {packets:,} packets, {nbytes / 1e6:.0f} MB captured "
        f"({nbytes / packets:.0f} B/packet).",
        f"Machine: {machine()}; {versions()}.",
        f"Run: {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, {a.runs} runs per "
        f"tool, load average {load0:.2f} before and {load1:.2f} after.",
        "",
        table(results, packets, nbytes),
    ]
    if len(scaled) > 1:
        report += [
            "",
            f"Scaling (copies of the capture one after the other; {a.scale_runs} runs "
            "per size, medians; peak RSS is the largest run's):",
            "",
            scaling_table(scaled),
        ]
    text = "\n".join(report)
    print()
    print(text)
    if not a.no_docs:
        plot(results, packets, scaled, PLOT)
        write_docs(DOCS, text + f"\n\n![throughput and memory]({PLOT.name})")
        print(f"\nwrote {DOCS.relative_to(REPO)} and {PLOT.relative_to(REPO)}")
    return 0 if results[0].times else 1


if __name__ == "__main__":
    sys.exit(main())
