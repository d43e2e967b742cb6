"""Adversarial captures (tests/adversarial.py) replayed by the CLI in a child process.

For each: exit 0, no traceback, no decoder_error, peak RSS of the child well under 600 MB with
default limits, the normal HTTP flow at the end decoded normally, and the attack's expected
outcome (anomaly names, tags, counters) read from the records. The matrix with measured
numbers is docs/hostile-input.md.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from tests import adversarial as adv

RSS_LIMIT_MIB = 600
DEFAULT_MAX_DECOMPRESSED = 64 * 1024 * 1024  # docs/http.md, max_decompressed
DEFAULT_MAX_HEADERS = 500  # docs/http.md, max_headers
DEFAULT_MAX_PENDING = 100  # docs/http.md, max_pending
ANOMALY_CAP = 16  # docs/http.md: at most 16 anomalies per name per flow


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Result:
    def __init__(self, run: adv.ChildRun) -> None:
        self.run = run
        self.records = run.records()

    @cached_property
    def by_uid(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.records:
            out.setdefault(r["uid"], []).append(r)
        return out

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == kind]

    def anomalies(self, uid: str | None = None) -> Counter[str]:
        return Counter(r["name"] for r in self.of("anomaly") if uid is None or r["uid"] == uid)

    def http_by_uri(self, uri: str) -> list[dict[str, Any]]:
        return [r for r in self.of("http") if r["request"] and r["request"]["uri"] == uri]

    def flow(self, uid: str) -> dict[str, Any]:
        (flow,) = [r for r in self.by_uid[uid] if r["type"] == "flow"]
        return flow

    def summary(self) -> dict[str, Any]:
        for line in reversed(self.run.stderr.splitlines()):
            entry = json.loads(line)
            if entry.get("event") == "replay_finished":
                return entry
        raise AssertionError(f"no replay_finished log line in {self.run.stderr[-2000:]!r}")


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory):
    """replayed(name, *extra_args) -> Result; each capture written and replayed once."""
    outdir = tmp_path_factory.mktemp("adversarial")
    cache: dict[tuple[str, ...], Result] = {}

    def get(name: str, *extra: str) -> Result:
        key = (name, *extra)
        if key not in cache:
            attack = adv.BY_NAME[name]
            path = outdir / f"{name}.pcap"
            if not path.exists():
                adv.write_capture(attack, path)
            args = [*attack.args(adv.TEST), *extra]
            cache[key] = Result(adv.replay_child(path, args, 120, adv.scratch_env()))
        return cache[key]

    return get


# ------------------------------------------------------------------ every capture
@pytest.mark.parametrize("name", [a.name for a in adv.ATTACKS])
def test_survives_bounded_and_decodes_the_normal_flow(replayed, name):
    r = replayed(name)
    assert r.run.exit == 0, r.run.stderr[-3000:]
    assert b"Traceback" not in r.run.stderr
    assert r.run.peak_rss_mib < RSS_LIMIT_MIB
    assert r.run.seconds < 60
    assert r.summary()["capture_errors"] == 0
    assert "decoder_error" not in r.anomalies(), [
        a["detail"] for a in r.of("anomaly") if a["name"] == "decoder_error"
    ][:3]
    (normal,) = r.http_by_uri(adv.NORMAL_URI)
    assert normal["client"] == {"ip": adv.NORMAL_CLIENT, "port": adv.NORMAL_SPORT}
    assert normal["response"]["status"] == 200
    assert normal["response"]["body_len"] == len(adv.NORMAL_BODY)
    assert normal["response"]["body_sha256"] == adv.NORMAL_BODY_SHA256
    assert normal["tags"] == []
    flow = r.flow(normal["uid"])
    assert (flow["state"], flow["close_reason"], flow["service"]) == ("SF", "fin", "http")
    assert flow["client_to_server"]["missed_bytes"] == flow["server_to_client"]["missed_bytes"] == 0
    assert not r.anomalies(normal["uid"])


# ------------------------------------------------------------------ per attack
def test_ooo_flood_parks_within_the_memcap_and_loses_only_the_missing_segment(replayed):
    r = replayed("ooo_flood")
    assert r.anomalies()["task_memcap"] >= 1  # 800 x 100 KB > the 64 MiB task memcap
    segments = len(range(adv.MSS, adv.TEST.ooo_bytes, adv.MSS))
    stream_len = adv.MSS * (1 + segments)
    flood = [f for f in r.of("flow") if f["server"]["ip"] == "192.0.2.1"]
    assert len(flood) == adv.TEST.ooo_flows
    for f in flood:
        c2s = f["client_to_server"]
        # Every byte that was sent is either delivered or declared missed, exactly once.
        assert (c2s["bytes"], c2s["missed_bytes"]) == (stream_len - adv.MSS, adv.MSS)
        assert "G" in f["history"]


def test_syn_flood_evicts_the_least_recent_flows(replayed):
    r = replayed("syn_flood")
    total = adv.TEST.syn_flows + 1  # + the normal flow, created last
    flows = r.of("flow")
    assert len(flows) == total
    evicted = [f for f in flows if f["close_reason"] == "evicted"]
    assert len(evicted) == total - adv.TEST.syn_max_flows
    assert r.anomalies()["flow_evicted"] == len(evicted)
    assert {(f["state"], f["history"]) for f in evicted} == {("S0", "S")}
    # Least recently active first: the evicted ones are the oldest SYNs.
    assert max(f["ts_start"] for f in evicted) < min(
        f["ts_start"] for f in flows if f["close_reason"] != "evicted"
    )


# Suricata's target-based overlap policies (stream-tcp-list.c, after Novak & Sturges 2007),
# for the three scenarios of adv.OVERLAP_SCENARIOS: does the new segment's data win where it
# overlaps the old one? (1) new starts before old; (2) same start, new ends after; (3) new
# starts after the old and ends after it.
NEW_WINS = {
    "first": (False, False, False),
    "last": (True, True, True),
    "bsd": (True, False, False),
    "windows": (True, False, False),
    "linux": (True, True, False),
    "solaris": (True, True, True),
}


def _expected_uri(policy: str) -> str:
    uri = bytearray(b"/" + b"a" * adv.OVERLAP_URI_LEN)  # stream offsets 4.. of the request
    for (old_s, old_e, new_s, new_e), new_wins in zip(
        adv.OVERLAP_SCENARIOS, NEW_WINS[policy], strict=True
    ):
        for off in range(min(old_s, new_s), max(old_e, new_e)):
            in_old, in_new = old_s <= off < old_e, new_s <= off < new_e
            byte = b"N" if in_new and (new_wins or not in_old) else b"B"
            uri[off - 4] = byte[0]
    return uri.decode()


@pytest.mark.parametrize("policy", sorted(NEW_WINS))
def test_overlap_evasion_follows_the_policy_and_is_flagged(replayed, policy):
    r = replayed("overlap_evasion", "--overlap-policy", policy)
    assert r.run.exit == 0
    (txn,) = [h for h in r.of("http") if h["server"]["ip"] == "10.1.1.2"]
    assert txn["request"]["uri"] == _expected_uri(policy)
    assert txn["request"]["method"] == "GET"  # the later "XXXXX" retransmission changes nothing
    assert txn["response"]["status"] == 200
    assert r.anomalies(txn["uid"]) == {"overlap_different_data": len(adv.OVERLAP_SCENARIOS)}
    flow = r.flow(txn["uid"])
    assert "I" in flow["history"]
    assert flow["client_to_server"]["missed_bytes"] == 0


def test_one_byte_segments_keep_the_streams_intact(replayed):
    r = replayed("one_byte_segments")
    request, response = adv.http_exchange("/one-byte", adv.ONE_BYTE_BODY)
    txns = r.http_by_uri("/one-byte")
    assert len(txns) == 2  # in order, and shuffled in windows of 8
    for txn in txns:
        assert txn["tags"] == []
        assert txn["response"]["body_sha256"] == sha(adv.ONE_BYTE_BODY)
        flow = r.flow(txn["uid"])
        assert flow["client_to_server"]["sha256"] == sha(request)
        assert flow["server_to_client"]["sha256"] == sha(response)
        assert flow["client_to_server"]["packets"] > len(request)
        assert flow["client_to_server"]["missed_bytes"] == 0


def test_gzip_bomb_inflates_only_up_to_the_limit(replayed):
    r = replayed("gzip_bomb")
    bodies = adv.gzip_bomb_bodies()
    for i, body in enumerate(bodies):
        (txn,) = r.http_by_uri(f"/bomb{i}")
        resp = txn["response"]
        assert (resp["body_len"], resp["body_sha256"]) == (len(body), sha(body))
        assert resp["decoded_body_len"] == DEFAULT_MAX_DECOMPRESSED
        assert resp["decoded_body_sha256"] == adv.sha_of_zeros(DEFAULT_MAX_DECOMPRESSED)
        assert "decompression_limit" in txn["tags"]
        assert r.anomalies(txn["uid"]) == {"http_decompression_limit": 1}
    assert r.run.peak_rss_mib < 300


def test_gzip_bomb_limit_option(replayed):
    r = replayed("gzip_bomb", "-O", "http.max_decompressed=1000")
    (txn,) = r.http_by_uri("/bomb0")
    assert txn["response"]["decoded_body_len"] == 1000
    assert txn["response"]["decoded_body_sha256"] == sha(bytes(1000))


def test_stacked_gzip_bomb_limit_option(replayed):
    r = replayed("gzip_bomb", "-O", "http.max_decompressed=1000")
    (txn,) = r.http_by_uri("/bomb1")
    assert txn["response"]["decoded_body_len"] == 1000


def test_many_headers(replayed):
    r = replayed("many_headers")
    (big,) = r.http_by_uri(f"/headers{adv.HEADER_LINES}")
    assert {"header_limit", "parse_error"} <= set(big["tags"])
    assert big["response"]["status"] == 431  # the answer still pairs with the request
    assert {"http_header_limit", "http_parse_error"} <= set(r.anomalies(big["uid"]))
    assert len(big["request"]["headers"]) <= DEFAULT_MAX_HEADERS
    (wide,) = r.http_by_uri("/headers600")
    assert wide["tags"] == ["header_limit"]
    assert len(wide["request"]["headers"]) == DEFAULT_MAX_HEADERS
    assert wide["request"]["headers"][:2] == [["Host", "headers.test"], ["X-Header-00000", "v"]]
    assert wide["response"]["status"] == 200


def test_pipelined_requests_beyond_the_pending_limit(replayed):
    r = replayed("pipelined")
    txns = [h for h in r.of("http") if h["server"]["ip"] == "10.5.5.2"]
    requests = [h["request"]["uri"] for h in txns if h["request"]]
    assert sorted(requests) == sorted(f"/p/{i}" for i in range(adv.PIPELINED))
    assert sum(1 for h in txns if h["response"]) == adv.PIPELINED
    paired = [h for h in txns if h["request"] and h["response"]]
    assert len(paired) == DEFAULT_MAX_PENDING
    for h in paired:  # response i carries the digits of i: pairing is right
        i = h["request"]["uri"].rsplit("/", 1)[1]
        assert h["response"]["body_sha256"] == sha(i.encode())
    for h in txns:
        if h not in paired:
            assert "pending_limit" in h["tags"]
    assert r.anomalies(txns[0]["uid"]) == {"http_pending_limit": ANOMALY_CAP}


def test_chunk_size_2_pow_64(replayed):
    r = replayed("chunk_overflow")
    (down,) = r.http_by_uri("/chunk")
    assert {"parse_error", "truncated"} <= set(down["tags"])
    assert r.anomalies(down["uid"])["http_chunk_size_overflow"] == 1
    (up,) = r.http_by_uri("/upload")
    assert {"parse_error", "truncated"} <= set(up["tags"])
    assert r.anomalies(up["uid"])["http_chunk_size_overflow"] == 1


def test_smuggling_is_flagged(replayed):
    r = replayed("smuggling")
    (clte,) = r.http_by_uri("/clte")
    assert r.anomalies(clte["uid"])["http_content_length_with_transfer_encoding"] == 1
    # Transfer-Encoding wins (RFC 9112 6.3): the smuggled request is a transaction of its own.
    (smuggled,) = r.http_by_uri("/smuggled")
    assert smuggled["uid"] == clte["uid"]
    (clcl,) = r.http_by_uri("/clcl")
    assert r.anomalies(clcl["uid"])["http_conflicting_content_length"] == 1
    (teobf,) = r.http_by_uri("/teobf")
    assert "parse_error" in teobf["tags"]
    assert r.anomalies(teobf["uid"])["http_parse_error"] >= 1


def test_slow_headers_time_out_and_keep_what_came(replayed):
    r = replayed("slow_headers")
    (slow,) = r.http_by_uri("/slow")
    assert slow["response"] is None
    assert {"truncated", "no_response"} <= set(slow["tags"])
    assert len(slow["request"]["headers"]) == adv.SLOW_LINES + 1  # Host + every slow line
    flow = r.flow(slow["uid"])
    assert flow["close_reason"] == "timeout"
    assert flow["client_to_server"]["missed_bytes"] == 0
    assert flow["ts_end"] - flow["ts_start"] >= adv.SLOW_LINES * adv.SLOW_EVERY_NS / 1e9


def test_fragment_flood_and_overlapping_fragments(replayed):
    r = replayed("fragment_flood")
    (txn,) = [h for h in r.of("http") if h["server"]["ip"] == "10.9.0.2"]
    # probe/defrag.py: overlapping fragment bytes keep the first copy received.
    assert txn["request"]["uri"] == adv.FRAG_URI_GOOD.decode()
    assert txn["response"]["status"] == 200


def test_fragment_flood_counters(tmp_path):
    """In process, for the defragmenter's counters (not in the CLI summary)."""
    from wirestream.streams.replay import Replay, RuntimeConfig

    path = tmp_path / "frag.pcap"
    adv.write_capture(adv.BY_NAME["fragment_flood"], path)
    replay = Replay(RuntimeConfig(), lambda _: None)
    summary = replay.run([str(path)])
    d = summary.defrag
    assert d["evictions"] > 0  # 10,000 x ~64 KB reserved > max_bytes (64 MiB)
    assert d["too_many_fragments"] >= 1
    assert d["overlap_conflicts"] >= 1
    assert d["reassembled"] >= 1
    assert replay.source.defrag.buffered <= replay.source.defrag.max_bytes


