"""Event-time windowed statistics (stats/windows.py): against an independent reading of real
captures and tshark's HTTP oracle, under reordering within and beyond the grace period,
across partitions, hopping windows, and a task restored from its store mid-capture."""

from __future__ import annotations

import json
import random
import struct
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests import pcapgen
from tests.flowgen import Conversation
from tests.test_task_restore import run as run_task
from wirestream.probe.capture import open_capture
from wirestream.probe.source import PacketSource
from wirestream.stats.windows import WindowAggregator, configure
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.replay import replay_records
from wirestream.streams.serde import dumps_record

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
BASE = 1_700_000_000_000_000_000
SECOND = 1_000_000_000


# ----------------------------------------------------------------------------- helpers


def read_pcap(path: Path) -> list[tuple[int, int, bool]]:
    """(ts_ns, original length, is IP) of every frame, read with struct (not through
    probe/). Tasks see IP packets only: ARP and the like never reach them."""
    data = path.read_bytes()
    bo = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = struct.unpack(bo + "I", data[:4])[0] == 0xA1B23C4D
    linktype = struct.unpack(bo + "I", data[20:24])[0]
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(bo + "IIII", data[pos : pos + 16])
        frame = data[pos + 16 : pos + 16 + incl]
        if linktype == 1:  # Ethernet, maybe 802.1Q-tagged
            off = 12
            while frame[off : off + 2] in (b"\x81\x00", b"\x88\xa8"):
                off += 4
            is_ip = frame[off : off + 2] in (b"\x08\x00", b"\x86\xdd")
        else:
            is_ip = True
        out.append((sec * SECOND + (frac if nano else frac * 1000), orig, is_ip))
        pos += 16 + incl
    return out


