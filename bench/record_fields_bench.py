"""Replay speed of this tree against another checkout (e.g. before a change), alternating.

    git archive BASE | tar -x -C /some/dir
    .venv/bin/python bench/record_fields_bench.py --base /some/dir [--runs 5]

Captures (made once in --workdir): a synthetic HTTP capture (replay_bench's `synth`, about
--packets packets), and the largest fixture (HTTP, JPEG downloads), a DNS and a TLS fixture
repeated one after the other (replay_bench's scaled_capture) so each replay runs long
enough. Each round runs every tree once per capture, in alternating order; the table gives
the median packets per CPU second of the replay process (user + system: wall time on a
shared machine measures the neighbours) and the ratio this/base. Both trees run with the
same interpreter (this venv), the base tree first on the import path.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from replay_bench import capture_stats, scaled_capture, synthesize  # noqa: E402

RUN = "import sys; from runner import main; sys.exit(main(sys.argv[1:]))"


def retimed(src: Path, out: Path) -> Path:
    """`src` with its packets 1 ms apart, in file order (the ECS fixture joins captures
    years apart: too long a span to repeat)."""
    import dpkt

    if not out.exists():
        with src.open("rb") as f, out.open("wb") as g:
            r = dpkt.pcap.Reader(f)
            w = dpkt.pcap.Writer(g, linktype=r.datalink(), snaplen=262144)
            for i, (_, buf) in enumerate(r):
                w.writepkt(buf, ts=1_600_000_000 + i / 1000)
    return out


def replay_seconds(tree: Path, pcap: Path, extra: list[str]) -> float:
    """CPU seconds (user + system) of one replay: on a shared machine the wall time follows
    the other jobs' load far more than the code under test."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-c", RUN, "replay", str(pcap), "--no-progress", "-o", os.devnull]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([*cmd, *extra], env=env, cwd=tree, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, type=Path, help="the other checkout")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--packets", type=int, default=150_000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "wsfields")
    ap.add_argument("-O", dest="options", action="append", default=[], help="for this tree")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    fixtures = REPO / "fixtures" / "pcaps"
    http = a.workdir / "synth_http.pcap"
    if not http.exists():
        synthesize(http, a.packets)
    caps = {
        "http (synthetic)": http,
        "largest fixture (jpegs x100)": scaled_capture(
            fixtures / "tcpflow__samplePcaps__jpegs.cap", 100, a.workdir / "jpegs_x100.pcap"
        ),
        "dns (edns-ecs x1500)": scaled_capture(
            retimed(fixtures / "zeek__dns-edns-ecs.pcap", a.workdir / "dns_ecs.pcap"),
            1500,
            a.workdir / "dns_x1500.pcap",
        ),
        "tls (tls1.2 x1500)": scaled_capture(
            fixtures / "zeek__tls__tls1.2.pcap", 1500, a.workdir / "tls12_x1500.pcap"
        ),
    }
    extra = [x for o in a.options for x in ("-O", o)]
    print("| capture | packets | base pkt/cpu-s | this pkt/cpu-s | this/base |")
    print("|---|---|---|---|---|")
    for label, pcap in caps.items():
        packets, _ = capture_stats(pcap)
        times: dict[str, list[float]] = {"base": [], "this": []}
        for i in range(a.runs):
            order = [("base", a.base, []), ("this", REPO, extra)]
            for name, tree, ex in order if i % 2 == 0 else reversed(order):
                times[name].append(replay_seconds(tree, pcap, ex))
        b = packets / statistics.median(times["base"])
        t = packets / statistics.median(times["this"])
        print(f"| {label} | {packets} | {b:,.0f} | {t:,.0f} | {t / b:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
