"""The HTTP decoder's fast paths change no record (issue 14: a fast path is a guard in front of
the shared code, or a flag with a test comparing output on and off).

Flags: FAST_HEADS (clean heads parsed by decoders/http/fast.py instead of h11), BODY_BYPASS
and CHUNK_BYPASS (Content-Length bodies and chunk data consumed without h11). With all of them
off h11 parses everything; every record of every fixture capture, and of its lossy variants
(tests/lossy.py: each kind of loss, as tests/test_lossy_pairing.py makes them), must be the
same. The guard in HttpDecoder.on_data sits in front of the side's one hot path
(bypass.Countdown.take, through Side.take_segment): with the bypasses off it never fires, so
it is compared too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import lossy
from wirestream.decoders.http import bypass, side
from wirestream.streams.replay import replay_records

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
CAPTURES = sorted(p.name for p in PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))
FLAGS = ((side, "FAST_HEADS"), (side, "BODY_BYPASS"), (side, "CHUNK_BYPASS"))


def _records(path: Path) -> list[str]:
    return [json.dumps(r, sort_keys=True) for r in replay_records([str(path)])]


def _both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    fast = _records(path)
    with monkeypatch.context() as m:
        for mod, flag in FLAGS:
            assert getattr(mod, flag) is True
            m.setattr(mod, flag, False)
        slow = _records(path)
    return fast, slow


def _http(lines: list[str]) -> int:
    return sum(json.loads(x)["type"] == "http" for x in lines)


def _lossy_variants(name: str, tmp_path: Path) -> list[Path]:
    """One lossy copy of capture `name` per kind of loss that finds something to hit."""
    try:
        idx = lossy.index_capture(PCAPS / name)
    except ValueError:  # several link types: no lossy copy can be written
        return []
    out = []
    for kind in lossy.KINDS:
        try:
            loss = lossy.choose_loss(idx, kind, 0)
        except lossy.NoCandidate:
            continue
        path = tmp_path / f"{kind}.pcap"
        lossy.write_without(PCAPS / name, path, idx.frames, loss.dropped)
        out.append(path)
    return out


@pytest.mark.parametrize("name", CAPTURES)
def test_fast_paths_change_no_record(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fast, slow = _both_ways(PCAPS / name, monkeypatch)
    assert fast == slow
    if not _http(fast):
        return  # not an HTTP capture: no lossy variants
    for path in _lossy_variants(name, tmp_path):
        fast, slow = _both_ways(path, monkeypatch)
        assert fast == slow, path.stem


def test_lossy_variants_are_made() -> None:
    """The comparison above does run on lossy copies (made here in a known case)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        got = _lossy_variants("own_nginx_keepalive_multi.pcap", Path(d))
        assert len(got) >= 5
        assert all(
            p.stat().st_size < (PCAPS / "own_nginx_keepalive_multi.pcap").stat().st_size
            for p in got
        )


def test_the_flags_reach_the_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turning the flags off really takes the fast paths away (else the comparison above
    would compare a run with itself): counted by wrapping the primitives."""
    calls = {"head": 0, "segment": 0}
    fast_head, take = side.Side._fast_head, bypass.Countdown.take

    def count_head(self, *a):  # type: ignore[no-untyped-def]
        calls["head"] += 1
        return fast_head(self, *a)

    def count_segment(self, *a):  # type: ignore[no-untyped-def]
        ok = take(self, *a)
        calls["segment"] += ok
        return ok

    monkeypatch.setattr(side.Side, "_fast_head", count_head)
    monkeypatch.setattr(bypass.Countdown, "take", count_segment)
    paths = [PCAPS / "tcpflow__samplePcaps__jpegs.cap", PCAPS / "sv__http-chunked__input.pcap"]
    for path in paths:
        _records(path)
    assert calls["head"] and calls["segment"]
    for mod, flag in FLAGS:
        monkeypatch.setattr(mod, flag, False)
    calls.update(head=0, segment=0)
    for path in paths:
        _records(path)
    assert calls == {"head": 0, "segment": 0}
