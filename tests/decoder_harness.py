"""Driving a decoder without the runtime: a DecoderContext that keeps what is emitted, and
the events (data, gap, close, each with its capture time) fed to it one by one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from decoders.api import Endpoint, FlowInfo
from probe.capture import open_capture
from probe.source import PacketSource
from streams.config import RuntimeConfig
from streams.task import Task

Event = tuple  # ("data", dir, bytes, ts_ns) | ("gap", dir, n, ts_ns) | ("close", reason, ts_ns)
HTTP_FLOW = FlowInfo("Ctest", "tcp", Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 80))


class FakeCtx:
    """DecoderContext for tests: collects records in order; ts_ns is set by the driver."""

    def __init__(
        self,
        flow: FlowInfo | None = None,
        out: list | None = None,
        ts_ns: int = 1_700_000_000_000_000_000,
    ) -> None:
        self.flow = flow or HTTP_FLOW
        self.ts_ns = ts_ns
        self.out: list[tuple[str, dict[str, Any]]] = [] if out is None else out

    def emit(self, record_type: str, fields: dict[str, Any]) -> None:
        self.out.append((record_type, fields))

    def anomaly(self, name: str, detail: str = "") -> None:
        self.out.append(("anomaly", {"name": name, "detail": detail}))

    def http(self) -> list[dict[str, Any]]:
        return [f for t, f in self.out if t == "http"]

    def anomalies(self) -> list[str]:
        return [f["name"] for t, f in self.out if t == "anomaly"]


def apply(dec: Any, ctx: FakeCtx, e: Event) -> None:
    """Feed one event to the decoder, at the event's capture time."""
    ctx.ts_ns = e[-1]
    if e[0] == "data":
        dec.on_data(e[1], e[2])
    elif e[0] == "gap":
        dec.on_gap(e[1], e[2])
    else:
        dec.on_close(e[1])


def recorded_flows(pcap: Path, base: type) -> dict[str, tuple[FlowInfo, list[Event]]]:
    """The events the runtime delivers to decoder `base` for every flow of a capture, by
    uid: replayed through `apply` they drive the decoder as the runtime did."""
    flows: dict[str, tuple[FlowInfo, list[Event]]] = {}

    class Recorder(base):  # type: ignore[misc, valid-type]
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

    task = Task(0, RuntimeConfig(), [Recorder], lambda *a: None)
    for kp in PacketSource().keyed(open_capture(pcap)):
        task.process_record(kp.record())
    task.close_all("end_of_input")
    return flows
