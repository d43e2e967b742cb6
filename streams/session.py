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

from decoders.api import CLIENT, Decoder, Endpoint, FlowInfo, ts_seconds
from decoders.detect import Detector, role_hint
from probe.flowkey import decode_flow_key

if TYPE_CHECKING:
    from reassembly.tracker import Flow
    from streams.files import FileStore

Emit = Callable[[str, str, dict[str, Any]], None]  # (record type, key = uid, record)

# Detection buffer: events seen before a decoder is chosen, replayed to it once chosen.
_DATA, _GAP = 0, 1
# A decoder that reports this many protocol violations on a flow is detached from it, and
# detection looks for another (Zeek's analyzer_violation -> disable_analyzer).
MAX_VIOLATIONS = 5
STREAM_CHUNK_MAX = 64 * 1024  # bytes per stream_chunk record
_DIRECTIONS = ("client_to_server", "server_to_client")


class SessionConfig:
    """What every session of a task shares: the decoders and the output."""

    __slots__ = (
        "by_name",
        "by_transport",
        "candidates",
        "emit",
        "files",
        "options",
        "stream_chunks",
    )

    def __init__(
        self,
        candidates: list[type[Decoder]],
        options: Mapping[str, Any],
        emit: Emit,
        stream_chunks: bool = False,
        files: FileStore | None = None,
    ) -> None:
        self.files = files  # extracted bodies (streams/files.py), or None
        self.candidates = candidates
        self.stream_chunks = stream_chunks
        self.by_name = {cls.name: cls for cls in candidates}
        self.by_transport = {
            transport: [cls for cls in candidates if transport in cls.transports]
            for transport in ("tcp", "udp")
        }
        self.options = options
        self.emit = emit


