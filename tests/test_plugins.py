"""A third-party decoder (tests/plugins, installed through its entry point) is found,
detected by content on a port nobody claims, and emits through the same runtime."""

from __future__ import annotations

from pathlib import Path

from tests.flowgen import Conversation
from tests.pcapgen import write_pcap
from wirestream.decoders.registry import available, select
from wirestream.streams.replay import replay_records


def test_the_test_plugin_is_registered_through_its_entry_point() -> None:
    assert "linecount" in available()
    (cls,) = select(["linecount"])
    assert cls.__module__ == "wirestream_testplugin"


def test_plugin_is_detected_by_content_and_emits_records(tmp_path: Path) -> None:
    conv = Conversation(dport=7777).handshake()
    conv.send(True, b"LINECOUNT hello\nsecond\n")
    conv.send(False, b"ok\n")
    conv.send(True, b"third\n").close()
    pcap = write_pcap(tmp_path / "lines.pcap", conv.frames)
    records = replay_records([str(pcap)])
    (lc,) = [r for r in records if r["type"] == "linecount"]
    assert (lc["client_lines"], lc["server_lines"], lc["gaps"]) == (3, 1, 0)
    (flow,) = [r for r in records if r["type"] == "flow"]
    assert flow["service"] == "linecount" and flow["uid"] == lc["uid"]
    assert lc["id"] == f"{lc['uid']}:linecount:1"


def test_without_the_plugin_selected_the_flow_gets_no_decoder(tmp_path: Path) -> None:
    conv = Conversation(dport=7777).handshake()
    conv.send(True, b"LINECOUNT hello\n").close()
    pcap = write_pcap(tmp_path / "lines.pcap", conv.frames)
    records = replay_records([str(pcap)], decoders=[])
    assert [r["type"] for r in records] == ["flow"]
    assert records[0]["service"] is None
