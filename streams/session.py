"""The runtime's side of one flow: a StreamSink that detects the protocol, feeds the
decoder, and turns what the decoder emits into records with deterministic ids.

It is also the DecoderContext decoders talk to. Its state (decoder snapshot, detection
buffer, record counters) is saved with the flow, so a restored flow emits exactly what
the original would have.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgpack

from wirestream.decoders.api import CLIENT, Decoder, Endpoint, FlowInfo, ts_seconds
from wirestream.decoders.detect import Detector, role_hint
from wirestream.decoders.options import merged, ports
from wirestream.probe.communityid import flow_community_id
from wirestream.probe.flowkey import decode_flow_key
from wirestream.probe.packet import PROTO_ICMP, PROTO_ICMP6, PROTO_TCP, PROTO_UDP

if TYPE_CHECKING:
    from wirestream.reassembly.tracker import Flow
    from wirestream.streams.files import FileStore

Emit = Callable[[str, str, dict[str, Any]], None]  # (record type, key = uid, record)

# Detection buffer: events seen before a decoder is chosen, replayed to it once chosen.
_DATA, _GAP = 0, 1
# A decoder that reports this many protocol violations on a flow is detached from it, and
# detection looks for another (Zeek's analyzer_violation -> disable_analyzer).
MAX_VIOLATIONS = 5
STREAM_CHUNK_MAX = 64 * 1024  # bytes per stream_chunk record
# Anomalies of reassembly and the flow table: their record names no decoder (`decoder`
# is null), whichever is attached; every other anomaly names the decoder of the flow.
RUNTIME_ANOMALIES = frozenset(
    (
        "overlap_different_data", "rexmit_inconsistency", "ack_above_data", "task_memcap",
        "process_memcap", "fragment_overlap_different_data", "rst_invalid",
        "data_after_reset", "flow_evicted",
    )
)  # fmt: skip
# conn.log's `proto` (Zeek's transport_proto: ICMPv6 is "icmp" too); others by number.
_TRANSPORTS = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMP6: "icmp"}
_DIRECTIONS = ("client_to_server", "server_to_client")
ERROR_DETAIL_MAX = 300  # characters of a decoder_error's detail (decoder, hook, exception)


def error_detail(decoder: str, hook: str, exc: BaseException) -> str:
    """`decoder.hook: ExceptionType: message`, bounded: what a decoder_error names."""
    return f"{decoder}.{hook}: {type(exc).__name__}: {exc}"[:ERROR_DETAIL_MAX]


class SessionConfig:
    """What every session of a task shares: the decoders and the output."""

    __slots__ = (
        "by_name",
        "by_transport",
        "candidates",
        "community_id_seed",
        "emit",
        "files",
        "options",
        "ports",
        "stream_chunks",
    )

    def __init__(
        self,
        candidates: list[type[Decoder]],
        options: Mapping[str, Any],
        emit: Emit,
        stream_chunks: bool = False,
        community_id_seed: int = 0,
        files: FileStore | None = None,
    ) -> None:
        self.files = files  # extracted bodies (streams/files.py), or None
        self.candidates = candidates
        self.stream_chunks = stream_chunks
        self.community_id_seed = community_id_seed
        self.by_name = {cls.name: cls for cls in candidates}
        self.by_transport = {
            transport: [cls for cls in candidates if transport in cls.transports]
            for transport in ("tcp", "udp")
        }
        # Every decoder gets all its options (defaults merged); `ports` moves its fallback.
        self.options = {cls.name: merged(cls, options.get(cls.name, {})) for cls in candidates}
        self.ports = {name: ports(values) for name, values in self.options.items()}
        self.emit = emit


class FlowSession:
    """StreamSink + DecoderContext for one flow."""

    __slots__ = (
        "_community_id",
        "_info",
        "_replay_ts",
        "buffered",
        "config",
        "conn",
        "counters",
        "decoder",
        "detector",
        "excluded",
        "offsets",
        "port_fallback",
        "restore_fault",
        "services",
        "state",
        "violations",
    )

    # Detection states. FAULTED: the decoder failed in restore(); the anomaly is emitted
    # at the flow's next event (a restore must emit nothing), then the flow goes on as NONE.
    PROBING, ATTACHED, NONE, FAULTED = 0, 1, 2, 3

    def __init__(self, flow: Flow, config: SessionConfig) -> None:
        self.conn = flow
        self.config = config
        self.decoder: Decoder | None = None
        self.detector: Detector | None = None
        # Events held during detection: (kind, direction, bytes or gap length, ts_ns).
        self.buffered: list[tuple[int, int, Any, int]] = []
        self._replay_ts = 0  # while held events are replayed: the capture time of each
        self.counters: dict[str, int] = {}
        self.state = self.PROBING if config.candidates else self.NONE
        self._info: FlowInfo | None = None
        self._community_id: str | None = None  # computed at the flow's first record
        self.services: list[str] = []  # every decoder attached so far, in order
        self.excluded: list[str] = []  # decoders detached from this flow for violations
        self.violations = 0
        self.port_fallback = True  # False once a tunnel or a detach restarts detection
        self.offsets = [0, 0]  # stream offsets per direction (stream_chunk records)
        self.restore_fault = ""  # why the decoder could not be restored (state FAULTED)

    # -- DecoderContext --
    @property
    def ts_ns(self) -> int:
        return self._replay_ts or self.conn.ts_last

    @property
    def flow(self) -> FlowInfo:
        """The decoder's view of the flow (roles are fixed before any data is delivered)."""
        if self._info is None:
            self._info = flow_info(self.conn)
        return self._info

    @property
    def community_id(self) -> str:
        """The flow's Community ID, computed once (from the key: symmetric, so roles decided
        later cannot change it; one-way ICMP's originator is its first packet's sender)."""
        cid = self._community_id
        if cid is None:
            conn = self.conn
            side = conn.client_side if conn.client_side >= 0 else 0
            cid = flow_community_id(conn.key, side, self.config.community_id_seed)
            self._community_id = cid
        return cid

    def emit(self, record_type: str, fields: dict[str, Any]) -> None:
        n = self.counters.get(record_type, 0) + 1
        self.counters[record_type] = n
        uid = self.conn.uid
        record = {
            "type": record_type,
            "id": f"{uid}:{record_type}:{n}",
            "uid": uid,
            "community_id": self._community_id or self.community_id,
        }
        record.update(fields)
        self.config.emit(record_type, uid, record)

    def store_file(self, data: bytes) -> str | None:
        """Extraction (optional context capability): store a body's content, return its file
        name (sha256), or None (extraction off, over a bound, write error)."""
        files = self.config.files
        return files.store(data) if files is not None else None

    def anomaly(self, name: str, detail: str = "") -> None:
        decoder = None
        if name not in RUNTIME_ANOMALIES and self.decoder is not None:
            decoder = self.decoder.name
        self._anomaly(name, detail, decoder)

    def _anomaly(self, name: str, detail: str, decoder: str | None) -> None:
        # Endpoints from the flow as it is now, not the cached decoder view: an anomaly
        # may come before a TCP flow's roles are fixed, and must not fix them.
        info = flow_info(self.conn)
        self.emit(
            "anomaly",
            {
                "ts": ts_seconds(self.ts_ns),
                "name": name,
                "detail": detail,
                "proto": info.transport,
                "client": info.client.as_json(),
                "server": info.server.as_json(),
                "decoder": decoder,
            },
        )

    def violation(self, reason: str) -> None:
        """The decoder says the flow breaks its protocol. After MAX_VIOLATIONS it is
        detached (anomaly `decoder_detached`) and detection looks for another decoder."""
        self.violations += 1
        if self.violations < MAX_VIOLATIONS or self.decoder is None:
            return
        decoder, name = self.decoder, self.decoder.name
        self.anomaly("decoder_detached", f"{name}: {reason}"[:300])
        self.excluded.append(name)
        self._restart_detection()
        try:  # let it flush what it has (Zeek's Done() on a removed analyzer)
            decoder.on_close("violation")
        except Exception as exc:
            self._anomaly("decoder_error", error_detail(name, "on_close", exc), name)

    def hand_off(self, leftovers: list[tuple[int, bytes]], protocol: str | None = None) -> None:
        """The decoder is done with this flow but the flow goes on in another protocol
        (CONNECT tunnel, Upgrade): detection starts again, fed `leftovers` first (bytes
        the decoder received after the switch, in arrival order). `protocol`: the decoder
        the handshake named (e.g. "websocket"), attached at once if it is selected. Call
        it last, after emitting."""
        self._restart_detection()
        if protocol is not None:
            cls = self.config.by_name.get(protocol)
            if cls is not None and cls in self._candidates():
                self._attach(cls)
        for direction, data in leftovers:
            if data:
                self._route(_DATA, direction, data)

    def _restart_detection(self) -> None:
        self.decoder = None
        self.violations = 0
        self.port_fallback = False
        self.detector = None
        self.buffered = []
        self.state = self.PROBING if self._candidates() else self.NONE

    # -- StreamSink --
    def _candidates(self) -> list[type[Decoder]]:
        found = self.config.by_transport.get(self.flow.transport, [])
        if self.excluded:
            found = [cls for cls in found if cls.name not in self.excluded]
        return found

    def _new_detector(self) -> Detector:
        port = self.flow.server.port if self.port_fallback else -1
        return Detector(self._candidates(), port, self.config.ports, self._probe_failed)

    def role_hint(self, data: bytes) -> int | None:
        candidates = self.config.by_transport["tcp"]
        if self.excluded:
            candidates = [cls for cls in candidates if cls.name not in self.excluded]
        return role_hint(candidates, data, self._probe_failed)

    def _probe_failed(self, cls: type[Decoder], exc: Exception) -> None:
        """A probe raised: the decoder is out of this flow's detection for good."""
        self._anomaly("decoder_error", error_detail(cls.name, "probe", exc), cls.name)
        if cls.name not in self.excluded:
            self.excluded.append(cls.name)

    def on_data(self, direction: int, data: bytes) -> None:
        if self.config.stream_chunks:
            self._stream_chunks(direction, data, 0)
        if self.state == self.ATTACHED:
            try:  # _call, inlined: one call per delivered segment
                self.decoder.on_data(direction, data)  # type: ignore[union-attr]
            except Exception as exc:
                self._failed("on_data", exc)
        elif self.state == self.PROBING:
            self._detect(direction, data)
        elif self.state == self.FAULTED:
            self._report_restore_fault()

    def _detect(self, direction: int, data: bytes) -> None:
        self.buffered.append((_DATA, direction, data, self.ts_ns))
        if self.detector is None:
            self.detector = self._new_detector()
        decided, cls = self.detector.feed(direction, data)
        if decided:
            self._attach(cls)

    def _stream_chunks(self, direction: int, data: bytes, gap: int) -> None:
        """Raw stream output: the reassembled bytes (or a gap) as `stream_chunk` records."""
        ts = ts_seconds(self.conn.ts_last)
        name = _DIRECTIONS[direction]
        if gap:
            self.emit(
                "stream_chunk",
                {"ts": ts, "direction": name, "offset": self.offsets[direction],
                 "length": gap, "gap": True, "data": None},
            )  # fmt: skip
            self.offsets[direction] += gap
            return
        for start in range(0, len(data), STREAM_CHUNK_MAX):
            piece = data[start : start + STREAM_CHUNK_MAX]
            self.emit(
                "stream_chunk",
                {"ts": ts, "direction": name, "offset": self.offsets[direction],
                 "length": len(piece), "gap": False,
                 "data": base64.b64encode(piece).decode("ascii")},
            )  # fmt: skip
            self.offsets[direction] += len(piece)

    def on_gap(self, direction: int, length: int) -> None:
        if self.config.stream_chunks:
            self._stream_chunks(direction, b"", length)
        if self.state == self.ATTACHED:
            self._call("on_gap", direction, length)
        elif self.state == self.PROBING:
            self.buffered.append((_GAP, direction, length, self.ts_ns))
        elif self.state == self.FAULTED:
            self._report_restore_fault()

    def on_close(self, reason: str) -> None:
        if self.state == self.FAULTED:
            self._report_restore_fault()
        if self.state == self.PROBING:
            cls = self.detector.finish() if self.detector else None
            self._attach(cls)
        if self.state == self.ATTACHED:
            self._call("on_close", reason)

    # -- decoders --
    def _attach(self, cls: type[Decoder] | None) -> None:
        buffered, self.buffered, self.detector = self.buffered, [], None
        if cls is None:
            self.state = self.NONE
            return
        try:
            self.decoder = cls(self, self.config.options[cls.name])
        except Exception as exc:  # e.g. a bad option value: report, run without it
            self._anomaly("decoder_error", error_detail(cls.name, "__init__", exc), cls.name)
            self.state = self.NONE
            return
        self.state = self.ATTACHED
        self.services.append(cls.name)
        # Each held event goes out at its own packet's capture time, so what a decoder
        # emits never depends on how long the other decoders' probes kept the flow waiting.
        outer = self._replay_ts
        try:
            for kind, direction, value, ts_ns in buffered:
                self._replay_ts = ts_ns
                self._route(kind, direction, value)
        finally:
            self._replay_ts = outer

    def _route(self, kind: int, direction: int, value: Any) -> None:
        """One buffered event, to wherever the flow is now (the decoder may have handed
        the flow off, or been detached, while earlier events were replayed to it)."""
        if self.state == self.ATTACHED:
            self._call("on_data" if kind == _DATA else "on_gap", direction, value)
        elif self.state == self.PROBING:
            if kind == _DATA:
                self._detect(direction, value)
            else:
                self.buffered.append((_GAP, direction, value, self.ts_ns))

    def _call(self, hook: str, *args: Any) -> None:
        try:
            getattr(self.decoder, hook)(*args)
        except Exception as exc:
            self._failed(hook, exc)

    def _failed(self, hook: str, exc: Exception) -> None:
        """A decoder bug must not stop the flow or the task: report it (naming the decoder,
        the hook and the exception), drop the decoder from this flow."""
        name = self.decoder.name if self.decoder else "?"
        self._anomaly("decoder_error", error_detail(name, hook, exc), name)
        self.decoder = None
        self.state = self.NONE

    def _report_restore_fault(self) -> None:
        self.state = self.NONE
        name = self.services[-1] if self.services else "?"
        self._anomaly(
            "decoder_error", f"{name}.restore: {self.restore_fault}"[:ERROR_DETAIL_MAX], name
        )

    @property
    def service(self) -> str | None:
        """Every decoder the flow had, in order (e.g. "http,tls" for a CONNECT tunnel)."""
        return ",".join(self.services) or None

    # -- persistence --
    # The snapshot is a list of these fields, in this order (as the tracker's _META_FIELDS);
    # the decoder's own state is packed separately, so a decoder whose snapshot() raises or
    # is not msgpack-able is detached alone and the flow is still saved.
    _FIELDS = (
        "state",
        "decoder",
        "buffered",
        "detector",
        "counters",
        "services",
        "excluded",
        "violations",
        "port_fallback",
        "offsets",
        "restore_fault",
    )

    def snapshot(self) -> list[Any]:
        values = {name: getattr(self, name) for name in self._FIELDS}
        values["decoder"] = self._decoder_state()
        values["buffered"] = [list(item) for item in self.buffered]
        values["detector"] = self.detector.snapshot() if self.detector is not None else None
        values["state"] = self.state  # after _decoder_state(): it may have detached it
        return [values[name] for name in self._FIELDS]

    def _decoder_state(self) -> list[Any] | None:
        """[name, packed snapshot] of the attached decoder, None without one."""
        if self.decoder is None:
            return None
        try:
            return [self.decoder.name, msgpack.packb(self.decoder.snapshot(), use_bin_type=True)]
        except Exception as exc:
            self._failed("snapshot", exc)
            return None

    @classmethod
    def restore(cls, flow: Flow, config: SessionConfig, state: list[Any]) -> FlowSession:
        session = cls(flow, config)
        values = dict(zip(cls._FIELDS, state, strict=True))
        session.state = values["state"]
        session.counters = dict(values["counters"])
        session.services = list(values["services"])
        session.excluded = list(values["excluded"])
        session.violations = values["violations"]
        session.port_fallback = values["port_fallback"]
        session.offsets = list(values["offsets"])
        session.restore_fault = values["restore_fault"]
        session.buffered = [(k, d, v, ts) for k, d, v, ts in values["buffered"]]
        if values["detector"] is not None:
            session.detector = session._new_detector()
            session.detector.restore(values["detector"])
        if values["decoder"] is not None:
            name, packed = values["decoder"]
            try:  # KeyError: the decoder is no longer selected
                dec_cls = config.by_name[name]
                decoder_state = msgpack.unpackb(packed, raw=False)
                session.decoder = dec_cls.restore(session, config.options[name], decoder_state)
            except Exception as exc:  # reported at the flow's next event: see FAULTED
                session.decoder = None
                session.state = cls.FAULTED
                session.restore_fault = f"{type(exc).__name__}: {exc}"[:ERROR_DETAIL_MAX]
        return session