def test_fragment_overlap_conflict_is_reported(replayed):
    r = replayed("fragment_flood")
    (txn,) = [h for h in r.of("http") if h["server"]["ip"] == "10.9.0.2"]
    assert "fragment_overlap_different_data" in r.anomalies(txn["uid"])


def test_ack_gap_bomb_counts_the_gaps(replayed):
    r = replayed("ack_gap_bomb")
    (txn,) = r.http_by_uri("/upload")
    flow = r.flow(txn["uid"])
    # ACKs far above anything the client sent are ignored (RFC 793) and reported; the holes
    # before the bytes the client did send are still counted when the flow ends...
    assert "ack_above_data" in r.anomalies(txn["uid"])
    assert flow["client_to_server"]["missed_bytes"] >= adv.ACK_GAP
    assert "G" in flow["history"] and txn["response"]["status"] == 413
    # ...without hashing gigabytes of zeros: the stream hash gives up instead.
    assert flow["client_to_server"]["sha256"] is None


def test_ack_gap_bomb_is_cheap(replayed):
    assert replayed("ack_gap_bomb").run.cpu_seconds < 1.0


def test_generator_cli_writes_every_capture(tmp_path: Path):
    assert adv.main([str(tmp_path), "--only", "overlap_evasion", "--only", "smuggling"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "overlap_evasion.pcap",
        "smuggling.pcap",
    ]
