#!/usr/bin/env python3
"""Replay throughput benchmark: `wirestream replay` next to tshark and tcpflow on one capture.

Not a test. Runs each tool several times on the same capture and reports the median wall time as
packets/s and MB/s (captured bytes), plus the peak RSS of each run (wait4 rusage of that child).

Capture, in order of preference:
  --pcap FILE                      use it;
  --make perf (default when root)  record real nginx + wrk traffic through a veth pair with
                                   /work/shared/tools/make_perf_capture.sh (needs root and
                                   `apt-get install -y nginx-light wrk curl tcpdump ethtool`);
  --make synth (fallback)          concatenate time- and port-shifted copies of
                                   fixtures/pcaps/own_wrk_small.pcap until --packets packets.
Generated captures are kept in --workdir and reused (pass --fresh to remake them).

Usage: .venv/bin/python bench/replay_bench.py [--pcap FILE] [--runs 5] [--no-decoders]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PERF_SCRIPT = Path("/work/shared/tools/make_perf_capture.sh")
PERF_PACKAGES = ("nginx", "wrk", "curl", "tcpdump", "ethtool", "ip")
TEMPLATE = REPO / "fixtures" / "pcaps" / "own_wrk_small.pcap"
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
    subprocess.run(["bash", str(PERF_SCRIPT), str(out), str(seconds), str(connections)], check=True)


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


def capture_stats(path: Path) -> tuple[int, int]:
    """(packets, captured bytes)."""
    import dpkt

    with path.open("rb") as f:
        try:
            reader = dpkt.pcap.Reader(f)
        except ValueError:
            f.seek(0)
            reader = dpkt.pcapng.Reader(f)
        packets = nbytes = 0
        for _, buf in reader:
            packets += 1
            nbytes += len(buf)
    return packets, nbytes


def get_capture(a: argparse.Namespace) -> Path:
    if a.pcap:
        return Path(a.pcap)
    a.workdir.mkdir(parents=True, exist_ok=True)
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
@dataclass
class Result:
    tool: str
    times: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    error: str | None = None
    stderr: bytes = b""

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def run_once(cmd: list[str], cwd: Path) -> tuple[float, int, int, bytes]:
    """(wall seconds, peak RSS KiB, exit status, stderr tail) of one child."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return wall, int(usage.ru_maxrss), p.returncode, err.read()[-2000:]


def bench(tool: str, cmd_for, runs: int, cleanup=None) -> Result:
    res = Result(tool)
    for i in range(runs):
        cmd = cmd_for()
        wall, rss, rc, err = run_once(cmd, REPO)
        if cleanup:
            cleanup()
        if rc != 0:
            tail = err.decode("utf-8", "replace").strip().splitlines() or [""]
            res.error = f"exit {rc}: {tail[-1][:200]}"
            print(f"  {tool} run {i + 1}: FAILED ({res.error})")
            return res
        res.times.append(wall)
        res.rss_kb.append(rss)
        res.stderr = err
        print(f"  {tool} run {i + 1}/{runs}: {wall:.2f}s, peak RSS {rss / 1024:.0f} MiB")
    return res


def replay_summary(stderr: bytes) -> dict | None:
    """wirestream's own end-of-replay log line (JSON on a non-terminal), as a sanity check."""
    for line in reversed(stderr.decode("utf-8", "replace").splitlines()):
        if '"replay_finished"' in line:
            try:
                return json.loads(line[line.index("{") :])
            except ValueError:
                return None
    return None


def wirestream_cmd(pcap: Path, no_decoders: bool) -> list[str]:
    py = REPO / ".venv" / "bin" / "python"
    cmd = [str(py if py.exists() else sys.executable), str(REPO / "runner.py"), "replay"]
    cmd += [str(pcap), "--output", "/dev/null"]
    return cmd + (["--decoders", "none"] if no_decoders else [])