def flow_info(flow: Flow) -> FlowInfo:
    """Client and server endpoints of a flow, from its key and its roles."""
    fields = decode_flow_key(flow.key)
    ends = (fields.lower, fields.higher)
    client_side = flow.client_side if flow.client_side >= 0 else 0
    c_addr, c_port = ends[client_side]
    s_addr, s_port = ends[1 - client_side]
    transport = _TRANSPORTS.get(fields.proto, "unknown_transport")
    return FlowInfo(
        uid=flow.uid,
        transport=transport,
        client=Endpoint(str(ipaddress.ip_address(c_addr)), c_port),
        server=Endpoint(str(ipaddress.ip_address(s_addr)), s_port),
    )


def flow_record(flow: Flow, session: FlowSession) -> dict[str, Any]:
    """The `flow` record (conn.log-like) of a flow leaving the table."""
    info = flow_info(flow)
    fields = decode_flow_key(flow.key)
    side = flow.client_side if flow.client_side >= 0 else 0

    def direction(half: Any) -> dict[str, Any]:
        return {
            "packets": half.packets,
            "bytes": half.bytes,
            "missed_bytes": half.missed,
            "beyond_depth": half.beyond_depth,
            "sha256": half.digest(),
            "ip_bytes": half.ip_bytes,
        }

    return {
        "ts": ts_seconds(flow.ts_first),
        "proto": info.transport,
        "ip_proto": fields.proto,
        "vlan": list(fields.vlans),
        "ts_start": ts_seconds(flow.ts_first),
        "ts_end": ts_seconds(flow.ts_last),
        "duration": ts_seconds(flow.ts_last - flow.ts_first),
        "client": info.client.as_json(),
        "server": info.server.as_json(),
        "state": flow.conn_state(),
        "history": flow.history(),
        "close_reason": flow.close_reason,
        "service": session.service,
        "client_to_server": direction(flow.halves[side]),
        "server_to_client": direction(flow.halves[1 - side]),
    }


__all__ = ["CLIENT", "FlowSession", "SessionConfig", "flow_info", "flow_record"]
