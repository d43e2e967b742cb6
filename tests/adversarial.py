"""Adversarial captures: what an attacker on the monitored network can send at wirestream.

Each capture holds one attack and, after it, one ordinary HTTP flow (tests/flowgen.py) that
must still be decoded normally. Generators stream frames to disk, so the full (bench) sizes
never sit in memory. Used by tests/test_hostile_captures.py (small sizes) and runnable:

    python -m tests.adversarial OUTDIR            # write the test-size captures
    python -m tests.adversarial OUTDIR --bench    # full sizes (5,000 x 100 KB, 300,000 SYNs)
    python -m tests.adversarial OUTDIR --measure  # also replay each in a child: RSS, time

The expected outcome of each capture is in docs/hostile-input.md and asserted by the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

from tests.flowgen import ACK, PSH, SYN, Conversation, http_exchange
from tests.pcapgen import ether, fragment_ipv4, ipv4, tcp

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000
MSS = 1448

# The ordinary flow every capture ends with.
NORMAL_CLIENT, NORMAL_SERVER, NORMAL_SPORT = "192.168.77.10", "192.168.77.80", 55555
NORMAL_URI = "/normal/after-the-attack.html"
NORMAL_BODY = bytes(range(256)) * 20  # 5120 bytes, more than one segment
NORMAL_BODY_SHA256 = hashlib.sha256(NORMAL_BODY).hexdigest()

# Sizes that change between the test run and the bench run; everything else is fixed.
GZIP_INFLATED = 1 << 30  # 1 GiB of zeros behind a ~1 MB (gzip) or ~2 KB (gzip, gzip) body
HEADER_LINES = 50_000
PIPELINED = 5_000
SLOW_LINES, SLOW_EVERY_NS = 360, 10 * SEC  # one header line every 10 s for an hour


@dataclass(frozen=True)
class Scale:
    ooo_flows: int = 800  # x 100 KB: 80 MB parked, over the 64 MiB task memcap
    ooo_bytes: int = 100_000
    syn_flows: int = 20_000
    syn_max_flows: int = 1_000  # --max-flows for the test run (None: the default)
    frag_datagrams: int = 10_000
    ack_gap_pairs: int = 2
    jumbo_frames: int = 200


TEST = Scale()
BENCH = Scale(
    ooo_flows=5_000,
    syn_flows=300_000,
    syn_max_flows=0,
    frag_datagrams=100_000,
    ack_gap_pairs=20,
    jumbo_frames=8_000,
)


class PcapWriter:
    """Streams a microsecond pcap (Ethernet) to disk; timestamps must not go backwards."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.count = 0
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))

    def add(self, ts_ns: int, frame: bytes) -> None:
        sec, ns = divmod(ts_ns, SEC)
        self.f.write(struct.pack("<IIII", sec, ns // 1000, len(frame), len(frame)) + frame)
        self.count += 1

    def extend(self, frames: Iterable[tuple[int, bytes]]) -> None:
        for ts_ns, frame in frames:
            self.add(ts_ns, frame)


def normal_flow(w: PcapWriter, ts_ns: int) -> int:
    """The ordinary keep-alive HTTP exchange every capture ends with; returns the next ts."""
    request, response = http_exchange(NORMAL_URI, NORMAL_BODY)
    c = Conversation(NORMAL_CLIENT, NORMAL_SERVER, NORMAL_SPORT, 80, ts_ns=ts_ns)
    c.handshake().send(True, request).send(False, response).close()
    w.extend(c.frames)
    return c.ts_ns


def _seg(src: str, dst: str, sport: int, dport: int, seq: int, payload: bytes = b"",
         flags: int = ACK, ack: int = 1) -> bytes:  # fmt: skip
    return ether(ipv4(tcp(sport, dport, payload, flags=flags, seq=seq, ack=ack), src, dst))


def _flood_src(i: int) -> tuple[str, int]:
    return f"10.{i // 60000 % 250}.{i // 250 % 240}.{1 + i % 250}", 1024 + i % 60000


# --------------------------------------------------------------------------- the attacks
def ooo_flood(w: PcapWriter, s: Scale) -> int:
    """Flows whose first segment never arrives, each followed by ~100 KB: every byte is
    parked out of order (per-direction caps, the per-task memcap)."""
    ts = T0
    payload = b"z" * MSS
    for i in range(s.ooo_flows):
        src, sport = _flood_src(i)
        w.add(ts, _seg(src, "192.0.2.1", sport, 80, 1000, flags=SYN, ack=0))
        ts += 10_000
        for off in range(MSS, s.ooo_bytes, MSS):  # offset 0..MSS is never sent
            w.add(ts, _seg(src, "192.0.2.1", sport, 80, 1001 + off, payload))
            ts += 10_000
    return normal_flow(w, ts + SEC)


def syn_flood(w: PcapWriter, s: Scale) -> int:
    """SYNs from distinct 5-tuples, never answered (flow table cap, SYN-only timeout)."""
    ts = T0
    for i in range(s.syn_flows):
        src, sport = _flood_src(i)
        w.add(ts, _seg(src, "192.0.2.1", sport, 80, i, flags=SYN, ack=0))
        ts += 1000
    return normal_flow(w, ts + 1000)


# Overlap evasion: the URI is "a" * 40 at stream offsets 5..45; three pairs of segments
# overlap with other bytes, parked before the hole at the start is filled. Whose bytes win
# depends on the target's policy (Suricata's target-based model; docs/architecture.md).
OVERLAP_URI_LEN = 40
OVERLAP_REQUEST_TAIL = b" HTTP/1.1\r\nHost: evasion.test\r\n\r\n"
OVERLAP_SCENARIOS = (  # (old start, old end, new start, new end), stream offsets
    (8, 12, 6, 14),  # the new segment starts before the old one
    (18, 22, 18, 26),  # same start, the new one ends after
    (30, 34, 32, 38),  # the new one starts after and ends after
)


def overlap_evasion(w: PcapWriter, s: Scale) -> int:
    """Overlapping out-of-order segments carrying different bytes (IDS evasion), then a
    retransmission with other bytes of data already delivered in order."""
    request = b"GET /" + b"a" * OVERLAP_URI_LEN + OVERLAP_REQUEST_TAIL
    c = Conversation("10.1.1.1", "10.1.1.2", 41000, 80, ts_ns=T0)
    c.handshake()
    base = c.seq[True]
    segs: list[tuple[int, bytes]] = []
    for old_s, old_e, _, _ in OVERLAP_SCENARIOS:
        segs.append((old_s, b"B" * (old_e - old_s)))
    for _, _, new_s, new_e in OVERLAP_SCENARIOS:
        segs.append((new_s, b"N" * (new_e - new_s)))
    covered = sorted((min(o, n), max(oe, ne)) for o, oe, n, ne in OVERLAP_SCENARIOS)
    pos, fill = 0, []
    for lo, hi in covered:  # the untouched bytes, sent as they are
        if lo > pos:
            fill.append((pos, request[pos:lo]))
        pos = hi
    fill.append((pos, request[pos:]))
    segs += fill[1:] + fill[:1]  # the very first bytes last: everything drains at once
    for off, data in segs:
        c._emit(True, ACK | PSH, data, seq=base + off)
    c.seq[True] = base + len(request)
    c._emit(True, ACK | PSH, b"XXXXX", seq=base)  # delivered bytes are final
    c._emit(False, ACK)
    c.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").close()
    w.extend(c.frames)
    return normal_flow(w, c.ts_ns + SEC)


ONE_BYTE_BODY = bytes(random.Random(1).getrandbits(8) for _ in range(1500))


def one_byte_segments(w: PcapWriter, s: Scale) -> int:
    """A whole exchange in 1-byte segments, in order; then again with the segments shuffled
    in windows of 8 (below the 256-segment parking cap): the streams must come out intact."""
    request, response = http_exchange("/one-byte", ONE_BYTE_BODY)
    c = Conversation("10.2.2.1", "10.2.2.2", 42000, 80, ts_ns=T0, step_ns=10_000, mss=1)
    c.handshake().send(True, request).send(False, response).close()
    w.extend(c.frames)
    rng = random.Random(8)
    c = Conversation("10.2.2.1", "10.2.2.2", 42001, 80, ts_ns=c.ts_ns, step_ns=10_000, mss=1)
    c.handshake().send(True, request).send(False, response).close()
    frames = [f for _, f in c.frames]
    # handshake (3), request bytes, ACK, response bytes, ACK, teardown (3): shuffle data only,
    # so no ACK ever acknowledges bytes not yet captured (that would be a real loss).
    req_start, resp_start = 3, 3 + len(request) + 1
    for start, n in ((req_start, len(request)), (resp_start, len(response))):
        for i in range(start, start + n, 8):
            window = frames[i : min(i + 8, start + n)]
            rng.shuffle(window)
            frames[i : i + len(window)] = window
    ts = c.frames[0][0]
    for frame in frames:  # capture time follows the new order: reordering cannot undo it
        w.add(ts, frame)
        ts += 10_000
    return normal_flow(w, ts + SEC)


@cache
def gzip_bomb_bodies() -> tuple[bytes, bytes]:
    """(gzip body, gzip-of-gzip body), both inflating to GZIP_INFLATED zero bytes: 1024
    identical gzip members of 1 MiB each (valid: a gzip file may hold many members)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = z.compress(bytes(1 << 20)) + z.flush()
    single = member * (GZIP_INFLATED >> 20)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    double = z.compress(single) + z.flush()
    return single, double


def gzip_bomb(w: PcapWriter, s: Scale) -> int:
    """Two responses inflating to 1 GiB: Content-Encoding gzip (~1 MB), and gzip, gzip
    (~2 KB: a gzip of the first body)."""
    ts = T0
    for i, (coding, body) in enumerate(
        zip(("gzip", "gzip, gzip"), gzip_bomb_bodies(), strict=True)
    ):
        request = b"GET /bomb%d HTTP/1.1\r\nHost: bomb.test\r\n\r\n" % i
        response = (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
            % (coding.encode(), len(body))
        ) + body
        c = Conversation("10.3.3.1", "10.3.3.2", 43000 + i, 80, ts_ns=ts, step_ns=10_000)
        c.handshake().send(True, request).send(False, response).close()
        w.extend(c.frames)
        ts = c.ts_ns
    return normal_flow(w, ts + SEC)


def many_headers(w: PcapWriter, s: Scale) -> int:
    """A request with 50,000 header lines (~1 MB head), answered 431; then one with 600."""
    ts = T0
    for i, n in enumerate((HEADER_LINES, 600)):
        head = b"GET /headers%d HTTP/1.1\r\nHost: headers.test\r\n" % n
        head += b"".join(b"X-Header-%05d: v\r\n" % k for k in range(n)) + b"\r\n"
        status = b"431 Request Header Fields Too Large" if n == HEADER_LINES else b"200 OK"
        c = Conversation("10.4.4.1", "10.4.4.2", 44000 + i, 80, ts_ns=ts, step_ns=10_000)
        c.handshake().send(True, head)
        c.send(False, b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n").close()
        w.extend(c.frames)
        ts = c.ts_ns
    return normal_flow(w, ts + SEC)


def pipelined(w: PcapWriter, s: Scale) -> int:
    """5,000 pipelined requests sent before any response, then the 5,000 responses."""
    requests = b"".join(
        b"GET /p/%d HTTP/1.1\r\nHost: pipe.test\r\n\r\n" % i for i in range(PIPELINED)
    )
    responses = b"".join(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d" % (len(b"%d" % i), i)
        for i in range(PIPELINED)
    )
    c = Conversation("10.5.5.1", "10.5.5.2", 45000, 80, ts_ns=T0, step_ns=10_000)
    c.handshake().send(True, requests).send(False, responses).close()
    w.extend(c.frames)
    return normal_flow(w, c.ts_ns + SEC)


CHUNK_2_64 = b"%x" % (1 << 64)


def chunk_overflow(w: PcapWriter, s: Scale) -> int:
    """Chunk sizes of 2^64: in a response, and in a request body."""
    c = Conversation("10.6.6.1", "10.6.6.2", 46000, 80, ts_ns=T0, step_ns=10_000)
    c.handshake().send(True, b"GET /chunk HTTP/1.1\r\nHost: chunk.test\r\n\r\n")
    c.send(False, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNK_2_64
           + b"\r\n" + b"x" * 3000 + b"\r\n0\r\n\r\n").close()  # fmt: skip
    w.extend(c.frames)
    c = Conversation("10.6.6.1", "10.6.6.2", 46001, 80, ts_ns=c.ts_ns, step_ns=10_000)
    c.handshake().send(True, b"POST /upload HTTP/1.1\r\nHost: chunk.test\r\nTransfer-Encoding: "
                       b"chunked\r\n\r\n" + CHUNK_2_64 + b"\r\n" + b"y" * 3000)  # fmt: skip
    c.send(False, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").close()
    w.extend(c.frames)
    return normal_flow(w, c.ts_ns + SEC)


def smuggling(w: PcapWriter, s: Scale) -> int:
    """Request smuggling: Content-Length with Transfer-Encoding (CL.TE), two conflicting
    Content-Lengths (CL.CL), and an obfuscated Transfer-Encoding."""
    bodies = (
        b"POST /clte HTTP/1.1\r\nHost: smuggle.test\r\nContent-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\nHost: smuggle.test\r\n\r\n",
        b"POST /clcl HTTP/1.1\r\nHost: smuggle.test\r\n"
        b"Content-Length: 3\r\nContent-Length: 40\r\n\r\n"
        b"abcGET /smuggled2 HTTP/1.1\r\nHost: smuggle.test\r\n\r\n",
        b"POST /teobf HTTP/1.1\r\nHost: smuggle.test\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: xchunked\r\n\r\nabc",
    )
    ts = T0
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    for i, request in enumerate(bodies):
        c = Conversation("10.7.7.1", "10.7.7.2", 47000 + i, 80, ts_ns=ts, step_ns=10_000)
        c.handshake().send(True, request).send(False, ok + ok).close()
        w.extend(c.frames)
        ts = c.ts_ns
    return normal_flow(w, ts + SEC)


def slow_headers(w: PcapWriter, s: Scale) -> int:
    """Slowloris: a header line every 10 s for an hour, never the blank line; then silence
    until the idle timeout (300 s) closes it, before the normal flow."""
    c = Conversation("10.8.8.1", "10.8.8.2", 48000, 80, ts_ns=T0, step_ns=1_000_000)
    c.handshake().send(True, b"GET /slow HTTP/1.1\r\nHost: slow.test\r\n")
    for i in range(SLOW_LINES):
        c.ts_ns += SLOW_EVERY_NS
        c.send(True, b"X-Slow-%d: %d\r\n" % (i, i))
    w.extend(c.frames)
    return normal_flow(w, c.ts_ns + 400 * SEC)


def jumbo_burst(w: PcapWriter, s: Scale) -> int:
    """A burst of 64 KB frames (what GRO/TSO captures hold) within the 1 s capture-order
    window, in order, over 50 connections: the reorder buffer holds them all."""
    payload = b"j" * 65000
    ts = T0
    for i in range(s.jumbo_frames):
        flow, k = i % 50, i // 50
        w.add(ts, _seg("10.11.0.1", "10.11.0.2", 40000 + flow, 80, 1 + k * 65000, payload))
        ts += 10_000
    return normal_flow(w, ts + SEC)


ACK_GAP = (1 << 31) - 16  # the largest hole an ACK can declare (sequence space is unwrapped)


def ack_gap_bomb(w: PcapWriter, s: Scale) -> int:
    """Forged ACKs: the server acknowledges 2 GiB of upload never sent, then the client sends
    one byte after the hole; repeated. Each hole is a gap of ACK_GAP bytes."""
    c = Conversation("10.10.10.1", "10.10.10.2", 50000, 80, ts_ns=T0, step_ns=10_000)
    c.handshake()
    c.send(True, b"POST /upload HTTP/1.1\r\nHost: ack.test\r\nContent-Length: 99999999999999\r\n"
           b"\r\nfirst bytes", ack=False)  # fmt: skip
    for _ in range(s.ack_gap_pairs):
        c.seq[True] += ACK_GAP
        c._emit(False, ACK)
        c._emit(True, ACK | PSH, b"y")
        c.seq[True] += 1
    c.send(False, b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n").close()
    w.extend(c.frames)
    return normal_flow(w, c.ts_ns + SEC)


# Fragment attacks: a flood of datagrams that never complete (each reserving ~64 KB of
# buffer: max_datagrams / max_bytes caps), one datagram in more fragments than allowed, and
# an HTTP request whose IP fragments overlap with other bytes (first copy wins).
FRAG_URI_GOOD = b"/frag/" + b"G" * 32
FRAG_URI_EVIL = b"/frag/" + b"E" * 32


def fragment_flood(w: PcapWriter, s: Scale) -> int:
    ts = T0
    for i in range(s.frag_datagrams):
        src, _ = _flood_src(i)
        w.add(ts, ether(_frag4(src, "192.0.2.9", i & 0xFFFF, 65000, True, b"f" * 16)))
        ts += 1000
    for k in range(100):  # 100 fragments for one datagram (cap: 64)
        w.add(ts, ether(_frag4("10.9.9.9", "192.0.2.9", 7, 8 * k, True, b"m" * 8)))
        ts += 1000
    request = b"GET " + FRAG_URI_GOOD + b" HTTP/1.1\r\nHost: frag.test\r\n\r\n"
    c = Conversation("10.9.0.1", "10.9.0.2", 49000, 80, ts_ns=ts, step_ns=10_000)
    c.handshake().send(True, request).send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    c.close()
    for t, frame in c.frames:
        ip = frame[14:]
        tlen = struct.unpack_from("!H", ip, 2)[0]
        if tlen - 40 != len(request):  # not the request: as captured
            w.add(t, frame)
            continue
        ip = ip[:tlen]
        frags = fragment_ipv4(ip, 16)
        evil_ip = ip.replace(FRAG_URI_GOOD, FRAG_URI_EVIL)
        evil = fragment_ipv4(evil_ip, 16)
        for k, frag in enumerate(frags):  # each original followed by a conflicting copy
            w.add(t, ether(frag))
            if 0 < k < len(frags) - 1:
                w.add(t, ether(evil[k]))
    return normal_flow(w, c.ts_ns + SEC)


def _frag4(src: str, dst: str, ident: int, offset: int, more: bool, data: bytes) -> bytes:
    """A bare IPv4 fragment of protocol TCP (checksum left 0: nothing checks it)."""
    flags = (offset // 8) | (0x2000 if more else 0)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(data), ident, flags, 64, 6, 0,
                       _a(src), _a(dst)) + data  # fmt: skip


def _a(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


@dataclass(frozen=True)
class Attack:
    name: str
    make: Callable[[PcapWriter, Scale], int]
    title: str

    def args(self, s: Scale) -> list[str]:
        """Extra `wirestream replay` options for this capture at this scale."""
        if self.name == "syn_flood" and s.syn_max_flows:
            return ["--max-flows", str(s.syn_max_flows)]
        return []


ATTACKS = (
    Attack("ooo_flood", ooo_flood, "out-of-order flood (first byte never arrives, 100 KB each)"),
    Attack("syn_flood", syn_flood, "SYN flood"),
    Attack("overlap_evasion", overlap_evasion, "overlapping segments with different data"),
    Attack("one_byte_segments", one_byte_segments, "1-byte segments, in order and shuffled"),
    Attack("gzip_bomb", gzip_bomb, "gzip bomb: 1 GiB inflated (gzip ~1 MB, gzip,gzip ~2 KB)"),
    Attack("many_headers", many_headers, "50,000 header lines (and 600)"),
    Attack("pipelined", pipelined, "5,000 pipelined requests"),
    Attack("chunk_overflow", chunk_overflow, "chunk size 2^64 (response and request)"),
    Attack("smuggling", smuggling, "request smuggling: CL.TE, CL.CL, obfuscated TE"),
    Attack("slow_headers", slow_headers, "slowloris: headers never finished"),
    Attack("fragment_flood", fragment_flood, "IP fragment flood + overlapping fragments"),
    Attack("ack_gap_bomb", ack_gap_bomb, "forged ACKs declaring 2 GiB gaps"),
    Attack("jumbo_burst", jumbo_burst, "burst of 64 KB (GRO/TSO) frames within 1 s"),
)
BY_NAME = {a.name: a for a in ATTACKS}


def write_capture(attack: Attack, path: Path, scale: Scale = TEST) -> int:
    """Write one capture; returns the number of frames."""
    with open(path, "wb") as f:
        w = PcapWriter(f)
        attack.make(w, scale)
        return w.count


# --------------------------------------------------------------------------- replay in a child
@dataclass
class ChildRun:
    exit: int
    stdout: bytes
    stderr: bytes
    peak_rss_mib: float
    seconds: float  # wall clock
    cpu_seconds: float = 0.0  # user + system of the replay process

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines()]


_LAUNCHER = """
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(rc if rc >= 0 else 128 - rc)
"""


def run_child(
    args: Sequence[str], timeout: float = 300.0, env: dict[str, str] | None = None
) -> ChildRun:
    """Run `python runner.py ARGS` and measure its peak RSS.

    Through a small launcher process: a child's ru_maxrss starts at its parent's RSS at fork
    time (Linux records the forked image's high-water mark at exec), so measuring from a big
    parent (pytest) would report the parent's size. The launcher is a fresh interpreter; its
    only child is the replay, so RUSAGE_CHILDREN there is the replay's peak."""
    import tempfile

    cmd = [sys.executable, str(ROOT / "runner.py"), *args]
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = os.path.join(tmp, "rss")
        out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, rss_file, *cmd],
                stdout=out,
                stderr=err,
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)  # the launcher's own session: it and the replay
                code = proc.wait()
            seconds = time.perf_counter() - started
        usage = Path(rss_file).read_text().split() if os.path.exists(rss_file) else ["0", "0"]
        stdout, stderr = Path(out_path).read_bytes(), Path(err_path).read_bytes()
    return ChildRun(code, stdout, stderr, int(usage[0]) / 1024, seconds, float(usage[1]))


def replay_child(
    path: Path, extra: Sequence[str] = (), timeout: float = 300.0, env: dict[str, str] | None = None
) -> ChildRun:
    return run_child(["replay", str(path), "--log-format", "json", *extra], timeout, env)


def scratch_env() -> dict[str, str]:
    """The environment with TMPDIR on a tmpfs when there is one: the replay's temporary
    RocksDB state then costs no fsync (tmpfs pages are not in the process's RSS)."""
    env = dict(os.environ)
    if os.access("/dev/shm", os.W_OK):
        env["TMPDIR"] = "/dev/shm"
    return env


def summarize(run: ChildRun) -> dict:
    kinds: Counter[str] = Counter()
    anomalies: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    for r in run.records():
        kinds[r["type"]] += 1
        if r["type"] == "anomaly":
            anomalies[r["name"]] += 1
        for t in r.get("tags", ()):
            tags[t] += 1
    return {
        "exit": run.exit,
        "peak_rss_mib": round(run.peak_rss_mib),
        "seconds": round(run.seconds, 1),
        "cpu_seconds": round(run.cpu_seconds, 1),
        "records": dict(sorted(kinds.items())),
        "anomalies": dict(sorted(anomalies.items())),
        "tags": dict(sorted(tags.items())),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write wirestream's adversarial captures.")
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--bench", action="store_true", help="full sizes (slow, large files)")
    ap.add_argument("--measure", action="store_true", help="replay each in a child process")
    ap.add_argument("--only", action="append", choices=sorted(BY_NAME), help="(repeatable)")
    args = ap.parse_args(argv)
    scale = BENCH if args.bench else TEST
    args.outdir.mkdir(parents=True, exist_ok=True)
    for attack in ATTACKS:
        if args.only and attack.name not in args.only:
            continue
        path = args.outdir / f"{attack.name}.pcap"
        started = time.perf_counter()
        frames = write_capture(attack, path, scale)
        line = {
            "capture": path.name,
            "frames": frames,
            "mib": round(path.stat().st_size / 2**20, 1),
            "write_s": round(time.perf_counter() - started, 1),
        }
        if args.measure:
            extra = attack.args(scale)
            line["args"] = extra
            line |= summarize(replay_child(path, extra, timeout=3600))
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def sha_of_zeros(n: int) -> str:
    """sha256 of n zero bytes, in 1 MiB steps (bombs inflate to zeros)."""
    h, block = hashlib.sha256(), bytes(1 << 20)
    while n:
        k = min(n, len(block))
        h.update(block[:k])
        n -= k
    return h.hexdigest()
