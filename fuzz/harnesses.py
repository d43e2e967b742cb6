"""Byte-level fuzz targets, one per entry point that sees attacker-controlled bytes.

Each target takes one fuzzer input (bytes) and raises only on a bug: the documented
exceptions of the entry point are caught here, everything else escapes (atheris reports it
as a crash, with the input saved). The targets do not import atheris: `Input` consumes the
bytes as structured values, so `python fuzz/run_fuzz.py smoke` runs them without it.
`seeds(target)` gives the fixture-derived starting corpus.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wirestream.decoders.dns import DnsDecoder  # noqa: E402
from wirestream.decoders.http import HttpDecoder  # noqa: E402
from wirestream.decoders.tls import TlsDecoder  # noqa: E402
from wirestream.probe.capture import open_capture  # noqa: E402
from wirestream.probe.defrag import Defragmenter  # noqa: E402
from wirestream.probe.errors import CaptureError, FlowKeyError, ParseError, RecordError  # noqa: E402
from wirestream.probe.flowkey import decode_flow_key, flow_key  # noqa: E402
from wirestream.probe.packet import Packet  # noqa: E402
from wirestream.probe.parse import Fragment, parse_frame  # noqa: E402
from wirestream.probe.record import decode_record  # noqa: E402
from wirestream.probe.source import PacketSource  # noqa: E402
from wirestream.reassembly.halfstream import OVERLAP_POLICIES  # noqa: E402
from wirestream.reassembly.limits import Limits  # noqa: E402

FIXTURES = sorted((ROOT / "fixtures" / "pcaps").glob("*.pcap*"))
SCRATCH = Path("/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp")


class Input:
    """Consumes fuzzer bytes as structured values (zeros once exhausted)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def bytes(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def int(self, n: int) -> int:
        return int.from_bytes(self.bytes(n).ljust(n, b"\0"), "big")

    def below(self, n: int) -> int:
        return self.int(4) % n if n > 0 else 0


# ------------------------------------------------------------------ probe targets
def capture(data: bytes) -> None:
    """pcap/pcapng reader + parse + defrag + flow keys over a whole file."""
    path = SCRATCH / f"wirestream-fuzz-{os.getpid()}.pcap"
    path.write_bytes(data)
    try:
        with open_capture(path) as cap:
            for kp in PacketSource(reorder_window_ns=10**9).keyed(cap):
                decode_flow_key(kp.key)
    except CaptureError as exc:
        assert 0 <= exc.offset <= len(data) and "\n" not in str(exc)


def frame(data: bytes) -> None:
    """parse_frame on any link type: only ParseError; packets give decodable flow keys."""
    inp = Input(data)
    linktype = inp.int(2)
    raw = inp.bytes(inp.left)
    try:
        out = parse_frame(linktype, raw, 1, len(raw))
    except ParseError:
        return
    if isinstance(out, Packet):
        key, _ = flow_key(out)
        fields = decode_flow_key(key)
        assert {fields.lower, fields.higher} == {(out.src, out.sport), (out.dst, out.dport)}


def codecs(data: bytes) -> None:
    """decode_record / decode_flow_key on garbage: only RecordError / FlowKeyError."""
    try:
        decode_record(data)
    except RecordError:
        pass
    try:
        decode_flow_key(data)
    except FlowKeyError:
        pass


def defrag(data: bytes) -> None:
    """Arbitrary fragments into a small Defragmenter: never raises, stays within its caps."""
    inp = Input(data)
    d = Defragmenter(max_datagrams=1 + inp.below(8), max_fragments=1 + inp.below(16),
                     max_bytes=inp.below(1 << 16), max_size=1 + inp.below(70_000))  # fmt: skip
    ts = 10**18
    while inp.left:
        v6, more = inp.below(2) == 1, inp.below(2) == 1
        src = bytes(15) + bytes([inp.below(3)]) if v6 else bytes([10, 0, 0, inp.below(3)])
        ident, proto = inp.below(4), (6, 17, 1)[inp.below(3)]
        ts += (0, 1000, 31 * 10**9)[inp.below(3)]
        if v6:
            header = struct.pack("!IHBB16s16s", 0x60000000, 0, 44, 64, src, bytes(16))
        else:
            header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, ident, 0, 64, proto, 0, src,
                                 bytes(4))  # fmt: skip
        frag = Fragment(ts, 6 if v6 else 4, proto, src, bytes(16 if v6 else 4), ident,
                        inp.int(2) * (8 if inp.below(4) else 1), more, header,
                        inp.bytes(inp.below(80)), (), 0, 101, b"", 6 if v6 else 9)  # fmt: skip
        done = d.feed(frag)
        assert len(d) <= d.max_datagrams and 0 <= d.buffered <= d.max_bytes
        if done is not None:
            try:
                parse_frame(done.linktype, done.frame, done.ts_ns, len(done.frame))
            except ParseError:
                pass


