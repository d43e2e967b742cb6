"""Long fuzzing runs (`make fuzz`), beyond the bounded ones of the normal test run.

    python fuzz/run_fuzz.py hypothesis [--examples 20000] [--variants 50] [-- PYTEST ARGS]
        the property tests of tests/test_fuzz_*.py with many more examples and a random
        seed, and many more mutated variants of every fixture (tests/test_broken_inputs.py)
    python fuzz/run_fuzz.py atheris TARGET [--seconds 600] [--corpus DIR] [-- LIBFUZZER ARGS]
        coverage-guided fuzzing of one target of fuzz/harnesses.py with atheris (libFuzzer),
        seeded from the fixtures; a crash, a slow input (-timeout) or an RSS over the limit
        (-rss_limit_mb) is saved under DIR/artifacts/
    python fuzz/run_fuzz.py smoke
        every atheris target over its seeds and a few thousand random inputs, no atheris needed
    python fuzz/run_fuzz.py list

Targets: capture, frame, codecs, defrag, tcp, http, tls, dns_tcp, dns_udp.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUZZ_TESTS = [
    "tests/test_fuzz_probe.py",
    "tests/test_fuzz_reassembly.py",
    "tests/test_fuzz_decoders.py",
    "tests/test_broken_inputs.py::test_mutated_fixture_replays_cleanly",
]


def run_hypothesis(examples: int, variants: int, extra: list[str]) -> int:
    env = dict(os.environ)
    env["WIRESTREAM_FUZZ_EXAMPLES"] = str(examples)
    env["WIRESTREAM_FUZZ_VARIANTS"] = str(variants)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FUZZ_TESTS, *extra]
    print("+", " ".join(cmd), f"(examples={examples}, variants={variants})", flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


def run_atheris(target: str, seconds: int, corpus: Path | None, extra: list[str]) -> int:
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install atheris (the `fuzz` extra)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from fuzz import harnesses

    fn = harnesses.TARGETS[target]
    corpus = corpus or Path("/tmp/wirestream-fuzz") / target
    artifacts = corpus / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    if not any(p.is_file() for p in corpus.iterdir()):
        for i, seed in enumerate(harnesses.seeds(target)):
            (corpus / f"seed-{i:05d}").write_bytes(seed)
    atheris.instrument_all()
    args = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={seconds}",
        "-timeout=10",  # an input taking longer is a finding (CPU exhaustion)
        "-rss_limit_mb=2048",
        "-max_len=262144",
        f"-artifact_prefix={artifacts}/",
        *extra,
    ]
    atheris.Setup(args, fn)
    atheris.Fuzz()
    return 0


def run_smoke(runs: int = 2000) -> int:
    sys.path.insert(0, str(ROOT))
    from fuzz import harnesses

    rng = random.Random(0)
    failures = 0
    for name, fn in harnesses.TARGETS.items():
        started = time.perf_counter()
        corpus = list(harnesses.seeds(name))
        inputs = corpus + [bytes(rng.getrandbits(8) for _ in range(rng.randrange(300)))
                           for _ in range(runs)]  # fmt: skip
        for i, data in enumerate(inputs):
            if corpus and i >= len(corpus) and rng.random() < 0.5:  # a mutated seed
                buf = bytearray(rng.choice(corpus))
                for _ in range(rng.randint(1, 8)):
                    if buf:
                        buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
                data = bytes(buf[: rng.randrange(len(buf) + 1)])
            try:
                fn(data)
            except Exception as exc:  # a finding: report and go on
                failures += 1
                print(f"{name}: input {i}: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
        print(f"{name}: {len(inputs)} inputs ({len(corpus)} seeds) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
    return 1 if failures else 0


def main() -> int:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    hp = sub.add_parser("hypothesis")
    hp.add_argument("--examples", type=int, default=20_000)
    hp.add_argument("--variants", type=int, default=50)
    at = sub.add_parser("atheris")
    at.add_argument("target")
    at.add_argument("--seconds", type=int, default=600)
    at.add_argument("--corpus", type=Path)
    sm = sub.add_parser("smoke")
    sm.add_argument("--runs", type=int, default=2000)
    sub.add_parser("list")
    args = ap.parse_args(argv)
    if args.mode == "hypothesis":
        return run_hypothesis(args.examples, args.variants, extra)
    if args.mode == "atheris":
        return run_atheris(args.target, args.seconds, args.corpus, extra)
    if args.mode == "smoke":
        return run_smoke(args.runs)
    sys.path.insert(0, str(ROOT))
    from fuzz import harnesses

    print("\n".join(harnesses.TARGETS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
