"""The batch hot path (column batches, batch reordering, in-place parsing) against the
record-by-record path it replaces: same packets, same order, same counters, same errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wirestream.probe.capture as capture_mod
from wirestream.probe.capture import CaptureError, open_capture
from wirestream.probe.flowkey import kafka_partition
from wirestream.probe.reorder import ReorderStats, reorder, reorder_batches
from wirestream.probe.source import PacketSource
from wirestream.streams.replay import PartitionCache

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
CAPTURES = sorted(p for p in PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))


def _raw(frames: list[tuple[int, int, int, bytes]]) -> tuple[list, ...]:
    """Frames as one raw column batch (each frame its own buffer)."""
    if not frames:
        return ([], [], [], [], [], [])
    lts, tss, ols, frs = (list(c) for c in zip(*frames, strict=True))
    return lts, tss, ols, frs, [0] * len(frs), [len(f) for f in frs]


def _flat(batches) -> list[tuple[int, int, int, bytes]]:
    out = []
    for lts, tss, ols, bufs, starts, stops in batches:
        frames = [b[i:j] for b, i, j in zip(bufs, starts, stops, strict=True)]
        out.extend(zip(lts, tss, ols, frames, strict=True))
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)), max_size=80),
    st.lists(st.integers(0, 12), min_size=1, max_size=40),
    st.sampled_from([1, 5, 20, 100, 1000]),
    st.sampled_from([1, 3, 65536]),
    st.sampled_from([1, 40, 300, 16 << 20]),
    st.integers(0, 2**32),
)
def test_reorder_batches_equals_reorder(ts_len, sizes, window, max_frames, max_bytes, seed):
    rnd = random.Random(seed)
    ts_len = sorted(ts_len)
    for _ in range(rnd.randrange(4)):  # a little disorder, sometimes beyond the window
        if len(ts_len) > 1:
            i, j = rnd.randrange(len(ts_len)), rnd.randrange(len(ts_len))
            ts_len[i], ts_len[j] = ts_len[j], ts_len[i]
    frames = [(1, ts, i, bytes(n)) for i, (ts, n) in enumerate(ts_len)]
    batches, i = [], 0
    for size in sizes:
        batches.append(_raw(frames[i : i + size]))
        i += size
    batches.append(_raw(frames[i:]))
    s1, s2 = ReorderStats(), ReorderStats()
    expected = list(reorder(iter(frames), window, max_frames, s1, max_bytes))
    got = _flat(reorder_batches(iter(batches), window, max_frames, s2, max_bytes))
    assert got == expected
    assert (s2.late, s2.reordered) == (s1.late, s1.reordered)


def test_reorder_batches_long_input_and_damaged_capture():
    rnd = random.Random(7)
    ts = sorted(rnd.randrange(50_000) for _ in range(20_000))
    for _ in range(30):
        i = rnd.randrange(len(ts) - 50)
        ts[i], ts[i + 20] = ts[i + 20], ts[i]
    frames = [(1, t, i, bytes(rnd.randrange(30))) for i, t in enumerate(ts)]
    batches = [_raw(frames[i : i + 700]) for i in range(0, len(frames), 700)]
    for window, mf, mb in ((100, 65536, 16 << 20), (1000, 100, 500)):
        assert _flat(reorder_batches(iter(batches), window, mf, max_bytes=mb)) == list(
            reorder(iter(frames), window, mf, max_bytes=mb)
        )

    # A jump in time releases the whole window at once: it comes out in pieces.
    frames = [(1, i, i, b"x") for i in range(3000)] + [(1, 10**9, 3000, b"")]
    out = list(reorder_batches(iter([_raw(frames)]), 10**6))
    assert _flat(out) == frames
    assert max(len(batch[1]) for batch in out) <= 1024

    def broken():
        yield _raw([(1, 10, 0, b""), (1, 5, 1, b"")])
        raise OSError("truncated")

    got = []
    with pytest.raises(OSError):
        for batch in reorder_batches(broken(), 100):
            got.extend(batch[1])
    assert got == [5, 10]


def _records_and_error(path: Path) -> tuple[list, str | None]:
    out, err = [], None
    try:
        with open_capture(path) as cap:
            out.extend(_flat(cap.raw_batches()))
    except CaptureError as exc:
        err = str(exc)
    return out, err


@pytest.mark.parametrize("chunk", [61, 1000, 1 << 20])
def test_raw_batches_with_any_block_size_match_dpkt_order_and_errors(tmp_path, monkeypatch, chunk):
    """Records straddling read blocks are completed alone; a capture cut anywhere gives the
    records before the cut and the same error as with another block size."""
    data = (PCAPS / "own_wrk_small.pcap").read_bytes()
    full, err = _records_and_error(PCAPS / "own_wrk_small.pcap")
    assert err is None and len(full) > 100
    monkeypatch.setattr(capture_mod, "_CHUNK", chunk)
    assert _records_and_error(PCAPS / "own_wrk_small.pcap") == (full, None)
    assert list(open_capture(PCAPS / "own_wrk_small.pcap")) == full
    path = tmp_path / "cut.pcap"
    for cut in (24 + 7, len(data) // 3, len(data) // 2 + 5, len(data) - 3):
        path.write_bytes(data[:cut])
        got, got_err = _records_and_error(path)
        monkeypatch.setattr(capture_mod, "_CHUNK", 1 << 20)
        want, want_err = _records_and_error(path)
        monkeypatch.setattr(capture_mod, "_CHUNK", chunk)
        assert got == want and got_err == want_err and got_err is not None


def _keyed_view(kps) -> list[tuple]:
    return [(k.key, k.forward, k.packet, k.linktype, k.flags, k.frame, k.orig_len) for k in kps]


def _counters(src: PacketSource) -> tuple:
    return (
        src.frames,
        src.bytes,
        src.non_ip,
        dict(src.bad),
        src.reorder_stats.late,
        src.reorder_stats.reordered,
        src.defrag.stats.as_dict(),
    )


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_batch_path_gives_the_packets_of_the_record_path(path):
    """keyed(Capture) (raw batches, in-place parse) == keyed(records) (frame by frame)."""
    try:
        records = list(open_capture(path))
    except CaptureError:
        pytest.skip("damaged capture: covered by the capture tests")
    by_record, by_batch = PacketSource(), PacketSource()
    expected = _keyed_view(by_record.keyed(iter(records)))
    got = _keyed_view(by_batch.keyed(open_capture(path)))
    assert got == expected
    assert _counters(by_batch) == _counters(by_record)
    for kp in by_batch.keyed(open_capture(path)):
        assert kp.record()[16:] == kp.frame


def test_keep_filter_and_partition_cache():
    path = PCAPS / "zeek__wikipedia.pcap"  # dozens of TCP and UDP flows
    every = _keyed_view(PacketSource().keyed(open_capture(path)))
    keys = {kp[0] for kp in every}
    assert len(keys) > 1
    parts = PartitionCache(3)
    assert all(parts(k) == kafka_partition(k, 3) for k in sorted(keys) * 2)
    for p in range(3):
        src = PacketSource()
        kept = [
            kp
            for batch in src.keyed_batches(
                open_capture(path).raw_batches(), lambda k, p=p: parts(k) == p
            )
            for kp in _keyed_view(batch)
        ]
        assert kept == [kp for kp in every if kafka_partition(kp[0], 3) == p]
        assert src.frames == len(list(open_capture(path)))
