"""A decoder that raises in any hook is detached from that flow with a `decoder_error`
anomaly naming it, the hook and the exception; every other record is what a run without it
gives, the run exits 0 and the summary counts the errors. And a decoder's records do not
depend on which other decoders are installed (held bytes keep their capture times)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import dpkt
import pytest

from tests.flowgen import Conversation
from tests.pcapgen import write_pcap
from tests.test_task_restore import keyed_packets, run
from wirestream import runner
from wirestream.decoders import registry
from wirestream.decoders.api import Decoder, DecoderContext, ts_seconds
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.replay import Replay
from wirestream.streams.serde import loads_record

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
HTTP_CAPTURE = FIXTURES / "zeek__http__get.pcap"
MAGIC = b"BOOM"
HOOKS = ("probe", "__init__", "on_data", "on_gap", "on_close", "snapshot", "restore")


class Faulty(Decoder):
    """Claims flows starting with BOOM and counts their bytes; raises in `hook`."""

    name = "faulty"
    hook: ClassVar[str] = ""

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        if not data.startswith(MAGIC[: len(data)]):
            return False
        if len(data) < len(MAGIC):
            return None
        if cls.hook == "probe":
            raise RuntimeError("probe exploded " + "x" * 1000)
        return True

    def __init__(self, ctx: DecoderContext, options: Mapping[str, Any]) -> None:
        super().__init__(ctx, options)
        self._maybe_raise("__init__")
        self.bytes = 0

    def _maybe_raise(self, hook: str) -> None:
        if self.hook == hook:
            raise ValueError(f"{hook} exploded")

    def on_data(self, direction: int, data: bytes) -> None:
        self._maybe_raise("on_data")
        self.bytes += len(data)

    def on_gap(self, direction: int, length: int) -> None:
        self._maybe_raise("on_gap")

    def on_close(self, reason: str) -> None:
        self._maybe_raise("on_close")
        self.ctx.emit("faulty", {"ts": ts_seconds(self.ctx.ts_ns), "bytes": self.bytes})

    def snapshot(self) -> Any:
        self._maybe_raise("snapshot")
        return self.bytes

    @classmethod
    def restore(cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any) -> Decoder:
        if cls.hook == "restore":
            raise KeyError("restore exploded")
        decoder = cls(ctx, options)
        decoder.bytes = state
        return decoder


FAULTY = {hook: type(f"Faulty_{hook}", (Faulty,), {"hook": hook}) for hook in (*HOOKS, "none")}
globals().update({cls.__name__: cls for cls in FAULTY.values()})


@pytest.fixture
def with_faulty(monkeypatch: pytest.MonkeyPatch):
    """Registers Faulty_<hook> as decoder `faulty`, as an installed plugin would be."""
    real = registry._entry_points

    def install(hook: str) -> None:
        ep = EntryPoint("faulty", f"{__name__}:Faulty_{hook}", registry.GROUP)
        monkeypatch.setattr(registry, "_entry_points", lambda: {**real(), "faulty": ep})

    return install


def boom_capture(tmp_path: Path) -> Path:
    """A BOOM flow with a gap in the client's bytes, and a LINECOUNT flow."""
    boom = Conversation(dport=9999, sport=41000).handshake()
    boom.send(True, b"BOOM hello\n")
    boom.send(True, b"x" * 4000, drop={1})
    boom.send(False, b"ok\n").close()
    lines = Conversation(dport=7777, sport=42000, ts_ns=boom.ts_ns).handshake()
    lines.send(True, b"LINECOUNT a\nb\n").send(False, b"c\n").close()
    return write_pcap(tmp_path / "boom.pcap", boom.frames + lines.frames)


def replayed(paths: list[Path], decoders: list[str], commit_every: int = 1):
    config = RuntimeConfig(decoders=decoders, commit_every_packets=commit_every)
    lines: list[bytes] = []
    summary = Replay(config, lines.append).run([str(p) for p in paths])
    return [loads_record(line) for line in b"".join(lines).splitlines()], summary


def boom_uid(records: list[dict]) -> str:
    (flow,) = [r for r in records if r["type"] == "flow" and r["server"]["port"] == 9999]
    return flow["uid"]


@pytest.mark.parametrize("hook", [h for h in HOOKS if h != "restore"])
def test_a_raising_hook_detaches_the_decoder_and_nothing_else_changes(
    hook: str, with_faulty, tmp_path: Path
) -> None:
    paths = [HTTP_CAPTURE, boom_capture(tmp_path)]
    reference, _ = replayed(paths, ["http", "linecount"])
    with_faulty(hook)
    records, summary = replayed(paths, ["http", "linecount", "faulty"])
    uid = boom_uid(records)
    errors = [r for r in records if r["type"] == "anomaly" and r["name"] == "decoder_error"]
    assert [e["uid"] for e in errors] == [uid]
    assert errors[0]["detail"].startswith(f"faulty.{hook}: ")
    exc = "RuntimeError" if hook == "probe" else "ValueError"
    assert f": {exc}: {hook} exploded" in errors[0]["detail"]
    assert len(errors[0]["detail"]) <= 300  # bounded, even for the 1000-character message
    assert summary.as_log()["decoder_errors"] == 1
    assert not [r for r in records if r["type"] == "faulty"]  # detached before its record
    others = [r for r in records if r["uid"] != uid]
    assert others == [r for r in reference if r["uid"] != uid]
    assert any(r["type"] == "http" for r in others) and any(
        r["type"] == "linecount" for r in others
    )
    (flow,) = [r for r in records if r["type"] == "flow" and r["uid"] == uid]
    assert flow["service"] == (None if hook in ("probe", "__init__") else "faulty")


