"""The installed testing kit (decoders.testing) catches what it promises to catch: a
snapshot that forgets state, output that depends on chunking; its context fake records
violations and hand-offs; what it records from a capture drives a decoder as the runtime
does."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.flowgen import Conversation
from tests.pcapgen import write_pcap
from wirestream.decoders.api import CLIENT, SERVER, Decoder, DecoderContext
from wirestream.decoders.registry import select
from wirestream.decoders.tls import TlsDecoder
from wirestream.testing import (
    FakeContext,
    assert_restore_safe,
    events_from_chunks,
    recorded_flows,
    run_capture,
    run_events,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
LINES = events_from_chunks(
    [(CLIENT, b"LINECOUNT one\ntw"), (SERVER, b"ok\n"), (CLIENT, b"o\nthree\n"), (SERVER, b"\n")]
)


def linecount() -> type[Decoder]:
    (cls,) = select(["linecount"])
    return cls


def test_the_plugin_passes_the_kit() -> None:
    records = assert_restore_safe(linecount(), LINES)
    ((kind, fields),) = records
    assert kind == "linecount" and (fields["client_lines"], fields["server_lines"]) == (3, 2)


class Forgetful(Decoder):
    """Counts bytes, but its snapshot forgets them."""

    name = "forgetful"

    def __init__(self, ctx: DecoderContext, options: Mapping[str, Any]) -> None:
        super().__init__(ctx, options)
        self.n = 0

    def on_data(self, direction: int, data: bytes) -> None:
        self.n += len(data)

    def on_close(self, reason: str) -> None:
        self.ctx.emit("forgetful", {"n": self.n})

    def snapshot(self) -> Any:
        return None

    @classmethod
    def restore(cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any) -> Decoder:
        return cls(ctx, options)


class ChunkCounter(Forgetful):
    """Restores fine, but counts deliveries: its output depends on segment boundaries."""

    name = "chunkcounter"

    def on_data(self, direction: int, data: bytes) -> None:
        self.n += 1

    def snapshot(self) -> Any:
        return self.n

    @classmethod
    def restore(cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any) -> Decoder:
        decoder = cls(ctx, options)
        decoder.n = state
        return decoder


def test_the_kit_catches_a_snapshot_that_forgets_state() -> None:
    with pytest.raises(AssertionError, match="snapshot/restore"):
        assert_restore_safe(Forgetful, LINES)


def test_the_kit_catches_output_that_depends_on_chunking() -> None:
    with pytest.raises(AssertionError, match="re-chunking"):
        assert_restore_safe(ChunkCounter, LINES, max_chunk=3)


def test_the_context_fake_keeps_violations_and_hand_offs() -> None:
    ctx = FakeContext()
    for i in range(4):
        ctx.violation(f"v{i}")
    assert not ctx.detached and ctx.violations == ["v0", "v1", "v2", "v3"]
    ctx.violation("v4")
    assert ctx.detached
    other = FakeContext()
    other.hand_off([(CLIENT, bytearray(b"GET / HTTP/1.1\r\n"))], "websocket")
    assert other.detached and other.hand_offs == [([(CLIENT, b"GET / HTTP/1.1\r\n")], "websocket")]


def test_options_are_merged_with_the_defaults() -> None:
    seen: list[Mapping[str, Any]] = []

    class Spy(ChunkCounter):
        option_defaults = {"limit": 3, "ratio": 0.5}

        def __init__(self, ctx: DecoderContext, options: Mapping[str, Any]) -> None:
            super().__init__(ctx, options)
            seen.append(options)

    run_events(Spy, LINES, options={"ratio": "0.25"})
    assert seen == [{"ports": [], "limit": 3, "ratio": 0.25}]


ENVELOPE = ("type", "id", "uid", "community_id")  # what the runtime adds to every record


def test_recorded_events_drive_a_decoder_as_the_runtime_does() -> None:
    capture = FIXTURES / "zeek__tls__tls1.2.pcap"
    from_runtime = [
        {k: v for k, v in r.items() if k not in ENVELOPE}
        for r in run_capture(capture, ["tls"])
        if r["type"] == "tls"
    ]
    flows = recorded_flows(capture, TlsDecoder)
    from_kit = []
    for flow, events in flows.values():
        from_kit += [f for t, f in run_events(TlsDecoder, events, flow=flow) if t == "tls"]
    assert from_kit == from_runtime and len(from_runtime) >= 1


def test_run_capture_commits_every_packet_without_changing_records(tmp_path: Path) -> None:
    conv = Conversation(dport=7777).handshake()
    conv.send(True, b"LINECOUNT a\nb\n").send(False, b"c\n").close()
    pcap = write_pcap(tmp_path / "lines.pcap", conv.frames)
    once = run_capture(pcap, ["linecount"], options={"linecount": {"tag": "t"}})
    every = run_capture(pcap, ["linecount"], options={"linecount": {"tag": "t"}}, commit_every=1)
    assert every == once
    assert [r["tag"] for r in once if r["type"] == "linecount"] == ["t"]
