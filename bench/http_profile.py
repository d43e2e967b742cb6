#!/usr/bin/env python3
"""Profile and guard the HTTP decoder: speed work must not change one output byte.

Not a test. Modes (combinable):
  --baseline DIR   write the records of every fixtures/pcaps capture (and --synth) to
                   DIR/<name>.jsonl (json.dumps of each record, key order kept)
  --check DIR      the same records, compared with DIR: lists the captures that differ
  --profile        cProfile of the replay of --synth with the HTTP decoder, top --top lines
  --rate           packets/s of the replay of --synth (HTTP on), best of --runs
  --decoder-only   time the HTTP decoder alone on the TCP streams of --synth (no capture
                   parsing, no reassembly): µs per delivery, best of --runs (with --profile:
                   cProfile of that instead)

Usage: .venv/bin/python bench/http_profile.py --synth /tmp/synth.pcap --check /tmp/http_baseline
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wirestream.streams.config import RuntimeConfig  # noqa: E402
from wirestream.streams.replay import Replay, replay_records  # noqa: E402

PCAPS = REPO / "fixtures" / "pcaps"


def captures(synth: str | None) -> list[Path]:
    paths = sorted(p for p in PCAPS.iterdir() if ".pcap" in p.name or p.suffix == ".cap")
    if synth:
        paths.append(Path(synth))
    return paths


def records_text(path: Path) -> str:
    return "".join(json.dumps(r, sort_keys=False) + "\n" for r in replay_records([str(path)]))


def baseline(out: Path, paths: list[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        (out / f"{p.name}.jsonl").write_text(records_text(p))
    print(f"baseline of {len(paths)} captures in {out}")


def check(ref: Path, paths: list[Path]) -> bool:
    bad = []
    for p in paths:
        want = ref / f"{p.name}.jsonl"
        if not want.exists():
            print(f"  no baseline for {p.name}")
            continue
        got = records_text(p)
        if got != want.read_text():
            bad.append(p.name)
            a, b = want.read_text().splitlines(), got.splitlines()
            first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            print(f"  DIFF {p.name}: {len(a)} -> {len(b)} records, first differing line {first}")
    print("check:", "all identical" if not bad else f"{len(bad)} captures differ")
    return not bad


def replay_http(path: str) -> float:
    summary = Replay(RuntimeConfig(decoders=["http"]), lambda _b: None).run([path])
    return summary.packets / summary.seconds


def profile(path: str, top: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    rate = replay_http(path)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    print(buf.getvalue())
    print(f"(under cProfile: {rate:,.0f} packets/s)")


def stream_events(path: str) -> list[list]:
    """Every flow's decoder events (tests' in-order stream extractor), cached next to the file."""
    import pickle

    from tests.test_http_support import tcp_flows

    cache = Path(path + ".events.pickle")
    if cache.exists() and cache.stat().st_mtime > Path(path).stat().st_mtime:
        return pickle.loads(cache.read_bytes())
    flows = [[key, ev] for key, ev in tcp_flows(Path(path)).items()]
    cache.write_bytes(pickle.dumps(flows))
    return flows


def decoder_only(flows: list[list]) -> tuple[float, int]:
    from tests.test_http_support import FakeCtx, apply, flow_info
    from wirestream.decoders.http import HttpDecoder

    n = 0
    t = time.process_time()  # CPU time: the machine is shared
    for key, events in flows:
        ctx = FakeCtx(flow_info(key))
        dec = HttpDecoder(ctx, {})
        for e in events:
            apply(dec, ctx, e)
        n += len(events)
    return time.process_time() - t, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", help="synthetic capture (bench/synth_capture.py)")
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--check", type=Path)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--rate", action="store_true")
    ap.add_argument("--decoder-only", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    ok = True
    if args.baseline:
        baseline(args.baseline, captures(args.synth))
    if args.check:
        ok = check(args.check, captures(args.synth))
    if args.synth and args.decoder_only:
        flows = stream_events(args.synth)
        if args.profile:
            prof = cProfile.Profile()
            prof.runcall(decoder_only, flows)
            pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
        for _ in range(args.runs):
            secs, n = decoder_only(flows)
            print(f"  decoder only: {secs:.2f} s, {secs / n * 1e6:.2f} µs per event ({n} events)")
    elif args.synth and args.profile:
        profile(args.synth, args.top)
    if args.synth and args.rate:
        rates = []
        for _ in range(args.runs):
            t = time.perf_counter()
            rates.append(replay_http(args.synth))
            print(f"  run: {rates[-1]:,.0f} packets/s ({time.perf_counter() - t:.1f} s)")
        print(f"rate: best {max(rates):,.0f} packets/s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
