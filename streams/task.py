"""A task: everything one input partition needs, as Kafka Streams has it.

It owns the partition's flow table, the flows' decoders and its state store. Packets go
in (as records or already parsed), decoded records come out through `emit`. `commit()`
writes what changed since the last commit to the store (in one batch), so the
per-packet path never touches RocksDB; `restore()` rebuilds the task from the store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgpack

from wirestream.decoders.api import Decoder
from wirestream.probe.flowkey import flow_key
from wirestream.probe.packet import PROTO_TCP, Packet
from wirestream.probe.parse import ParseError, parse_frame
from wirestream.probe.record import FLAG_FRAGMENT_CONFLICT, RecordError, decode_record
from wirestream.probe.source import KeyedPacket
from wirestream.reassembly.ipflow import IpFlow
from wirestream.reassembly.tcpflow import TcpFlow
from wirestream.reassembly.tracker import Flow, FlowTracker
from wirestream.reassembly.udpflow import UdpFlow
from wirestream.state.store import StateStore
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.files import FileStore
from wirestream.streams.session import Emit, FlowSession, SessionConfig, flow_record

META_KEY = b"\x00meta"  # task metadata; flow keys start with their format version (1)
EXTENSION_PREFIX = b"\x00ext:"  # + extension name: an extension's state
STATE_FORMAT = 1
_FLOW_KINDS: tuple[type[Flow], ...] = (TcpFlow, UdpFlow, IpFlow)  # the `kind` saved per flow


class TaskExtension(Protocol):
    """Watches a task's packets and records and may emit records of its own (e.g. windowed
    statistics). Built per task by `factory(partition, emit, options)`; its state is saved
    with the task's at every commit, so it moves with the partition like the flows."""

    name: str
    # Whether on_packet is wanted: an extension that only watches records (e.g. the Zeek
    # JSON output) leaves the task's batch path as it is without extensions.
    packets: bool

    def on_packet(self, pkt: Packet, flow: Flow | None) -> None: ...

    def on_record(self, record_type: str, record: dict[str, Any]) -> None: ...

    def advance(self, now_ns: int) -> None:
        """Wall-clock punctuation: act as if stream time were `now_ns`."""
        ...

    def close(self) -> None:
        """End of input: release everything held."""
        ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


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
        self.extensions: list[TaskExtension] = [
            factory(partition, emit, config.extension_options.get(factory.name, {}))
            for factory in config.extensions
        ]
        self._packet_extensions = [ext for ext in self.extensions if ext.packets]
        record_emit = self._emit_and_observe if self.extensions else emit
        files = None
        if config.extract_dir is not None:
            files = FileStore(
                config.extract_dir, config.extract_max_bytes, config.extract_max_files
            )
        self.sessions = SessionConfig(
            decoders,
            config.decoder_options,
            record_emit,
            stream_chunks=config.stream_chunks,
            community_id_seed=config.community_id_seed,
            files=files,
        )
        self.tracker = FlowTracker(config.limits, self._new_session, self._finished, self._anomaly)
        self.bad_packets: Counter[str] = Counter()
        self._on_bad_packet = on_bad_packet
        self.packets = 0
        self.flows_finished = 0

    # -- hot path --
    def process_packet(self, pkt: Packet, key: bytes, forward: bool) -> None:
        self.packets += 1
        flow = self.tracker.process(pkt, key, forward)
        if pkt.flags & FLAG_FRAGMENT_CONFLICT and flow is not None:
            flow.sink.anomaly("fragment_overlap_different_data", "first copy kept")
        if self._packet_extensions:
            for ext in self._packet_extensions:
                ext.on_packet(pkt, flow)

    def process_batch(self, batch: Sequence[KeyedPacket]) -> None:
        """`process_packet` for each keyed packet of a batch, in order (replay's hot path)."""
        if self._packet_extensions:
            for kp in batch:
                self.process_packet(kp.packet, kp.key, kp.forward)
            return
        self.packets += len(batch)
        process = self.tracker.process
        for kp in batch:
            flow = process(kp[2], kp[0], kp[1])
            if kp[4] & FLAG_FRAGMENT_CONFLICT and flow is not None:
                flow.sink.anomaly("fragment_overlap_different_data", "first copy kept")

    def _emit_and_observe(self, record_type: str, key: str, record: dict[str, Any]) -> None:
        self._emit(record_type, key, record)
        for ext in self.extensions:
            ext.on_record(record_type, record)

    def process_record(self, value: bytes) -> None:
        """Process one packet record (the value of a `wirestream.packets` message)."""
        try:
            rec = decode_record(value)
            pkt = parse_frame(rec.linktype, rec.frame, rec.ts_ns, rec.orig_len)
        except (RecordError, ParseError) as exc:
            kind = getattr(exc, "kind", None) or getattr(exc, "reason", None)
            self.bad_packet(kind or type(exc).__name__)
            return
        if pkt is None:
            self.packets += 1
            return
        if not isinstance(pkt, Packet):  # a fragment: the probe should have reassembled it
            self.bad_packet("ip_fragment_not_reassembled")
            return
        pkt.flags = rec.flags
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
        now_ns = max(now_ns, self.tracker.stream_time)
        expired = self.tracker.expire(now_ns)
        for ext in self.extensions:  # after the flows: their last records count first
            ext.advance(now_ns)
        return expired

    def close_all(self, reason: str = "end_of_input") -> None:
        self.tracker.close_all(reason)
        for ext in self.extensions:
            ext.close()

    # -- state --
    def changes(self) -> dict[bytes, bytes | None]:
        """Serialised flows changed since the last call (None: flow gone), plus metadata."""
        tracker = self.tracker
        changed, removed = tracker.take_changes()
        out: dict[bytes, bytes | None] = dict.fromkeys(removed)
        for key, flow in changed:
            kind = 0 if isinstance(flow, TcpFlow) else 1 if isinstance(flow, UdpFlow) else 2
            session: FlowSession = flow.sink  # type: ignore[assignment]
            out[key] = msgpack.packb(
                [STATE_FORMAT, kind, flow.snapshot(), session.snapshot(), tracker.last_touch[key]],
                use_bin_type=True,
            )
        out[META_KEY] = msgpack.packb([STATE_FORMAT, tracker.meta_snapshot()])
        for ext in self.extensions:
            out[EXTENSION_PREFIX + ext.name.encode()] = msgpack.packb(
                ext.snapshot(), use_bin_type=True
            )
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
            if key.startswith(EXTENSION_PREFIX):
                name = key[len(EXTENSION_PREFIX) :].decode()
                for ext in self.extensions:
                    if ext.name == name:
                        ext.restore(msgpack.unpackb(value, raw=False))
                continue
            _fmt, kind, flow_state, session_state, order = msgpack.unpackb(value, raw=False)
            cls = _FLOW_KINDS[kind]
            flow = cls.restore(key, flow_state, None, self.tracker.budget)  # type: ignore[arg-type]
            flow.sink = FlowSession.restore(flow, self.sessions, session_state)
            flows.append((key, flow, order))
        if meta is not None:
            self.tracker.restore(meta, flows)
        return len(flows)


__all__ = ["PROTO_TCP", "Task"]
