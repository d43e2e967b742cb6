"""Write a large synthetic capture of interleaved keep-alive HTTP connections.

For benchmarks (`make bench`) and memory tests: N connections, each with several
request/response exchanges (bodies of a few KB to tens of KB, MSS 1448), interleaved by
timestamp as a busy link would show them. Deterministic for a given seed.

    python bench/synth_capture.py OUT.pcap [--connections 2000] [--exchanges 10]
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.flowgen import Conversation, http_exchange
from tests.pcapgen import write_pcap


def synth_frames(connections: int, exchanges: int, seed: int = 1) -> list[tuple[int, bytes]]:
    rnd = random.Random(seed)
    streams = []
    for i in range(connections):
        conv = Conversation(
            client=f"10.{1 + i // 65000}.{(i // 250) % 250}.{1 + i % 250}",
            server="192.0.2.80",
            sport=20000 + i % 40000,
            dport=80,
            isn_c=rnd.randrange(2**32),
            isn_s=rnd.randrange(2**32),
            ts_ns=1_700_000_000_000_000_000 + i * 3_000_000,
            step_ns=200_000 + rnd.randrange(400_000),
            mss=1448,
        )
        conv.handshake()
        for j in range(exchanges):
            body = rnd.randbytes(rnd.choice((512, 2048, 8192, 16384, 40000)))
            req, resp = http_exchange(f"/item/{i}/{j}", body)
            conv.send(True, req).send(False, resp)
        conv.close()
        streams.append(conv.frames)
    return list(heapq.merge(*streams, key=lambda rec: rec[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="pcap file to write")
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--exchanges", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    frames = synth_frames(args.connections, args.exchanges, args.seed)
    write_pcap(args.out, frames)
    print(f"{args.out}: {len(frames)} packets", file=sys.stderr)


if __name__ == "__main__":
    main()
