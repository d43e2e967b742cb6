"""Timestamp reordering within a window, and VLAN-less flow keys."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pcapgen import ether, ipv4, tcp
from wirestream.probe.reorder import ReorderStats, reorder
from wirestream.probe.source import PacketSource


def frames(timestamps: list[int]) -> list[tuple[int, int, int, bytes]]:
    return [(1, ts, i, b"") for i, ts in enumerate(timestamps)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 10_000), min_size=0, max_size=200),
    st.integers(1, 20_000),
    st.integers(0, 2**32),
)
def test_disorder_within_the_window_is_sorted_and_nothing_is_lost(
    base: list[int], window: int, seed: int
) -> None:
    ordered = sorted(base)
    rnd = random.Random(seed)
    # Shuffle only locally: each frame moves by less than the window.
    shuffled = sorted(ordered, key=lambda ts: ts + rnd.uniform(0, window * 0.99))
    out = list(reorder(frames(shuffled), window))
    assert [f[1] for f in out] == ordered
    assert sorted(f[2] for f in out) == list(range(len(shuffled)))


def test_frames_with_equal_timestamps_keep_file_order_and_ordered_input_is_untouched() -> None:
    data = frames([5, 5, 5, 7, 7, 9])
    assert list(reorder(data, 1_000)) == data
    assert list(reorder(data, 0)) == data


def test_frames_too_late_for_the_window_pass_through_and_are_counted() -> None:
    stats = ReorderStats()
    out = [f[1] for f in reorder(frames([0, 100, 200, 50]), 60, stats=stats)]
    assert sorted(out) == [0, 50, 100, 200]
    assert stats.late == 1


def test_a_damaged_capture_still_yields_what_was_read_before_the_error() -> None:
    def broken():
        yield (1, 10, 0, b"")
        yield (1, 5, 1, b"")
        raise OSError("truncated")

    got = []
    try:
        for f in reorder(broken(), 100):
            got.append(f[1])
    except OSError:
        pass
    else:  # pragma: no cover - the error must come through
        raise AssertionError("the capture error was swallowed")
    assert got == [5, 10]


def test_vlan_ids_can_be_left_out_of_the_flow_key() -> None:
    to_server = ether(ipv4(tcp(40000, 80), "10.0.0.1", "10.0.0.2"), vlans=[3136])
    to_client = ether(ipv4(tcp(80, 40000), "10.0.0.2", "10.0.0.1"))
    records = [(1, 1, len(to_server), to_server), (1, 2, len(to_client), to_client)]
    with_vlan = [kp.key for kp in PacketSource().keyed(records)]
    without = [kp.key for kp in PacketSource(vlan_in_key=False).keyed(records)]
    assert with_vlan[0] != with_vlan[1]
    assert without[0] == without[1]