def test_without_faults_the_decoder_emits_its_record(with_faulty, tmp_path: Path) -> None:
    """The control for the test above: the same decoder, no hook raising."""
    with_faulty("none")
    records, summary = replayed([boom_capture(tmp_path)], ["faulty"])
    (rec,) = [r for r in records if r["type"] == "faulty"]
    assert rec["bytes"] == len(b"BOOM hello\n") + 4000 - 1460 + len(b"ok\n") and rec[
        "uid"
    ] == boom_uid(records)
    assert summary.as_log()["decoder_errors"] == 0


def test_a_raising_restore_detaches_the_decoder(with_faulty, tmp_path: Path) -> None:
    """Restored from the store mid-flow (a Kafka rebalance): restore() raises."""
    packets = keyed_packets(str(boom_capture(tmp_path)))
    reference = run(packets, tmp_path / "ref", {6}, decoders=["linecount"])
    with_faulty("restore")
    restored = run(packets, tmp_path / "restored", {6}, decoders=["linecount", "faulty"])
    records = [loads_record(r) for r in restored]
    uid = boom_uid(records)
    (error,) = [r for r in records if r["type"] == "anomaly"]
    assert error["uid"] == uid and error["name"] == "decoder_error"
    assert error["detail"] == "faulty.restore: KeyError: 'restore exploded'"
    assert not [r for r in records if r["type"] == "faulty"]
    reference_records = [loads_record(r) for r in reference]
    assert [r for r in records if r["uid"] != uid] == [
        r for r in reference_records if r["uid"] != uid
    ]


def test_the_command_line_goes_on_and_exits_0(with_faulty, tmp_path: Path, capsys) -> None:
    with_faulty("on_data")
    out = tmp_path / "out.jsonl"
    argv = ["replay", str(HTTP_CAPTURE), str(boom_capture(tmp_path)), "-o", str(out)]
    assert runner.main([*argv, "--commit-every", "1", "--log-format", "json"]) == 0
    records = [loads_record(line) for line in out.read_bytes().splitlines()]
    assert [r["name"] for r in records if r["type"] == "anomaly"] == ["decoder_error"]
    assert '"decoder_errors": 1' in capsys.readouterr().err


class PortOnly(Decoder):
    """A decoder without a content probe (False to everything), attached by port: its
    records carry the capture time of each delivery."""

    name = "portonly"
    ports = frozenset({6379})

    def on_data(self, direction: int, data: bytes) -> None:
        self.ctx.emit("portonly", {"ts": ts_seconds(self.ctx.ts_ns), "n": len(data)})

    def snapshot(self) -> Any:
        return None

    @classmethod
    def restore(cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any) -> Decoder:
        return cls(ctx, options)


class Undecided(PortOnly):
    """Answers "need more bytes" to everything: detection waits for the end of the flow."""

    name = "undecided"
    ports = frozenset()

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        return None


def test_records_do_not_depend_on_other_decoders_probes(tmp_path: Path) -> None:
    conv = Conversation(dport=6379).handshake()
    conv.send(True, b"PING\r\n").send(False, b"+PONG\r\n").send(True, b"PING\r\n").close()
    packets = keyed_packets(str(write_pcap(tmp_path / "redis.pcap", conv.frames)))

    def portonly_records(decoders: list[type[Decoder]]) -> list[dict]:
        from wirestream.streams.task import Task

        out: list[dict] = []
        task = Task(0, RuntimeConfig(), decoders, lambda _t, _k, r: out.append(r))
        for kp in packets:
            task.process_record(kp.record())
        task.close_all("end_of_input")
        return [r for r in out if r["type"] == "portonly"]

    alone = portonly_records([PortOnly])
    with_undecided = portonly_records([Undecided, PortOnly])
    assert with_undecided == alone
    # each delivery at its own packet's time: three distinct, increasing times
    assert [r["n"] for r in alone] == [6, 7, 6]
    times = [r["ts"] for r in alone]
    assert times == sorted(times) and len(set(times)) == 3
    data_times = [
        ts / 1e9 for ts, frame in conv.frames if dpkt.ethernet.Ethernet(frame).data.data.data
    ]
    assert times == pytest.approx(data_times, abs=1e-6)
