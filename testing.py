"""The testing kit for decoder authors, installed with wirestream as `wirestream.testing`.

Drive a decoder without the runtime, or through it, and check the two properties every
decoder must have:

- chunking does not matter: the same bytes cut at other points give the same records
  (`rechunk`), since TCP delivers whatever the segments carried;
- the restore contract: snapshot -> msgpack -> restore at any event changes no record
  (`run_events(..., restore_every=True)`, `assert_restore_safe`), since a flow moves between
  processes at every Kafka rebalance.

Events are tuples, each with the capture time it is delivered at:
    ("data", direction, bytes, ts_ns) | ("gap", direction, length, ts_ns)
    | ("close", reason, ts_ns)

    from wirestream.testing import assert_restore_safe, events_from_chunks, run_events
    events = events_from_chunks([(CLIENT, b"LINECOUNT hi\\n"), (SERVER, b"ok\\n")])
    records = run_events(MyDecoder, events)
    assert_restore_safe(MyDecoder, events)
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from typing import Any

import msgpack

from wirestream.decoders.api import CLIENT, SERVER, Decoder, Endpoint, FlowInfo
from wirestream.decoders.options import merged

__all__ = [
    "CLIENT",
    "HTTP_FLOW",
    "SERVER",
    "Event",
    "FakeContext",
    "apply",
    "assert_restore_safe",
    "events_from_chunks",
    "rechunk",
    "recorded_flows",
    "run_capture",
    "run_events",
]

Event = tuple  # see the module docstring
HTTP_FLOW = FlowInfo("Ctest", "tcp", Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 80))
T0 = 1_700_000_000_000_000_000
# As the runtime (streams.session.MAX_VIOLATIONS): after this many violations a decoder is
# detached from its flow.
MAX_VIOLATIONS = 5


class FakeContext:
    """A complete DecoderContext (decoders.api) that keeps everything the decoder does:
    `out` holds the (type, fields) emitted and the anomalies, in order; `violations` the
    reasons given to violation(); `hand_offs` the (leftovers, protocol) of hand_off().
    `ts_ns` is set by the driver (apply) to each event's capture time."""

    def __init__(
        self, flow: FlowInfo | None = None, out: list | None = None, ts_ns: int = T0
    ) -> None:
        self.flow = flow or HTTP_FLOW
        self.ts_ns = ts_ns
        self.out: list[tuple[str, dict[str, Any]]] = [] if out is None else out
        self.violations: list[str] = []
        self.hand_offs: list[tuple[list[tuple[int, bytes]], str | None]] = []

    def emit(self, record_type: str, fields: dict[str, Any]) -> None:
        self.out.append((record_type, fields))

    def anomaly(self, name: str, detail: str = "") -> None:
        self.out.append(("anomaly", {"name": name, "detail": detail}))

    def violation(self, reason: str) -> None:
        self.violations.append(reason)

    def hand_off(self, leftovers: list[tuple[int, bytes]], protocol: str | None = None) -> None:
        self.hand_offs.append(([(d, bytes(b)) for d, b in leftovers], protocol))

    @property
    def detached(self) -> bool:
        """Whether the runtime would have taken the flow away from the decoder by now."""
        return bool(self.hand_offs) or len(self.violations) >= MAX_VIOLATIONS

    # shorthands for assertions
    def records(self, record_type: str) -> list[dict[str, Any]]:
        return [f for t, f in self.out if t == record_type]

    def http(self) -> list[dict[str, Any]]:
        return self.records("http")

    def anomalies(self) -> list[str]:
        return [f["name"] for t, f in self.out if t == "anomaly"]


def apply(dec: Decoder, ctx: FakeContext, e: Event) -> None:
    """Feed one event to the decoder, at the event's capture time."""
    ctx.ts_ns = e[-1]
    if e[0] == "data":
        dec.on_data(e[1], e[2])
    elif e[0] == "gap":
        dec.on_gap(e[1], e[2])
    else:
        dec.on_close(e[1])


def events_from_chunks(
    chunks: Iterable[tuple[int, bytes]],
    *,
    close: str | None = "fin",
    start_ns: int = T0,
    step_ns: int = 1_000_000,
) -> list[Event]:
    """Data events for (direction, bytes) chunks, a millisecond apart, then a close."""
    events: list[Event] = []
    ts = start_ns
    for direction, data in chunks:
        events.append(("data", direction, bytes(data), ts))
        ts += step_ns
    if close is not None:
        events.append(("close", close, ts))
    return events


def rechunk(events: Sequence[Event], rng: random.Random, max_chunk: int = 700) -> list[Event]:
    """Every data event cut at random points into pieces of 1..max_chunk bytes, each at the
    event's time: what other segment boundaries would have delivered."""
    out: list[Event] = []
    for e in events:
        if e[0] != "data":
            out.append(e)
            continue
        data, i = e[2], 0
        while i < len(data):
            n = rng.randint(1, max_chunk)
            out.append(("data", e[1], data[i : i + n], e[3]))
            i += n
    return out


