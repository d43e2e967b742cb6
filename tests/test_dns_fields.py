"""DNS record fields of issue 15 against tshark (fixtures/pcaps/oracles/*/dns_fields_tshark.jsonl,
made by tests/field_oracles.py): every section's records (name, type, class, ttl; counts),
EDNS (UDP size, extended RCODE bits, version, DO, option codes) and the client subnet of
queries and responses; plus hand-made messages for what the captures lack."""

from __future__ import annotations

import json
import struct
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from wirestream.decoders.dns_msg import parse_message
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.replay import replay_records

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
ORACLES = PCAPS / "oracles"


def _oracle(name: str) -> list[dict]:
    path = ORACLES / name / "dns_fields_tshark.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


CAPTURES = sorted(p.parent.name for p in ORACLES.glob("*/dns_fields_tshark.jsonl"))


def _all(row: dict, key: str) -> list[str]:
    return row.get(key, [])


def _one(row: dict, key: str) -> str | None:
    v = row.get(key)
    return v[0] if v else None


def _edns_view(udp, ext, version, do, codes, ecs) -> tuple:
    return (udp, ext, version, do, tuple(codes), ecs)


def _tshark_messages(name: str) -> dict[tuple, Counter]:
    out: dict[tuple, Counter] = defaultdict(Counter)
    for r in _oracle(name):
        if len(_all(r, "dns.id")) != 1:  # several messages in one frame (TCP): lists merge
            continue
        src = _one(r, "ip.src") or _one(r, "ipv6.src")
        port = int(_one(r, "udp.srcport") or _one(r, "tcp.srcport") or 0)
        response = _one(r, "dns.flags.response") == "1"
        key = (src, port, int(_one(r, "dns.id"), 16), response)
        types = [int(t) for t in _all(r, "dns.resp.type")]
        names = ["." if n == "<Root>" else n for n in _all(r, "dns.resp.name")]
        counts = tuple(int(_one(r, f"dns.count.{k}")) for k in ("answers", "auth_rr", "add_rr"))
        ttls = [int(t) for t in _all(r, "dns.resp.ttl")]
        classes = [int(c, 16) for c in _all(r, "dns.resp.class")]
        rrs = None
        if len(names) == len(types) == sum(counts):
            plain = [(n, t) for n, t in zip(names, types, strict=True) if t != 41]
            if len(plain) == len(ttls) == len(classes):
                rrs = tuple(
                    (n, t, ttl, c) for (n, t), ttl, c in zip(plain, ttls, classes, strict=True)
                )
        # else tshark's json lists do not line up with the records (NSEC/NSEC3 type bitmaps
        # also fill dns.resp.type; damaged messages): only counts and EDNS are compared
        edns = None
        if 41 in types:
            ecs = None
            if _one(r, "dns.opt.client.family"):
                ecs = (
                    int(_one(r, "dns.opt.client.family")),
                    int(_one(r, "dns.opt.client.netmask")),
                    int(_one(r, "dns.opt.client.scope")),
                    _one(r, "dns.opt.client.addr4") or _one(r, "dns.opt.client.addr6"),
                )
            edns = _edns_view(
                int(_one(r, "dns.rr.udp_payload_size")),
                int(_one(r, "dns.resp.ext_rcode"), 16),
                int(_one(r, "dns.resp.edns0_version")),
                _one(r, "dns.resp.z.do") == "1",
                [int(c) for c in _all(r, "dns.opt.code")],
                ecs,
            )
        out[key][(counts, rrs, edns)] += 1
    return out


def _our_edns(e: dict | None) -> tuple | None:
    if e is None:
        return None
    s = e["client_subnet"]
    ecs = None if s is None else (s["family"], s["source_prefix"], s["scope_prefix"], s["address"])
    codes = [o["code"] for o in e["options"]]
    return _edns_view(e["udp_size"], e["ext_rcode"], e["version"], e["do"], codes, ecs)


def _our_messages(name: str) -> dict[tuple, Counter]:
    out: dict[tuple, Counter] = defaultdict(Counter)
    config = RuntimeConfig(decoder_options={"dns": {"sections": True}})
    for r in replay_records([str(PCAPS / name)], decoders=["dns"], config=config):
        if r["type"] != "dns":
            continue
        c, s = r["client"], r["server"]
        if "no_query" not in r["tags"]:
            # a query's counts are not kept; only its EDNS is compared
            out[(c["ip"], c["port"], r["trans_id"], False)][_our_edns(r["query_edns"])] += 1
        if "unanswered" not in r["tags"]:
            rrs = tuple((a["name"], a["type"], a["ttl"], None) for a in r["answers"]) + tuple(
                (x["name"], x["type"], x["ttl"], x["class"])
                for x in r["authority"] + r["additional"]
            )
            edns = _our_edns(r["response_edns"])
            counts = (
                len(r["answers"]),
                len(r["authority"]),
                len(r["additional"]) + (edns is not None),
            )
            out[(s["ip"], s["port"], r["trans_id"], True)][(counts, rrs, edns)] += 1
    return out


