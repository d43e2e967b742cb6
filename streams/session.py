"""The runtime's side of one flow: a StreamSink that detects the protocol, feeds the
decoder, and turns what the decoder emits into records with deterministic ids.

It is also the DecoderContext decoders talk to. Its state (decoder snapshot, detection
buffer, record counters) is saved with the flow, so a restored flow emits exactly what
the original would have.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from decoders.api import CLIENT, Decoder, Endpoint, FlowInfo, ts_seconds
from decoders.detect import Detector, role_hint
from probe.flowkey import decode_flow_key

if TYPE_CHECKING:
    from reassembly.tracker import Flow

Emit = Callable[[str, str, dict[str, Any]], None]  # (record type, key = uid, record)

# Detection buffer: events seen before a decoder is chosen, replayed to it once chosen.
_DATA, _GAP = 0, 1
MAX_DECODER_ERRORS = 1


class SessionConfig:
    """What every session of a task shares: the decoders and the output."""

    __slots__ = ("by_name", "by_transport", "candidates", "emit", "options")

    def __init__(
        self, candidates: list[type[Decoder]], options: Mapping[str, Any], emit: Emit
    ) -> None:
        self.candidates = candidates
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
        "state",
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

    def anomaly(self, name: str, detail: str = "") -> None:
        self.emit("anomaly", {"ts": ts_seconds(self.conn.ts_last), "name": name, "detail": detail})

    # -- StreamSink --
    def _candidates(self) -> list[type[Decoder]]:
        return self.config.by_transport[self.flow.transport]

    def role_hint(self, data: bytes) -> int | None:
        return role_hint(self.config.by_transport["tcp"], data)

    def on_data(self, direction: int, data: bytes) -> None:
        if self.state == self.ATTACHED:
            self._call(self.decoder.on_data, direction, data)  # type: ignore[union-attr]
        elif self.state == self.PROBING:
            self.buffered.append((_DATA, direction, data))
            if self.detector is None:
                self.detector = Detector(self._candidates(), self.flow.server.port)
            decided, cls = self.detector.feed(direction, data)
            if decided:
                self._attach(cls)

    def on_gap(self, direction: int, length: int) -> None:
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
        self.decoder = cls(self, self.config.options.get(cls.name, {}))
        self.state = self.ATTACHED
        for kind, direction, value in buffered:
            if self.state != self.ATTACHED:
                break
            if kind == _DATA:
                self._call(self.decoder.on_data, direction, value)
            else:
                self._call(self.decoder.on_gap, direction, value)

    def _call(self, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception as exc:  # a decoder bug must not stop the flow or the task
            name = self.decoder.name if self.decoder else "?"
            self.anomaly("decoder_error", f"{name}: {type(exc).__name__}: {exc}"[:300])
            self.decoder = None
            self.state = self.NONE

    @property
    def service(self) -> str | None:
        return self.decoder.name if self.decoder is not None else None

    # -- persistence --
    def snapshot(self) -> list[Any]:
        detector = None
        if self.detector is not None:
            detector = [self.detector._seen, sorted(self.detector._undecided)]
        return [
            self.state,
            self.decoder.name if self.decoder else None,
            self.decoder.snapshot() if self.decoder else None,
            [list(item) for item in self.buffered],
            detector,
            self.counters,
        ]

    @classmethod
    def restore(cls, flow: Flow, config: SessionConfig, state: list[Any]) -> FlowSession:
        session = cls(flow, config)
        session.state, name, decoder_state, buffered, detector, counters = state
        session.counters = dict(counters)
        session.buffered = [(k, d, v) for k, d, v in buffered]
        if detector is not None:
            session.detector = Detector(session._candidates(), session.flow.server.port)
            session.detector._seen = [bytes(x) for x in detector[0]]
            session.detector._undecided = set(detector[1])
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