def run_events(
    cls: type[Decoder],
    events: Sequence[Event],
    *,
    options: Mapping[str, Any] | None = None,
    flow: FlowInfo | None = None,
    restore_every: bool = False,
    restore_at: Iterable[int] = (),
    ctx: FakeContext | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The (type, fields) a decoder emits for `events`. Its options are merged with its
    defaults, as the runtime does. `restore_every` (or the event indices `restore_at`):
    before those events, snapshot -> msgpack -> restore into a fresh decoder, as a
    partition moving to another process would."""
    ctx = ctx or FakeContext(flow)
    opts = merged(cls, options or {})
    dec = cls(ctx, opts)
    restarts = set(restore_at)
    for i, e in enumerate(events):
        if restore_every or i in restarts:
            dec = _round_trip(cls, dec, ctx, opts)
        apply(dec, ctx, e)
    return ctx.out


def _round_trip(
    cls: type[Decoder], dec: Decoder, ctx: FakeContext, options: Mapping[str, Any]
) -> Decoder:
    blob = msgpack.packb(dec.snapshot(), use_bin_type=True)
    return cls.restore(ctx, options, msgpack.unpackb(blob, raw=False))


def assert_restore_safe(
    cls: type[Decoder],
    events: Sequence[Event],
    *,
    options: Mapping[str, Any] | None = None,
    flow: FlowInfo | None = None,
    seeds: Iterable[int] = range(3),
    max_chunk: int = 700,
) -> list[tuple[str, dict[str, Any]]]:
    """The restore contract and chunking independence, asserted: restoring before every
    event, and re-chunking at random points (with and without restores), give the records
    of one uninterrupted run. Returns those records."""
    reference = run_events(cls, events, options=options, flow=flow)
    restored = run_events(cls, events, options=options, flow=flow, restore_every=True)
    assert restored == reference, "snapshot/restore changed the records"
    for seed in seeds:
        chunks = rechunk(events, random.Random(seed), max_chunk)
        again = run_events(cls, chunks, options=options, flow=flow)
        assert again == reference, f"re-chunking (seed {seed}) changed the records"
        both = run_events(cls, chunks, options=options, flow=flow, restore_every=True)
        assert both == reference, f"re-chunking and restoring (seed {seed}) changed the records"
    return reference


def recorded_flows(
    pcap: str | PathLike[str], cls: type[Decoder]
) -> dict[str, tuple[FlowInfo, list[Event]]]:
    """The events the runtime delivers to decoder `cls` for every flow of a capture, by
    uid (detection, reassembly and timestamps as in a replay): replayed through `apply` or
    `run_events` they drive the decoder as the runtime did."""
    from wirestream.probe.capture import open_capture
    from wirestream.probe.source import PacketSource
    from wirestream.streams.config import RuntimeConfig
    from wirestream.streams.task import Task

    flows: dict[str, tuple[FlowInfo, list[Event]]] = {}

    class Recorder(cls):  # type: ignore[misc, valid-type]
        def _log(self, e: Event) -> None:
            flows.setdefault(self.ctx.flow.uid, (self.ctx.flow, []))[1].append(e)

        def on_data(self, direction: int, data: bytes) -> None:
            self._log(("data", direction, bytes(data), self.ctx.ts_ns))
            super().on_data(direction, data)

        def on_gap(self, direction: int, length: int) -> None:
            self._log(("gap", direction, length, self.ctx.ts_ns))
            super().on_gap(direction, length)

        def on_close(self, reason: str) -> None:
            self._log(("close", reason, self.ctx.ts_ns))
            super().on_close(reason)

    Recorder.name = cls.name
    task = Task(0, RuntimeConfig(), [Recorder], lambda *a: None)
    capture = open_capture(pcap)
    try:
        for kp in PacketSource().keyed(capture):
            task.process_record(kp.record())
    finally:
        capture.close()
    task.close_all("end_of_input")
    return flows


def run_capture(
    pcap: str | PathLike[str] | Sequence[str | PathLike[str]],
    decoders: list[str] | None = None,
    *,
    options: dict[str, dict[str, Any]] | None = None,
    commit_every: int = 50_000,
) -> list[dict[str, Any]]:
    """The records of a replay (the whole runtime, as `wirestream replay`) of one capture or
    several, with the decoders named (installed through their entry points; None: all).
    `commit_every=1` snapshots every decoder after every packet: a broken snapshot() then
    shows as a decoder_error anomaly."""
    from wirestream.decoders.registry import check_options
    from wirestream.streams.config import RuntimeConfig
    from wirestream.streams.replay import replay_records

    paths = [pcap] if isinstance(pcap, str | PathLike) else list(pcap)
    config = RuntimeConfig(
        decoders=decoders,
        decoder_options=check_options(options or {}),
        commit_every_packets=commit_every,
    )
    return replay_records([str(p) for p in paths], config=config)