def _answer_classless(want: tuple) -> tuple:
    """tshark's view with the answers' classes dropped (our answers keep their original
    shape, without class)."""
    counts, rrs, edns = want
    if rrs is None:
        return want
    n = counts[0]
    return counts, tuple((a, b, c, None) for a, b, c, _ in rrs[:n]) + rrs[n:], edns


@pytest.mark.parametrize("name", CAPTURES)
def test_sections_and_edns_match_tshark(name: str) -> None:
    want = _tshark_messages(name)
    ours = _our_messages(name)
    compared = 0
    for key, views in want.items():
        if key not in ours:
            continue  # which messages we see is test_dns.py's subject
        got = ours[key]
        if key[3]:
            if any(v[1] is None for v in views):
                got = Counter({(v[0], None, v[2]): n for v, n in got.items()})
            assert Counter({_answer_classless(v): n for v, n in views.items()}) == got, key
        else:
            assert Counter({v[2]: n for v, n in views.items()}) == got, key
        compared += 1
    assert compared >= max(1, len(want) // 2)


def test_ecs_capture_has_client_subnets() -> None:
    """The ECS fixture: queries carry a client subnet (IPv4 and IPv6), as tshark says."""
    ours = _our_messages("zeek__dns-edns-ecs.pcap")
    subnets = [v[5] for k, c in ours.items() if not k[3] for v in c if v and v[5]]
    families = {s[0] for s in subnets}
    assert families == {1, 2}


def _message(additional: bytes, arcount: int, authority: bytes = b"", nscount: int = 0):
    header = struct.pack("!6H", 0x1234, 0x8180, 1, 0, nscount, arcount)
    question = b"\x01a\x00\x00\x01\x00\x01"
    return header + question + authority + additional


def test_ecs_prefix_bytes_and_unknown_option() -> None:
    # OPT: root, type 41, udp 1232, ext_rcode 1, version 0, DO; ECS /20 (3 address bytes),
    # then an option code nobody registered.
    ecs = struct.pack("!HBB", 1, 20, 0) + bytes([10, 1, 0x20])
    opts = struct.pack("!HH", 8, len(ecs)) + ecs + struct.pack("!HH", 65001, 2) + b"\xab\xcd"
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, (1 << 24) | 0x8000, len(opts)) + opts
    msg = parse_message(_message(opt, 1))
    assert msg.section_error is None and msg.additional == []
    assert msg.edns == {
        "udp_size": 1232,
        "ext_rcode": 1,
        "version": 0,
        "do": True,
        "options": [
            {"code": 8, "name": "ECS", "data": ecs.hex()},
            {"code": 65001, "name": "OPT65001", "data": "abcd"},
        ],
        "client_subnet": {
            "family": 1,
            "source_prefix": 20,
            "scope_prefix": 0,
            "address": "10.1.32.0",
        },
    }


def test_sections_off_by_default_but_edns_read() -> None:
    recs = [
        r
        for r in replay_records([str(PCAPS / "zeek__dns-edns-ecs.pcap")], decoders=["dns"])
        if r["type"] == "dns"
    ]
    assert recs and all(r["authority"] is None and r["additional"] is None for r in recs)
    with_sections = {
        (r["client"]["port"], r["trans_id"], r["ts"]): r
        for r in replay_records(
            [str(PCAPS / "zeek__dns-edns-ecs.pcap")],
            decoders=["dns"],
            config=RuntimeConfig(decoder_options={"dns": {"sections": True}}),
        )
        if r["type"] == "dns"
    }
    for r in recs:  # the option changes nothing else
        other = with_sections[(r["client"]["port"], r["trans_id"], r["ts"])]
        assert {k: v for k, v in r.items() if k not in ("authority", "additional")} == {
            k: v for k, v in other.items() if k not in ("authority", "additional")
        }


def test_section_damage_keeps_question_and_answers() -> None:
    ns = b"\x00" + struct.pack("!HHIH", 2, 1, 60, 40) + b"\x01b\x00"  # rdata runs past
    msg = parse_message(_message(b"", 0, ns, 1))
    assert msg.error is None and msg.qname == "a"
    assert msg.section_error == "authority 1: rdata runs past the message"