def windows(
    paths: list[Path],
    size: float,
    hop: float | None = None,
    grace: float = 0.0,
    partitions: int = 1,
    reorder: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(window_stats records, all records) of a replay."""
    config = RuntimeConfig(reorder_window_ns=reorder)
    configure(config, size, hop, grace)
    records = replay_records([str(p) for p in paths], partitions=partitions, config=config)
    return [r for r in records if r["type"] == "window_stats"], records


def start_ns(record: dict[str, Any]) -> int:
    return int(record["window_id"].split("-", 1)[1])


def traffic(seed: int = 1, flows: int = 60, span_s: float = 6.0) -> list[list[tuple[int, bytes]]]:
    """Synthetic HTTP flows (several clients, statuses, ports), DNS and ICMP; one list of
    (ts_ns, frame) per flow (single packets for the connectionless ones)."""
    rng = random.Random(seed)
    groups: list[list[tuple[int, bytes]]] = []
    for i in range(flows):
        status = rng.choice([200, 200, 200, 404, 500, 301])
        conv = Conversation(
            client=f"10.0.{i % 7}.{1 + i % 5}",
            server="10.9.0.1",
            sport=30_000 + i,
            dport=80 if i % 4 else 8443,
            ts_ns=BASE + int(rng.uniform(0, span_s) * SECOND),
            step_ns=rng.randint(2, 40) * 1_000_000,
        )
        conv.handshake()
        for r in range(rng.randint(1, 3)):
            body = bytes(rng.randint(0, 4000))
            conv.send(True, f"GET /x/{i}/{r} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            conv.send(False, head + body)
        conv.close()
        groups.append(conv.frames)
    for j in range(30):
        ts = BASE + int(rng.uniform(0, span_s) * SECOND)
        dns = pcapgen.udp(5000 + j, 53, b"q" * 20)
        groups.append([(ts, pcapgen.ether(pcapgen.ipv4(dns, f"10.1.0.{j % 3 + 1}", "10.9.9.9")))])
        icmp = pcapgen.ipv4(b"\x08\x00\x00\x00" + bytes(30), "10.2.0.1", "10.9.9.9", proto=1)
        groups.append([(ts + 1000, pcapgen.ether(icmp))])
    return groups


def arrival_order(
    groups: list[list[tuple[int, bytes]]], max_delay_ns: int, seed: int = 2
) -> list[tuple[int, bytes]]:
    """Each packet arrives up to `max_delay_ns` after its capture time, each flow's packets
    in their own order (reordering inside a connection is the probe's reorder window's job:
    it changes which packet opens the flow). Ties keep generation order."""
    rng = random.Random(seed)
    keyed = []
    for group in groups:
        previous = 0
        for ts, frame in group:
            arrival = max(previous, ts + rng.randint(0, max_delay_ns))
            previous = arrival
            keyed.append((arrival, len(keyed), ts, frame))
    keyed.sort()
    return [(ts, frame) for _, _, ts, frame in keyed]


def write(path: Path, frames: list[tuple[int, bytes]]) -> Path:
    return pcapgen.write_pcap(path, frames, nanosecond=True)


# ----------------------------------------------------------------------------- real captures


@pytest.mark.parametrize(
    ("name", "size"),
    [("own_wrk_small.pcap", 0.1), ("zeek__wikipedia.pcap", 1.0), ("zeek__http__methods.pcap", 5.0)],
)
def test_windows_match_an_independent_reading_and_tshark(name: str, size: float) -> None:
    path = FIXTURES / name
    got, records = windows([path], size, grace=60.0)
    size_ns = int(size * SECOND)
    expected: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    frames = read_pcap(path)
    for ts, orig, is_ip in frames:
        if not is_ip:
            continue
        expected[ts // size_ns * size_ns][0] += 1
        expected[ts // size_ns * size_ns][1] += orig
    assert {start_ns(w): [w["packets"], w["bytes"]] for w in got} == dict(expected)
    assert all(w["late"] == {"packets": 0, "bytes": 0, "transactions": 0} for w in got)
    # Groups add up to the totals; per group, the talkers never exceed it.
    for w in got:
        assert sum(g["packets"] for g in w["groups"]) == w["packets"]
        for g in w["groups"]:
            assert sum(t["bytes"] for t in g["top_talkers"]) <= g["bytes"]
    # HTTP status classes per window of the packet completing the response (tshark's
    # response frame: where its reassembly ends).
    oracle = [
        json.loads(line) for line in (FIXTURES / "oracles" / name / "http_tshark.jsonl").open()
    ]
    want: Counter[tuple[int, str]] = Counter()
    for resp in oracle:
        if resp["type"] == "response":
            ts = frames[int(resp["frame"]) - 1][0]
            want[(ts // size_ns * size_ns, f"{resp['code'] // 100}xx")] += 1
    have: Counter[tuple[int, str]] = Counter()
    for w in got:
        for g in w["groups"]:
            for cls, n in g["http_status"].items():
                if n and cls.endswith("xx"):
                    have[(start_ns(w), cls)] += n
    assert have == want
    # Every flow started once, every transaction counted once.
    assert sum(w["flows_started"] for w in got) == sum(r["type"] == "flow" for r in records)
    assert sum(w["transactions"] for w in got) == sum(r["type"] == "http" for r in records)


def test_groups_by_decoder_or_server_port(tmp_path: Path) -> None:
    frames = sorted(f for group in traffic(flows=24) for f in group)
    got, records = windows([write(tmp_path / "t.pcap", frames)], 10.0, grace=60.0)
    services = {(g["proto"], g["service"]) for w in got for g in w["groups"]}
    # Port 8443 carries HTTP too: detected by content, so its service is "http".
    assert services == {("tcp", "http"), ("udp", "dns"), ("other", "1")}
    # ICMP has flow records too, but windows group it by protocol number, starting no flow.
    flows = [r for r in records if r["type"] == "flow" and r["proto"] in ("tcp", "udp")]
    started = Counter((f["proto"], (f["service"] or str(f["server"]["port"]))) for f in flows)
    counted: Counter[tuple[str, str]] = Counter()
    for w in got:
        for g in w["groups"]:
            counted[(g["proto"], g["service"])] += g["flows_started"]
    assert +counted == started


def test_server_port_when_no_decoder(tmp_path: Path) -> None:
    frames = sorted(f for group in traffic(flows=12) for f in group)
    config = RuntimeConfig(reorder_window_ns=0, decoders=[])
    configure(config, 100.0, None, 60.0)
    records = replay_records([str(write(tmp_path / "t.pcap", frames))], config=config)
    groups = {
        (g["proto"], g["service"]): g
        for r in records
        if r["type"] == "window_stats"
        for g in r["groups"]
    }
    assert set(groups) == {("tcp", "80"), ("tcp", "8443"), ("udp", "53"), ("other", "1")}
    assert groups[("tcp", "80")]["transactions"] == 0


# ----------------------------------------------------------------------------- ordering


def test_shuffled_within_grace_gives_identical_windows(tmp_path: Path) -> None:
    groups = traffic()
    grace = 0.5
    ordered = write(tmp_path / "ordered.pcap", arrival_order(groups, 0))
    shuffled_frames = arrival_order(groups, int(grace * SECOND))
    assert [ts for ts, _ in shuffled_frames] != sorted(ts for ts, _ in shuffled_frames)
    shuffled = write(tmp_path / "shuffled.pcap", shuffled_frames)
    for size, hop in ((1.0, None), (2.0, 0.5)):
        a, _ = windows([ordered], size, hop, grace)
        b, _ = windows([shuffled], size, hop, grace)
        assert a, "no window"
        assert [dumps_record(r) for r in a] == [dumps_record(r) for r in b]


@pytest.mark.parametrize(("size", "grace", "delay"), [(1.0, 0.2, 2.0), (0.5, 0.0, 0.7)])
def test_late_counts_beyond_grace_are_exact(
    tmp_path: Path, size: float, grace: float, delay: float
) -> None:
    frames = arrival_order(traffic(seed=5), int(delay * SECOND), seed=9)
    got, records = windows([write(tmp_path / "late.pcap", frames)], size, grace=grace)
    # The rule, stated directly: a packet is late when the largest capture time seen so
    # far (its own included) has reached its window's end plus the grace period.
    size_ns, grace_ns = int(size * SECOND), int(grace * SECOND)
    stream_time = 0
    kept: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    late = [0, 0]
    for ts, frame in frames:
        stream_time = max(stream_time, ts)
        start = ts // size_ns * size_ns
        if stream_time >= start + size_ns + grace_ns:
            late[0] += 1
            late[1] += len(frame)
        else:
            kept[start][0] += 1
            kept[start][1] += len(frame)
    assert late[0] > 10, "the capture should have late packets"
    assert [sum(w["late"]["packets"] for w in got), sum(w["late"]["bytes"] for w in got)] == late
    assert {start_ns(w): [w["packets"], w["bytes"]] for w in got} == dict(kept)
    transactions = sum(w["transactions"] + w["late"]["transactions"] for w in got)
    assert transactions == sum(r["type"] == "http" for r in records)
    # Windows come out in order, once each.
    starts = [start_ns(w) for w in got]
    assert starts == sorted(set(starts))


def test_late_input_after_the_last_release_is_still_reported() -> None:
    agg = WindowAggregator(0, SECOND, grace_ns=0)
    agg.add_fixed(BASE, "other", "1", "10.0.0.1", 100, False)
    assert agg.advance(BASE) == []
    released = agg.advance(BASE + 5 * SECOND)  # punctuation: stream time jumps
    assert [r["packets"] for r in released] == [1]
    assert agg.is_late(BASE + 3 * SECOND)
    agg.add_late(60)
    closing = agg.close()
    assert [(r["packets"], r["late"]["packets"], r["late"]["bytes"]) for r in closing] == [
        (0, 1, 60)
    ]
    assert start_ns(closing[0]) == BASE + 5 * SECOND


# ----------------------------------------------------------------------------- shapes


def test_hopping_windows_are_sums_of_their_hops(tmp_path: Path) -> None:
    path = write(tmp_path / "t.pcap", sorted(f for group in traffic() for f in group))
    tumbling, _ = windows([path], 0.5, grace=60.0)
    by_start = {start_ns(w): w for w in tumbling}
    hopping, _ = windows([path], 1.5, 0.5, grace=60.0)
    assert len(hopping) > len(tumbling)
    for w in hopping:
        parts = [by_start.get(start_ns(w) + i * SECOND // 2) for i in range(3)]
        parts = [p for p in parts if p]
        for field in ("packets", "bytes", "flows_started", "transactions"):
            assert w[field] == sum(p[field] for p in parts), field
        per_group: Counter[tuple[str, str]] = Counter()
        for p in parts:
            for g in p["groups"]:
                per_group[(g["proto"], g["service"])] += g["bytes"]
        assert {(g["proto"], g["service"]): g["bytes"] for g in w["groups"]} == dict(per_group)
        assert w["window_end"] - w["window_start"] == pytest.approx(1.5)


def test_partitions_hold_partial_windows_that_sum_to_the_whole(tmp_path: Path) -> None:
    path = write(tmp_path / "t.pcap", sorted(f for group in traffic() for f in group))
    whole, _ = windows([path], 1.0, grace=60.0)
    parts, _ = windows([path], 1.0, grace=60.0, partitions=3)
    assert {w["partition"] for w in parts} == {0, 1, 2}
    assert len({w["window_id"] for w in parts}) == len(parts)
    summed: dict[int, Counter[str]] = defaultdict(Counter)
    for w in parts:
        summed[start_ns(w)].update(
            {k: w[k] for k in ("packets", "bytes", "flows_started", "transactions")}
        )
    assert {start_ns(w): Counter({k: w[k] for k in summed[start_ns(w)]}) for w in whole} == {
        k: +v for k, v in summed.items()
    }


def test_top_talkers_order_and_ties() -> None:
    agg = WindowAggregator(2, SECOND, grace_ns=0, top_n=3)
    for ip, nbytes in (("10.0.0.9", 500), ("10.0.0.10", 500), ("10.0.0.1", 200), ("10.0.0.2", 900)):
        agg.add_fixed(BASE, "tcp", "http", ip, nbytes, True)
    agg.add_fixed(BASE + 10, "tcp", "http", "10.0.0.1", 400, False)
    (record,) = agg.close()
    assert list(record)[:10] == [
        "type", "id", "window_id", "ts", "window_start", "window_end", "grace", "partition",
        "groups", "late",
    ]  # fmt: skip
    assert record["ts"] == record["window_start"]
    assert record["window_id"] == f"W2-{BASE}" and record["id"] == f"W2-{BASE}:window_stats:1"
    (group,) = record["groups"]
    assert [(t["ip"], t["bytes"]) for t in group["top_talkers"]] == [
        ("10.0.0.2", 900),
        ("10.0.0.1", 600),
        ("10.0.0.10", 500),  # ties: by address text
    ]
    assert group["flows_started"] == 4 and group["packets"] == 5


def test_entry_budget_keeps_the_totals(tmp_path: Path) -> None:
    path = write(tmp_path / "t.pcap", sorted(f for group in traffic() for f in group))
    config = RuntimeConfig(reorder_window_ns=0)
    configure(config, 1.0, None, 60.0)
    config.extension_options["window_stats"]["max_entries"] = 5
    capped = [r for r in replay_records([str(path)], config=config) if r["type"] == "window_stats"]
    normal, _ = windows([path], 1.0, grace=60.0)
    for a, b in zip(capped, normal, strict=True):
        assert (a["packets"], a["bytes"], a["flows_started"]) == (
            b["packets"],
            b["bytes"],
            b["flows_started"],
        )


# ----------------------------------------------------------------------------- restore


@pytest.mark.parametrize(("hop", "grace"), [(None, 0.3), (0.25, 0.0)])
def test_restore_mid_capture_changes_no_window(
    tmp_path: Path, hop: float | None, grace: float
) -> None:
    frames = arrival_order(traffic(seed=3, flows=30, span_s=4.0), int(0.8 * SECOND), seed=4)
    path = write(tmp_path / "t.pcap", frames)
    packets = list(PacketSource(reorder_window_ns=0).keyed(open_capture(path)))
    config = RuntimeConfig(reorder_window_ns=0)
    configure(config, 1.0, hop, grace)
    reference = run_task(packets, tmp_path / "ref", set(), config)
    stats = [json.loads(r) for r in reference if b'"window_stats"' in r[:30]]
    assert len(stats) >= 4 and sum(r["late"]["packets"] for r in stats) > 0
    n = len(packets)
    restarts = set(range(7, n, max(1, n // 40)))
    assert run_task(packets, tmp_path / "restored", restarts, config) == reference


# ----------------------------------------------------------------------------- CLI


def test_cli_options(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    base = [sys.executable, str(root / "runner.py"), "replay", str(FIXTURES / "own_wrk_small.pcap")]
    ok = subprocess.run(
        [*base, "--window-stats", "0.5", "--window-grace", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    lines = [json.loads(x) for x in ok.stdout.splitlines()]
    assert sum(x["type"] == "window_stats" for x in lines) >= 2
    bad = subprocess.run(
        [*base, "--window-stats", "1", "--window-hop", "2"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "hop" in bad.stderr


def test_a_port_scan_stays_bounded() -> None:
    agg = WindowAggregator(0, SECOND, grace_ns=0, max_entries=4, max_groups=3)
    for port in range(1000):
        agg.add_fixed(BASE + port, "tcp", str(port), f"10.0.{port % 250}.1", 60, True)
    agg.add_fixed(BASE, "udp", "dns", "10.0.0.1", 1000, True)
    assert sum(p.size() for p in agg.panes.values()) <= 6
    (record,) = agg.close()
    assert len(record["groups"]) == 3
    assert record["packets"] == 1001 and record["bytes"] == 61_000
    assert record["flows_started"] == 1001
    assert ("*", "*") in {(g["proto"], g["service"]) for g in record["groups"]}