TSHARK_FIELDS = ["tcp.stream", "http.request.method", "http.request.uri", "http.response.code"]


def tshark_cmd(pcap: Path) -> list[str]:
    cmd = ["tshark", "-n", "-r", str(pcap), "-Y", "http", "-T", "fields"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    return cmd


def report(results: list[Result], packets: int, nbytes: int, pcap: Path) -> str:
    base = next((r for r in results if r.tool.startswith("wirestream") and r.times), None)
    lines = [
        f"capture: {pcap} ({packets} packets, {nbytes / 1e6:.1f} MB captured, "
        f"file {pcap.stat().st_size / 1e6:.1f} MB)",
        "",
        f"| {'tool':<24} | runs | median s | packets/s | MB/s  | peak RSS MiB | time vs ws |",
        "|" + "---|" * 7,
    ]
    for r in results:
        if not r.times:
            lines.append(f"| {r.tool:<24} | {r.error or 'not run'} |")
            continue
        m = r.median
        ratio = f"{m / base.median:.2f}x" if base else "-"
        lines.append(
            f"| {r.tool:<24} | {len(r.times):>4} | {m:8.2f} | {packets / m:9.0f} | "
            f"{nbytes / m / 1e6:5.1f} | {max(r.rss_kb) / 1024:12.0f} | {ratio:>10} |"
        )
    lines.append("")
    lines.append("time vs ws: median time / wirestream's median time (> 1: slower).")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pcap", help="capture to replay (default: make one)")
    ap.add_argument("--make", choices=("auto", "perf", "synth"), default="auto")
    ap.add_argument("--seconds", type=int, default=3, help="perf capture: wrk duration")
    ap.add_argument("--connections", type=int, default=16, help="perf capture: wrk connections")
    ap.add_argument("--packets", type=int, default=200_000, help="synth capture: packets")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wsbench")
    ap.add_argument("--fresh", action="store_true", help="remake a generated capture")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-decoders", action="store_true", help="wirestream --decoders none")
    ap.add_argument("--no-compare", action="store_true", help="skip tshark and tcpflow")
    a = ap.parse_args()

    pcap = get_capture(a)
    packets, nbytes = capture_stats(pcap)
    print(f"{pcap}: {packets} packets, {nbytes / 1e6:.1f} MB")

    label = "wirestream" + (" --decoders none" if a.no_decoders else "")
    results = [bench(label, lambda: wirestream_cmd(pcap, a.no_decoders), a.runs)]
    if not a.no_compare:
        if shutil.which("tshark"):
            results.append(bench("tshark -Y http -T fields", lambda: tshark_cmd(pcap), a.runs))
        else:
            print(f"tshark not installed ({INSTALL_HINT['tshark']}); skipping it")
        if shutil.which("tcpflow"):
            outdir = Path(tempfile.mkdtemp(prefix="wsbench-tcpflow-"))

            def tcpflow_cmd() -> list[str]:
                outdir.mkdir(exist_ok=True)
                return ["tcpflow", "-r", str(pcap), "-o", str(outdir)]

            results.append(
                bench(
                    "tcpflow -r -o DIR",
                    tcpflow_cmd,
                    a.runs,
                    cleanup=lambda: shutil.rmtree(outdir, ignore_errors=True),
                )
            )
        else:
            print(f"tcpflow not installed ({INSTALL_HINT['tcpflow']}); skipping it")
    summary = replay_summary(results[0].stderr)
    if summary:
        keys = ("packets", "flows", "transactions", "anomalies", "undecodable_packets")
        print("wirestream says: " + ", ".join(f"{k} {summary.get(k)}" for k in keys))
        if summary.get("packets") != packets:
            print(f"  WARNING: wirestream counted {summary.get('packets')} packets, not {packets}")
    print()
    print(report(results, packets, nbytes, pcap))
    return 0 if results[0].times else 1


if __name__ == "__main__":
    sys.exit(main())