class FlowSession:
    """StreamSink + DecoderContext for one flow."""

    __slots__ = (
        "_info",
        "buffered",
        "config",
        "conn",
        "counters",
        "decoder",
        "detector",
        "excluded",
        "offsets",
        "port_fallback",
        "services",
        "state",
        "violations",
    )

    # Detection states.
    PROBING, ATTACHED, NONE = 0, 1, 2

    def __init__(self, flow: Flow, config: SessionConfig) -> None:
        self.conn = flow
        self.config = config
        self.decoder: Decoder | None = None
        self.detector: Detector | None = None
        self.buffered: list[tuple[int, int, Any]] = []
        self.counters: dict[str, int] = {}
        self.state = self.PROBING if config.candidates else self.NONE
        self._info: FlowInfo | None = None
        self.services: list[str] = []  # every decoder attached so far, in order
        self.excluded: list[str] = []  # decoders detached from this flow for violations
        self.violations = 0
        self.port_fallback = True  # False once a tunnel or a detach restarts detection
        self.offsets = [0, 0]  # stream offsets per direction (stream_chunk records)

    # -- DecoderContext --
    @property
    def ts_ns(self) -> int:
        return self.conn.ts_last

    @property
    def flow(self) -> FlowInfo:
        """The decoder's view of the flow (roles are fixed before any data is delivered)."""
        if self._info is None:
            self._info = flow_info(self.conn)
        return self._info

    def emit(self, record_type: str, fields: dict[str, Any]) -> None:
        n = self.counters.get(record_type, 0) + 1
        self.counters[record_type] = n
        uid = self.conn.uid
        record = {"type": record_type, "id": f"{uid}:{record_type}:{n}", "uid": uid}
        record.update(fields)
        self.config.emit(record_type, uid, record)

    def store_file(self, data: bytes) -> str | None:
        """Extraction (optional context capability): store a body's content, return its file
        name (sha256), or None (extraction off, over a bound, write error)."""
        files = self.config.files
        return files.store(data) if files is not None else None

    def anomaly(self, name: str, detail: str = "") -> None:
        self.emit("anomaly", {"ts": ts_seconds(self.conn.ts_last), "name": name, "detail": detail})

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
            self.anomaly("decoder_error", f"{name}: {type(exc).__name__}: {exc}"[:300])

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
        found = self.config.by_transport[self.flow.transport]
        if self.excluded:
            found = [cls for cls in found if cls.name not in self.excluded]
        return found

    def _new_detector(self) -> Detector:
        port = self.flow.server.port if self.port_fallback else -1
        return Detector(self._candidates(), port)

    def role_hint(self, data: bytes) -> int | None:
        return role_hint(self.config.by_transport["tcp"], data)

    def on_data(self, direction: int, data: bytes) -> None:
        if self.config.stream_chunks:
            self._stream_chunks(direction, data, 0)
        if self.state == self.ATTACHED:
            try:  # _call, inlined: one call per delivered segment
                self.decoder.on_data(direction, data)  # type: ignore[union-attr]
            except Exception as exc:
                self._failed(exc)
        elif self.state == self.PROBING:
            self._detect(direction, data)

    def _detect(self, direction: int, data: bytes) -> None:
        self.buffered.append((_DATA, direction, data))
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
            self._call(self.decoder.on_gap, direction, length)  # type: ignore[union-attr]
        elif self.state == self.PROBING:
            self.buffered.append((_GAP, direction, length))

    def on_close(self, reason: str) -> None:
        if self.state == self.PROBING:
            cls = self.detector.finish() if self.detector else None
            self._attach(cls)
        if self.state == self.ATTACHED:
            self._call(self.decoder.on_close, reason)  # type: ignore[union-attr]

    # -- decoders --
    def _attach(self, cls: type[Decoder] | None) -> None:
        buffered, self.buffered, self.detector = self.buffered, [], None
        if cls is None:
            self.state = self.NONE
            return
        try:
            self.decoder = cls(self, self.config.options.get(cls.name, {}))
        except Exception as exc:  # e.g. a bad option value: report, run without it
            self.anomaly("decoder_error", f"{cls.name}: {type(exc).__name__}: {exc}"[:300])
            self.state = self.NONE
            return
        self.state = self.ATTACHED
        self.services.append(cls.name)
        for kind, direction, value in buffered:
            self._route(kind, direction, value)

    def _route(self, kind: int, direction: int, value: Any) -> None:
        """One buffered event, to wherever the flow is now (the decoder may have handed
        the flow off, or been detached, while earlier events were replayed to it)."""
        if self.state == self.ATTACHED:
            if kind == _DATA:
                self._call(self.decoder.on_data, direction, value)  # type: ignore[union-attr]
            else:
                self._call(self.decoder.on_gap, direction, value)  # type: ignore[union-attr]
        elif self.state == self.PROBING:
            if kind == _DATA:
                self._detect(direction, value)
            else:
                self.buffered.append((_GAP, direction, value))

    def _call(self, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """A decoder bug must not stop the flow or the task: report it, drop the decoder."""
        name = self.decoder.name if self.decoder else "?"
        self.anomaly("decoder_error", f"{name}: {type(exc).__name__}: {exc}"[:300])
        self.decoder = None
        self.state = self.NONE

    @property
    def service(self) -> str | None:
        """Every decoder the flow had, in order (e.g. "http,tls" for a CONNECT tunnel)."""
        return ",".join(self.services) or None

    # -- persistence --
    def snapshot(self) -> list[Any]:
        detector = self.detector.snapshot() if self.detector is not None else None
        return [
            self.state,
            self.decoder.name if self.decoder else None,
            self.decoder.snapshot() if self.decoder else None,
            [list(item) for item in self.buffered],
            detector,
            self.counters,
            self.services,
            self.excluded,
            self.violations,
            self.port_fallback,
            self.offsets,
        ]

    @classmethod
    def restore(cls, flow: Flow, config: SessionConfig, state: list[Any]) -> FlowSession:
        session = cls(flow, config)
        session.state, name, decoder_state, buffered, detector, counters = state[:6]
        session.counters = dict(counters)
        services, excluded, session.violations, session.port_fallback, offsets = state[6:11]
        session.services, session.excluded, session.offsets = (
            list(services),
            list(excluded),
            list(offsets),
        )
        session.buffered = [(k, d, v) for k, d, v in buffered]
        if detector is not None:
            session.detector = session._new_detector()
            session.detector.restore(detector)
        if name is not None:
            dec_cls = config.by_name[name]
            session.decoder = dec_cls.restore(session, config.options.get(name, {}), decoder_state)
        return session


def flow_info(flow: Flow) -> FlowInfo:
    """Client and server endpoints of a flow, from its key and its roles."""
    fields = decode_flow_key(flow.key)
    ends = (fields.lower, fields.higher)
    client_side = flow.client_side if flow.client_side >= 0 else 0
    c_addr, c_port = ends[client_side]
    s_addr, s_port = ends[1 - client_side]
    transport = "tcp" if fields.proto == 6 else "udp"
    return FlowInfo(
        uid=flow.uid,
        transport=transport,
        client=Endpoint(str(ipaddress.ip_address(c_addr)), c_port),
        server=Endpoint(str(ipaddress.ip_address(s_addr)), s_port),
    )


def flow_record(flow: Flow, session: FlowSession) -> dict[str, Any]:
    """The `flow` record (conn.log-like) of a flow leaving the table."""
    info = flow_info(flow)
    side = flow.client_side if flow.client_side >= 0 else 0

    def direction(half: Any) -> dict[str, Any]:
        return {
            "packets": half.packets,
            "bytes": half.bytes,
            "missed_bytes": half.missed,
            "beyond_depth": half.beyond_depth,
            "sha256": half.digest(),
        }

    return {
        "proto": info.transport,
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