# ------------------------------------------------------------------ reassembly target
def tcp(data: bytes) -> None:
    """Arbitrary segments into one TcpFlow, the invariants checked after every packet."""
    from tests.test_fuzz_reassembly import _packet, check_digest, check_flow, new_flow
    from wirestream.probe.packet import ACK, FIN, PSH, RST, SYN

    inp = Input(data)
    limits = Limits(max_parked_bytes=1 + inp.below(4096), max_parked_segments=1 + inp.below(16),
                    overlap_policy=OVERLAP_POLICIES[inp.below(len(OVERLAP_POLICIES))])  # fmt: skip
    flags_table = (ACK, ACK | PSH, SYN, SYN | ACK, ACK | FIN, ACK | RST, RST, 0, FIN)
    isn = (inp.int(4), inp.int(4))
    flow, rec = new_flow()
    i = 0
    while inp.left:
        side = inp.below(2)
        flags = flags_table[inp.below(len(flags_table))]
        seq = (isn[side] + inp.int(2) - 256) & 0xFFFFFFFF
        ack = (isn[1 - side] + inp.int(2) - 256) & 0xFFFFFFFF
        payload = inp.bytes(inp.below(256))
        flow.on_packet(_packet(side, seq, ack, flags, payload, i), side, limits)
        check_flow(flow, rec, limits)
        i += 1
    flow.close("end_of_input")
    check_flow(flow, rec, limits)
    check_digest(flow, rec)


# ------------------------------------------------------------------ decoder targets
def encode_events(events: list[tuple]) -> bytes:
    """Decoder events -> fuzzer bytes (the inverse of `decode_events`)."""
    out = bytearray()
    for kind, direction, value in events:
        if kind == "gap":
            out += bytes([2 | direction]) + (value & 0xFFFFFFFF).to_bytes(4, "big")
        else:
            value = value[:0xFFFF]
            out += bytes([direction]) + len(value).to_bytes(2, "big") + value
    return bytes(out)


def decode_events(inp: Input) -> list[tuple]:
    events = []
    while inp.left:
        head = inp.int(1)
        if head & 2:
            events.append(("gap", head & 1, max(1, inp.int(4) % (1 << 31))))
        else:
            events.append(("data", head & 1, inp.bytes(inp.int(2))))
    return events


def _decoder_target(cls: type, transport: str) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        from tests.test_fuzz_decoders import check_output, drive

        inp = Input(data)
        restore_at = inp.int(1)
        events = decode_events(inp)
        if transport == "udp":
            events = [e for e in events if e[0] == "data"]
        out = drive(cls, transport, events, {})
        check_output(out, {})
        if events:
            assert drive(cls, transport, events, {}, restore_at % (len(events) + 1)) == out

    target.__name__ = f"{cls.name}_{transport}"
    return target


TARGETS: dict[str, Callable[[bytes], None]] = {
    "capture": capture,
    "frame": frame,
    "codecs": codecs,
    "defrag": defrag,
    "tcp": tcp,
    "http": _decoder_target(HttpDecoder, "tcp"),
    "tls": _decoder_target(TlsDecoder, "tcp"),
    "dns_tcp": _decoder_target(DnsDecoder, "tcp"),
    "dns_udp": _decoder_target(DnsDecoder, "udp"),
}


def seeds(target: str) -> Iterator[bytes]:
    """A starting corpus from the fixtures (and a few hand-made inputs)."""
    if target == "capture":
        for path in FIXTURES:
            if path.stat().st_size <= 64 * 1024:
                yield path.read_bytes()
    elif target in ("frame", "codecs"):
        for path in FIXTURES[::3]:
            try:
                with open_capture(path) as cap:
                    for i, (linktype, ts_ns, orig_len, raw) in enumerate(cap):
                        if i >= 5:
                            break
                        yield linktype.to_bytes(2, "big") + raw
                        if target == "codecs":
                            yield struct.pack(">BBHQI", 1, 0, linktype, ts_ns, orig_len) + raw
            except CaptureError:
                continue
    elif target in ("defrag", "tcp"):
        yield bytes(range(256)) * 2
        yield b"\x01" * 64 + b"\x00" * 64
    else:
        from tests.test_fuzz_decoders import SEEDS

        transport = "udp" if target == "dns_udp" else "tcp"
        for flow_transport, events in SEEDS:
            if flow_transport == transport:
                yield b"\x03" + encode_events(events)
