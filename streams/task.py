"""A task: everything one input partition needs, as Kafka Streams has it.

It owns the partition's flow table, the flows' decoders and its state store. Packets go
in (as records or already parsed), decoded records come out through `emit`. `commit()`
writes what changed since the last commit to the store (in one batch), so the
per-packet path never touches RocksDB; `restore()` rebuilds the task from the store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack

from decoders.api import Decoder
from probe.flowkey import flow_key
from probe.packet import PROTO_TCP, Packet
from probe.parse import ParseError, parse_frame
from probe.record import RecordError, decode_record
from reassembly.tcpflow import TcpFlow
from reassembly.tracker import Flow, FlowTracker
from reassembly.udpflow import UdpFlow
from state.store import StateStore
from streams.config import RuntimeConfig
from streams.session import Emit, FlowSession, SessionConfig, flow_record

META_KEY = b"\x00meta"  # task metadata; flow keys start with their format version (1)
STATE_FORMAT = 1


class Task:
    """One partition's pipeline: packets -> flows -> decoders -> records."""

    def __init__(
        self,
        partition: int,
        config: RuntimeConfig,
        decoders: list[type[Decoder]],
        emit: Emit,
        store: StateStore | None = None,
        on_bad_packet: Callable[[str], None] | None = None,
    ) -> None:
        self.partition = partition
        self.config = config
        self.store = store
        self._emit = emit
        self.sessions = SessionConfig(
            decoders, config.decoder_options, emit, stream_chunks=config.stream_chunks
        )
        self.tracker = FlowTracker(config.limits, self._new_session, self._finished, self._anomaly)
        self.bad_packets: Counter[str] = Counter()
        self._on_bad_packet = on_bad_packet
        self.packets = 0
        self.flows_finished = 0

    # -- hot path --
    def process_packet(self, pkt: Packet, key: bytes, forward: bool) -> None:
        self.packets += 1
        self.tracker.process(pkt, key, forward)

    def process_record(self, value: bytes) -> None:
        """Process one packet record (the value of a `wirestream.packets` message)."""
        try:
            rec = decode_record(value)
            pkt = parse_frame(rec.linktype, rec.frame, rec.ts_ns, rec.orig_len)
        except (RecordError, ParseError) as exc:
            self.bad_packet(getattr(exc, "kind", None) or type(exc).__name__)
            return
        if pkt is None:
            self.packets += 1
            return
        if not self.config.vlan_in_flow_key:
            pkt.vlan = ()
        key, forward = flow_key(pkt)
        self.process_packet(pkt, key, forward)

    def bad_packet(self, kind: str) -> None:
        self.bad_packets[kind] += 1
        if self._on_bad_packet is not None:
            self._on_bad_packet(kind)

    # -- flows --
    def _new_session(self, flow: Flow) -> FlowSession:
        return FlowSession(flow, self.sessions)

    def _finished(self, flow: Flow) -> None:
        self.flows_finished += 1
        session: FlowSession = flow.sink  # type: ignore[assignment]
        session.emit("flow", flow_record(flow, session))

    def _anomaly(self, flow: Flow, name: str, detail: str) -> None:
        flow.sink.anomaly(name, detail)

    def punctuate(self, now_ns: int) -> int:
        """Wall-clock entry point: expire flows as if stream time were `now_ns`."""
        return self.tracker.expire(max(now_ns, self.tracker.stream_time))

    def close_all(self, reason: str = "end_of_input") -> None:
        self.tracker.close_all(reason)

    # -- state --
    def changes(self) -> dict[bytes, bytes | None]:
        """Serialised flows changed since the last call (None: flow gone), plus metadata."""
        tracker = self.tracker
        changed, removed = tracker.take_changes()
        out: dict[bytes, bytes | None] = dict.fromkeys(removed)
        for key, flow in changed:
            kind = 0 if isinstance(flow, TcpFlow) else 1
            session: FlowSession = flow.sink  # type: ignore[assignment]
            out[key] = msgpack.packb(
                [STATE_FORMAT, kind, flow.snapshot(), session.snapshot(), tracker.last_touch[key]],
                use_bin_type=True,
            )
        out[META_KEY] = msgpack.packb([STATE_FORMAT, tracker.meta_snapshot()])
        return out

    def commit(self, checkpoint: bytes | None = None) -> dict[bytes, bytes | None]:
        """Write the changes to the store in one batch; returns them (for a changelog)."""
        changes = self.changes()
        if self.store is not None:
            for key, value in changes.items():
                if value is None:
                    self.store.delete(key)
                else:
                    self.store.put(key, value)
            self.store.flush(checkpoint)
        return changes

    def restore(self) -> int:
        """Rebuild the flow table from the store; returns the number of flows restored."""
        if self.store is None:
            return 0
        meta: list[Any] | None = None
        flows: list[tuple[bytes, Flow, int]] = []
        for key, value in self.store.items():
            if key == META_KEY:
                meta = msgpack.unpackb(value)[1]
                continue
            _fmt, kind, flow_state, session_state, order = msgpack.unpackb(value, raw=False)
            cls = TcpFlow if kind == 0 else UdpFlow
            flow = cls.restore(key, flow_state, None, self.tracker.budget)  # type: ignore[arg-type]
            flow.sink = FlowSession.restore(flow, self.sessions, session_state)
            flows.append((key, flow, order))
        if meta is not None:
            self.tracker.restore(meta, flows)
        return len(flows)


__all__ = ["PROTO_TCP", "Task"]
