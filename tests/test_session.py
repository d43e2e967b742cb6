"""The runtime side of a flow: raw stream output, decoder violations, protocol hand-off."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wirestream.decoders.api import Decoder, DecoderContext
from wirestream.reassembly.tcpflow import TcpFlow
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.replay import replay_records
from wirestream.streams.session import MAX_VIOLATIONS, FlowSession, SessionConfig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"


def test_stream_chunks_rebuild_the_streams_the_oracle_hashed() -> None:
    name = "own_nginx_keepalive_multi.pcap"
    records = replay_records([str(FIXTURES / name)], config=RuntimeConfig(stream_chunks=True))
    streams: dict[tuple[str, str], bytearray] = {}
    for r in records:
        if r["type"] == "stream_chunk":
            buf = streams.setdefault((r["uid"], r["direction"]), bytearray())
            assert r["offset"] == len(buf)
            buf += bytes(r["length"]) if r["gap"] else base64.b64decode(r["data"])
    oracle = [json.loads(line) for line in (FIXTURES / "oracles" / name / "flows.jsonl").open()]
    expected = sorted(
        o["tshark_follow"]["sha256_zero_filled"] for o in oracle if "tshark_follow" in o
    )
    assert sorted(hashlib.sha256(b).hexdigest() for b in streams.values()) == expected
    # The flow record's own hashes agree with the chunks.
    (flow,) = [r for r in records if r["type"] == "flow"]
    hashes = {flow["client_to_server"]["sha256"], flow["server_to_client"]["sha256"]}
    assert hashes == {hashlib.sha256(b).hexdigest() for b in streams.values()}


class Stateless(Decoder):
    """A test decoder with nothing to save across a restore."""

    def snapshot(self) -> Any:
        return None

    @classmethod
    def restore(cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any) -> Decoder:
        return cls(ctx, options)


class Greedy(Stateless):
    """Claims everything, complains about everything."""

    name = "greedy"

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        return True

    def on_data(self, direction: int, data: bytes) -> None:
        self.ctx.violation("not my protocol")


class Tunnel(Stateless):
    """Hands the flow over after a 'SWITCH\\n' line, with what followed it."""

    name = "tunnel"

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        return data.startswith(b"SWITCH") or (None if b"SWITCH".startswith(data) else False)

    def on_data(self, direction: int, data: bytes) -> None:
        head, _, rest = data.partition(b"\n")
        self.ctx.emit("tunnel", {"head": head.decode()})
        self.ctx.hand_off([(direction, rest)])


class Lines(Tunnel):
    name = "lines"

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        return data.startswith(b"LINE")

    def on_data(self, direction: int, data: bytes) -> None:
        self.ctx.emit("lines", {"data": data.decode()})


def session(candidates: list[type[Decoder]]) -> tuple[FlowSession, list[dict]]:
    out: list[dict] = []
    flow = TcpFlow(b"\x01\x04\x06\x00" + bytes(12), "Ctest", 0, None)  # type: ignore[arg-type]
    flow.client_side = 0
    s = FlowSession(flow, SessionConfig(candidates, {}, lambda t, k, r: out.append(r)))
    flow.sink = s
    return s, out


def test_a_decoder_that_keeps_violating_is_detached_and_detection_goes_on() -> None:
    s, out = session([Greedy, Lines])
    for _ in range(MAX_VIOLATIONS):
        s.on_data(0, b"LINE 1")
    assert [r["name"] for r in out if r["type"] == "anomaly"] == ["decoder_detached"]
    s.on_data(0, b"LINE 2")  # greedy is excluded now: lines gets it
    assert [r["data"] for r in out if r["type"] == "lines"] == ["LINE 2"]
    assert s.service == "greedy,lines"


def test_hand_off_reruns_detection_on_the_bytes_after_the_switch() -> None:
    s, out = session([Tunnel, Lines])
    s.on_data(0, b"SWITCH\nLINE inside")
    assert [r["type"] for r in out] == ["tunnel", "lines"]
    assert out[1]["data"] == "LINE inside"
    assert s.service == "tunnel,lines"


def test_session_state_with_detach_history_survives_a_snapshot() -> None:
    s, out = session([Greedy, Lines])
    for _ in range(MAX_VIOLATIONS):
        s.on_data(0, b"x")
    state = s.snapshot()
    restored = FlowSession.restore(s.conn, s.config, state)
    restored.on_data(0, b"LINE after restore")
    assert out[-1]["type"] == "lines"
    assert restored.service == "greedy,lines"
