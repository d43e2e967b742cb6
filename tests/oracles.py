"""Compare wirestream's replay records with third-party oracles (tshark, tcpflow, Zeek, Suricata).

The oracles live in fixtures/pcaps/oracles/<capture>/ (see fixtures/pcaps/MANIFEST.md and
../shared/tools/make_oracles.py for how they were made). Expected values are always read from
those files; this module only decides *which* oracle is the reference for a capture (with a written
reason when it is not tshark's default run: HTTP_SOURCE, REQUEST_SOURCE, RESPONSE_SOURCE,
STREAM_SOURCE, EXCLUDED_FLOWS) and how our records line up with it. KNOWN_DIFFERENCES is the
per-capture list of differences we understand and accept for now (xfail in the tests).

Checks (one pytest case per capture and check, see tests/test_oracles.py):
  requests   multiset of (client ip, client port, server ip, server port, method, uri)
  responses  status codes per flow in order, 1xx included (ours: response.informational first)
  bodies     every body hash the reference has is among ours on the same flow (requests and
             responses; ours: decoded_body_sha256 when present, else body_sha256)
  streams    per TCP flow direction with data: sha256 and length of the delivered byte stream,
             each gap counted as that many zero bytes (tshark follow, zero-filled); a direction
             of ours that is all missed bytes is not an error (tshark cannot show a hole with
             nothing after it; zeek_conn checks those where Zeek has a baseline)
  zeek_conn  per connection in Zeek's conn.log baseline (only where a full one exists): bytes
             per side incl. missed, missed_bytes, packets, conn_state, history
  tls        multiset of hellos: ClientHello (endpoints, SNI, JA3), ServerHello (JA3S)
  dns        multiset of DNS messages: endpoints, transport, id, query/response, name, type,
             rcode (tls and dns only where the tshark oracle has any)
  sv_http    suricata-verify's expected `event_type: http` counts (only where test.yaml has them)

`python -m tests.oracles [CAPTURE ...]` prints the per-capture match table.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PCAP_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
ORACLE_DIR = PCAP_DIR / "oracles"

CHECKS = ("requests", "responses", "bodies", "streams", "zeek_conn", "tls", "dns", "sv_http")

Endpoint = tuple[str, int]
FlowKey = tuple[str, int, str, int]  # client ip, client port, server ip, server port

# --- which oracle is the reference -------------------------------------------------------------
# HTTP (requests, responses, bodies) defaults to http_tshark.jsonl: tshark's default mode re-parses
# every segment, so it resynchronises after lost data, which is what an analyser should do. Its
# blind spot is reordering (segments are not put back in order), handled here per capture.
# Every capture where summary.json says http_ooo_mode_differs has its decision here.
HTTP_SOURCE: dict[str, tuple[str, str]] = {
    "sv__http-gap-simple__input.pcap": (
        "tshark",
        "the out-of-order mode stops delivering the server side at the hole in /2's body and "
        "loses /3's response; the default mode resynchronises (responses: see RESPONSE_SOURCE)",
    ),
    "sv__http-gap-beyond-body__input.pcap": (
        "tshark",
        "same requests in both modes; neither reports a response (see RESPONSE_SOURCE)",
    ),
    "sv__tcp-rst-unacked-stream-07-http__input.pcap": (
        "tshark",
        "the modes differ only by a 'Continuation' entry, which is not a message",
    ),
    "tcpflow__samplePcaps__jpegs.cap": (
        "tshark",
        "the holes are unrecoverable (the first IP fragment of 9 segments is not in the "
        "capture); the out-of-order mode stops there and drops 9 'Continuation' entries, the "
        "messages (19 requests, 10 responses with a status) are the same in both modes",
    ),
    "zeek__http__zero-length-bodies-with-drops.pcap": (
        "tshark",
        "the out-of-order mode stops at the first hole of each side (3 requests, 3 responses); "
        "the default mode re-parses every segment and finds the 7 requests and 8 responses whose "
        "bytes were captured (the others are inside the holes)",
    ),
    "tcpflow__tests__test5-lines-randomized.pcap": (
        "tshark_ooo",
        "packets are shuffled (SYN not first); tshark's default mode does not reorder and finds "
        "no message, the out-of-order mode finds the same GET/200 as the ordered twin "
        "tcpflow__tests__test5-lines.pcap",
    ),
}

# Responses only: where tshark cannot see a response that is really there, suricata-verify's
# expected http events (test.yaml) are the reference (status sequence in test.yaml order).
RESPONSE_SOURCE: dict[str, tuple[str, str]] = {
    "sv__http-gap-simple__input.pcap": (
        "suricata_verify",
        "the body of response /2 has a 14-byte hole; tshark waits for the whole body and never "
        "reports /2 (default) or stops after it (ooo); the headers are intact and suricata-verify "
        "expects 200 for /1, /2 and /3",
    ),
    "sv__http-gap-beyond-body__input.pcap": (
        "suricata_verify",
        "the hole covers the end of response /1's body and /2's headers; tshark reports no "
        "response at all, but /1's headers are complete and suricata-verify expects 200 for /1",
    ),
    "sv__http-connect__http-connect-fragmented__input.pcap": (
        "suricata_verify",
        "after CONNECT/200 the tunnel carries plain HTTP (GET / -> 200); tshark parses the "
        "tunnelled request but not its response; suricata-verify expects 200 for both",
    ),
}

# Requests only: Zeek's http.log baseline for the capture, where it sees what tshark cannot.
REQUEST_SOURCE: dict[str, tuple[str, str]] = {
    "zeek__http__261__variant-01-chunk_2pow64_overflow.pcap": (
        "zeek_http",
        "the POST's chunk size 0x10000000000000000 overflows 64 bits; behind it the client sends "
        "'GET /smuggled-chunk-2pow64'; tshark stops at the bad chunk, Zeek's baseline for this "
        "capture logs both requests (its log has no addresses: compared by method and uri)",
    ),
}

# Single flows left out of one check, when the oracle is ambiguous or not applicable there:
# {capture: {check: {"client ip:port": reason}}}. Everything else in that check still counts.
EXCLUDED_FLOWS: dict[str, dict[str, dict[str, str]]] = {
    "zeek__http__methods.pcap": {
        "requests": {
            "128.2.6.136:46563": "request line 'OPTIONS HTTP/1.1' has two fields: tshark reads "
            "'HTTP/1.1' as the URI, Zeek's baseline (and we) as the version with an empty URI",
        },
    },
    "zeek__wikipedia.pcap": {
        "zeek_conn": {
            "141.142.220.118:35634": "the baseline comes from Zeek's core.pcap.dynamic-filter "
            "test, which installs a packet filter mid-run: Zeek saw 1 packet of this connection",
        },
    },
}

# Streams: tshark's follow (zero-filled) unless stated here.
STREAM_SOURCE: dict[str, tuple[str, str]] = {
    "sv__tcp-rst-unacked-stream-07-http__input.pcap": (
        "tcpflow",
        "client data is 16 bytes, a 16-byte hole, then 23 bytes before the RST; tshark's follow "
        "stops at the unfilled hole (16 bytes, no gap reported), tcpflow writes 16+16(zero)+23",
    ),
    "tcpflow__tests__test5-lines-randomized.pcap": (
        "twin:tcpflow__tests__test5-lines.pcap",
        "packets are shuffled; tshark splits the connection into two streams with a phantom "
        "3345-byte gap and tcpflow splits the server side in two; the ordered twin capture holds "
        "the same connection, so its tshark streams are the reference",
    ),
}

# --- honest per-capture status: expected differences ------------------------------------------
# {capture: {check: reason}}; tests/test_oracles.py marks these xfail (strict unless listed in
# NOT_STRICT), so a difference that goes away is noticed and the entry removed.
_FRAG_OVERLAP = (
    "IP fragments overlap with different bytes (a later fragment rewrites payload 28-51); "
    "tshark keeps the last copy, our defragmenter keeps the first by design (as BSD, Windows "
    "and Zeek do: '../winnt/system32/cmd.exe'); a per-target fragment policy is not offered"
)
KNOWN_DIFFERENCES: dict[str, dict[str, str]] = {
    "zeek__ipv4__fragmented-4.pcap": {
        "streams": _FRAG_OVERLAP,
        "requests": _FRAG_OVERLAP + "; the resulting HTTP/0.9-style line is a request for us, "
        "tshark's last-copy bytes hold a NUL and no request",
    },
    "sv__http-gap-beyond-body__input.pcap": {
        "responses": "we also report /3's 200: we resynchronise on 'HTTP/1.0 200 OK' after the "
        "hole (the bytes are in the capture, see tshark's follow); suricata-verify notes that "
        "suricata stops parsing responses after the gap",
    },
    "sv__tcp-rst-unacked-stream-07-http__input.pcap": {
        "requests": "'GET / HTTP/1.0' is intact but the headers have a 16-byte hole: we report "
        "the request tagged gap/truncated, tshark reports a request only with complete headers",
    },
    "zeek__http__http-lower-case-nonstandard-port.pcap": {
        "responses": "the status line is 'http/1.1 200 OK' (lower case): tshark does not take it "
        "for a response, we do (leniently, as Zeek does: this capture is Zeek's test for it)",
    },
    "own_connect_tunnels.pcap": {
        "responses": "we also report the 200 to the GET sent inside curl -p's CONNECT tunnel: "
        "tshark dissects the tunnelled request but not its 'HTTP/1.0 200 OK' answer; "
        "suricata-verify's http-connect tests expect that response (status 200) too",
    },
    "zeek__tls__hrr.pcap": {
        "tls": "we also report the second ServerHello (after the HelloRetryRequest): it arrives "
        "out of order (frame 11 after frame 9) and the TLS oracle was made without "
        "tcp.reassemble_out_of_order; tshark with it on lists the same JA3S as we do",
    },
}
# Differences that depend on engine behaviour still being settled (xfail, not strict).
NOT_STRICT: set[tuple[str, str]] = set()


# --- loading -----------------------------------------------------------------------------------
def canon_ip(a: str | None) -> str:
    """One spelling per address (tshark, tcpflow and we may differ for IPv6)."""
    if a is None:
        return ""
    try:
        return str(ipaddress.ip_address(a))
    except ValueError:
        return a


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


@functools.cache
def manifest() -> list[dict]:
    return json.loads((PCAP_DIR / "manifest.json").read_text())


def captures() -> list[str]:
    return [m["name"] for m in manifest()]


def capture_path(name: str) -> Path:
    return PCAP_DIR / name


@dataclass
class Oracle:
    name: str
    http: list[dict]
    http_ooo: list[dict]
    flows: list[dict]
    summary: dict
    tls: list[dict]
    dns: list[dict]
    sv_checks: list[dict] = field(default_factory=list)
    zeek_conn: list[dict] = field(default_factory=list)
    zeek_http: list[dict] = field(default_factory=list)


@functools.cache
def load_oracle(name: str) -> Oracle:
    d = ORACLE_DIR / name
    sv = d / "suricata_verify" / "test.yaml"
    return Oracle(
        name=name,
        http=_jsonl(d / "http_tshark.jsonl"),
        http_ooo=_jsonl(d / "http_tshark_ooo.jsonl"),
        flows=_jsonl(d / "flows.jsonl"),
        summary=json.loads((d / "summary.json").read_text()),
        tls=_jsonl(d / "tls_tshark.jsonl"),
        dns=_jsonl(d / "dns_tshark.jsonl"),
        sv_checks=parse_sv_checks(sv.read_text()) if sv.exists() else [],
        zeek_conn=parse_zeek_log(d / "zeek_baseline" / "conn.log", need_ids=True),
        zeek_http=parse_zeek_log(d / "zeek_baseline" / "http.log"),
    )


def parse_zeek_log(path: Path, need_ids: bool = False) -> list[dict]:
    """Rows of a Zeek TSV log baseline as dicts ("-" unset -> None, "(empty)" -> "").

    btest baselines are either full logs ('#fields' header) or a few columns cut out by
    zeek-cut (a plain header line, often without the connection 4-tuple); with need_ids the
    latter give [].
    """
    if not path.exists():
        return []
    names: list[str] = []
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            names = line.split("\t")[1:]
        elif not line or line.startswith("#"):
            continue
        elif not names:
            names = line.split("\t")
        else:
            vals = [None if v == "-" else "" if v == "(empty)" else v for v in line.split("\t")]
            rows.append(dict(zip(names, vals, strict=False)))
    return rows if "id.orig_h" in names or not need_ids else []


def _scalar(v: str) -> Any:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    if v.lstrip("-").isdigit():
        return int(v)
    return v


def parse_sv_checks(text: str) -> list[dict]:
    """The `checks:` list of a suricata-verify test.yaml: [{"count": N, "match": {key: value}}].

    A small reader for the one shape these files use (no PyYAML dependency); commented-out lines
    are dropped, which matters: test.yaml comments out expectations suricata does not meet.
    """
    checks: list[dict] = []
    in_checks = in_match = False
    match_indent = 0
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        s = line.strip()
        if indent == 0:
            in_checks = s == "checks:"
            in_match = False
            continue
        if not in_checks:
            continue
        if s.startswith("- filter:"):
            checks.append({"count": None, "match": {}})
            in_match = False
        elif not checks:
            continue
        elif s.startswith("count:"):
            checks[-1]["count"] = _scalar(s.split(":", 1)[1])
            in_match = False
        elif s == "match:":
            in_match, match_indent = True, indent
        elif in_match and indent > match_indent and ":" in s:
            k, v = s.split(":", 1)
            checks[-1]["match"][k.strip()] = _scalar(v)
    return checks


# --- running the engine ------------------------------------------------------------------------
# Captures whose reference was made with a non-default configuration: we run with the same.
RUN_SETTINGS: dict[str, dict[str, object]] = {
    # suricata-verify runs this test with `--set vlan.use-for-tracking=false` (its test.yaml):
    # client packets carry VLAN 3136, server packets none.
    "sv__bug-4376__syn_retransmit_with_ts.pcap": {"vlan_in_flow_key": False},
}


@functools.cache
def replay(name: str) -> tuple[dict, ...]:
    """wirestream's records for one capture (cached: every check reads the same run)."""
    from wirestream.streams.config import RuntimeConfig
    from wirestream.streams.replay import replay_records

    config = RuntimeConfig(**RUN_SETTINGS.get(name, {}))  # type: ignore[arg-type]
    return tuple(replay_records([str(capture_path(name))], config=config))


# --- comparison --------------------------------------------------------------------------------
@dataclass
class Outcome:
    """matched/total counts what the reference expects; problems explain every difference."""

    check: str
    matched: int = 0
    total: int = 0
    problems: list[str] = field(default_factory=list)
    applicable: bool = True
    reference: str = "tshark"

    @property
    def ok(self) -> bool:
        return not self.problems

    def explain(self, limit: int = 25) -> str:
        head = f"{self.check} vs {self.reference}: {self.matched}/{self.total} matched"
        lines = self.problems[:limit]
        if len(self.problems) > limit:
            lines.append(f"... {len(self.problems) - limit} more")
        return "\n  ".join([head, *lines])


def _ep(d: dict | None) -> Endpoint:
    d = d or {}
    return canon_ip(d.get("ip")), int(d.get("port") or 0)


def _key(rec: dict) -> FlowKey:
    c, s = _ep(rec.get("client")), _ep(rec.get("server"))
    return c[0], c[1], s[0], s[1]


def _msg_key(m: dict) -> FlowKey:
    """Flow key of a tshark HTTP message, client first."""
    src, dst = (canon_ip(m.get("src")), m.get("sport")), (canon_ip(m.get("dst")), m.get("dport"))
    c, s = (src, dst) if m["type"] == "request" else (dst, src)
    return c[0], int(c[1] or 0), s[0], int(s[1] or 0)


def http_reference(name: str) -> tuple[str, list[dict]]:
    o = load_oracle(name)
    src = HTTP_SOURCE.get(name, ("tshark", ""))[0]
    return src, (o.http_ooo if src == "tshark_ooo" else o.http)


def _is_message(m: dict) -> bool:
    """tshark also lists 'Continuation' data (no status line, no method): not a message."""
    if m["type"] == "request":
        return m.get("method") is not None
    return isinstance(m.get("code"), int)


def _ours_http(records: tuple[dict, ...]) -> list[dict]:
    """Our HTTP transactions over TCP, per connection in order. HTTP over UDP (SSDP) is left
    out: tshark dissects it as 'ssdp', so the http oracles never list it."""
    udp = {r.get("uid") for r in records if r.get("type") == "flow" and r.get("proto") == "udp"}
    http = [r for r in records if r.get("type") == "http" and r.get("uid") not in udp]
    first_ts: dict[str, float] = {}
    for r in http:
        ts = r.get("ts") or 0.0
        uid = str(r.get("uid"))
        first_ts[uid] = min(first_ts.get(uid, ts), ts)
    return sorted(
        http,
        key=lambda r: (first_ts[str(r.get("uid"))], str(r.get("uid")), r.get("trans_depth") or 0),
    )


def _body_hash(msg: dict | None) -> str | None:
    if not msg:
        return None
    return msg.get("decoded_body_sha256") or msg.get("body_sha256")


def excluded(name: str, check: str) -> dict[str, str]:
    """{"client ip:port": reason} of flows left out of this check (EXCLUDED_FLOWS)."""
    return EXCLUDED_FLOWS.get(name, {}).get(check, {})


def _kept(name: str, check: str, key: FlowKey) -> bool:
    return f"{key[0]}:{key[1]}" not in excluded(name, check)


def compare_requests(name: str, records: tuple[dict, ...]) -> Outcome:
    src = REQUEST_SOURCE.get(name, ("", ""))[0]
    no_ids = False
    if src == "zeek_http":
        rows = [z for z in load_oracle(name).zeek_http if z.get("method")]
        no_ids = not rows or "id.orig_h" not in rows[0]
        exp = Counter(
            (
                *(("", 0, "", 0) if no_ids else _zeek_key(z)),
                z["method"],
                z.get("uri") or "",
            )
            for z in rows
        )
    else:
        src, msgs = http_reference(name)
        exp = Counter(
            (*_msg_key(m), m["method"], m.get("uri") or "")
            for m in msgs
            if m["type"] == "request" and _is_message(m)
        )
    ours = Counter(
        (
            *(("", 0, "", 0) if no_ids else _key(r)),
            r["request"].get("method"),
            r["request"].get("uri") or "",
        )
        for r in _ours_http(records)
        if r.get("request")
    )
    if not no_ids:
        exp = Counter({k: n for k, n in exp.items() if _kept(name, "requests", k[:4])})
        ours = Counter({k: n for k, n in ours.items() if _kept(name, "requests", k[:4])})
    out = Outcome("requests", sum((exp & ours).values()), sum(exp.values()), reference=src)
    for k, n in sorted((exp - ours).items(), key=str):
        out.problems.append(f"missing x{n}: {k}")
    for k, n in sorted((ours - exp).items(), key=str):
        out.problems.append(f"unexpected x{n}: {k}")
    return out


def _our_statuses(records: tuple[dict, ...]) -> dict[FlowKey, list[int]]:
    per: dict[FlowKey, list[int]] = defaultdict(list)
    for r in _ours_http(records):
        resp = r.get("response")
        if not resp:
            continue
        per[_key(r)] += [int(i["status"]) for i in resp.get("informational") or []]
        per[_key(r)].append(int(resp["status"]))
    return per


def compare_responses(name: str, records: tuple[dict, ...]) -> Outcome:
    rsrc = RESPONSE_SOURCE.get(name)
    if rsrc and rsrc[0] == "suricata_verify":
        return _compare_responses_sv(name, records)
    src, msgs = http_reference(name)
    exp: dict[FlowKey, list[int]] = defaultdict(list)
    for m in sorted(msgs, key=lambda m: (m["frame"], m["index_in_frame"])):
        if m["type"] == "response" and _is_message(m):
            exp[_msg_key(m)].append(m["code"])
    ours = _our_statuses(records)
    out = Outcome("responses", reference=src)
    for k in sorted(set(exp) | set(ours), key=str):
        e, o = exp.get(k, []), ours.get(k, [])
        out.total += len(e)
        out.matched += sum(1 for a, b in zip(e, o, strict=False) if a == b)
        if e != o:
            out.problems.append(f"{k}: expected {e}, ours {o}")
    return out


def _sv_http_filters(name: str) -> list[dict]:
    return [c for c in load_oracle(name).sv_checks if c["match"].get("event_type") == "http"]


def _compare_responses_sv(name: str, records: tuple[dict, ...]) -> Outcome:
    exp: list[int] = []
    for c in _sv_http_filters(name):
        if "http.status" in c["match"]:
            exp += [int(c["match"]["http.status"])] * int(c["count"] or 0)
    ours = [int(r["response"]["status"]) for r in _ours_http(records) if r.get("response")]
    out = Outcome("responses", reference="suricata_verify")
    out.total = len(exp)
    out.matched = sum(1 for a, b in zip(exp, ours, strict=False) if a == b)
    if exp != ours:
        out.problems.append(f"final statuses: expected {exp}, ours {ours}")
    return out


def compare_bodies(name: str, records: tuple[dict, ...]) -> Outcome:
    src, msgs = http_reference(name)
    exp: dict[FlowKey, Counter] = defaultdict(Counter)
    for m in msgs:
        if _is_message(m) and m.get("body_sha256"):
            exp[_msg_key(m)][(m["type"], m["body_sha256"])] += 1
    ours: dict[FlowKey, Counter] = defaultdict(Counter)
    for r in _ours_http(records):
        for kind in ("request", "response"):
            h = _body_hash(r.get(kind))
            if h:
                ours[_key(r)][(kind, h)] += 1
    out = Outcome("bodies", reference=src)
    for k, want in sorted(exp.items(), key=str):
        got = ours.get(k, Counter())
        out.total += sum(want.values())
        out.matched += sum((want & got).values())
        for (kind, h), n in (want - got).items():
            out.problems.append(f"{k}: {kind} body sha256 {h[:16]}.. x{n} not among ours")
    return out


@dataclass(frozen=True)
class ExpectedDir:
    src: Endpoint
    dst: Endpoint
    stream: int
    length: int
    sha256: str


def stream_reference(name: str) -> tuple[str, list[ExpectedDir]]:
    src = STREAM_SOURCE.get(name, ("tshark", ""))[0]
    rows_of = name
    use_tcpflow = src == "tcpflow"
    if src.startswith("twin:"):
        rows_of = src.split(":", 1)[1]
    out: list[ExpectedDir] = []
    for r in load_oracle(rows_of).flows:
        if r.get("tcp_stream") is None:
            continue  # tcpflow files tshark has no stream for (Ethernet padding only)
        if use_tcpflow:
            t = r.get("tcpflow") or {}
            length, sha = t.get("len", 0), t.get("sha256")
        else:
            f = r["tshark_follow"]
            length, sha = f["len_zero_filled"], f["sha256_zero_filled"]
        if length:
            a = (canon_ip(r["src"]), int(r["sport"]))
            b = (canon_ip(r["dst"]), int(r["dport"]))
            out.append(ExpectedDir(a, b, int(r["tcp_stream"]), int(length), sha))
    return src, out


def _our_dirs(records: tuple[dict, ...]) -> dict[tuple[Endpoint, Endpoint], list[tuple]]:
    """(src, dst) -> [(length incl. gaps, sha256, uid, bytes)] by flow start, with data."""
    per: dict[tuple[Endpoint, Endpoint], list[tuple]] = defaultdict(list)
    flows = [r for r in records if r.get("type") == "flow" and r.get("proto", "tcp") == "tcp"]
    for r in sorted(flows, key=lambda r: (r.get("ts_start") or 0.0, str(r.get("uid")))):
        c, s = _ep(r.get("client")), _ep(r.get("server"))
        for a, b, d in ((c, s, "client_to_server"), (s, c, "server_to_client")):
            st = r.get(d) or {}
            n = int(st.get("bytes") or 0) + int(st.get("missed_bytes") or 0)
            if n:
                per[(a, b)].append((n, st.get("sha256"), r.get("uid"), int(st.get("bytes") or 0)))
    return per


def compare_streams(name: str, records: tuple[dict, ...]) -> Outcome:
    src, exp_dirs = stream_reference(name)
    exp: dict[tuple[Endpoint, Endpoint], list[ExpectedDir]] = defaultdict(list)
    for e in sorted(exp_dirs, key=lambda e: e.stream):
        exp[(e.src, e.dst)].append(e)
    ours = _our_dirs(records)
    out = Outcome("streams", reference=src)
    for k in sorted(set(exp) | set(ours), key=str):
        e, o = exp.get(k, []), ours.get(k, [])
        out.total += len(e)
        for i in range(max(len(e), len(o))):
            if i >= len(o):
                out.problems.append(f"{k[0]}->{k[1]} stream {e[i].stream}: no data in ours")
            elif i >= len(e):
                if o[i][3] == 0:
                    continue  # all missed: tshark's follow cannot show a hole with no data after it
                out.problems.append(f"{k[0]}->{k[1]} uid {o[i][2]}: {o[i][0]} bytes not expected")
            elif (e[i].length, e[i].sha256) == o[i][:2]:
                out.matched += 1
            else:
                out.problems.append(
                    f"{k[0]}->{k[1]} stream {e[i].stream}: expected {e[i].length} bytes "
                    f"{e[i].sha256[:12]}, ours {o[i][0]} bytes {str(o[i][1])[:12]} (uid {o[i][2]})"
                )
    return out


def _compare_messages(check: str, exp: Counter, ours: Counter) -> Outcome:
    out = Outcome(check, sum((exp & ours).values()), sum(exp.values()), applicable=bool(exp))
    for k, n in sorted((exp - ours).items(), key=str):
        out.problems.append(f"missing x{n}: {k}")
    for k, n in sorted((ours - exp).items(), key=str):
        out.problems.append(f"unexpected x{n}: {k}")
    return out


def _dir(a: Endpoint, b: Endpoint) -> tuple:
    return (*a, *b)


_ZEEK_SIDES = (("orig", "client_to_server"), ("resp", "server_to_client"))


def _zeek_key(z: dict) -> FlowKey:
    return (
        canon_ip(z["id.orig_h"]),
        int(z["id.orig_p"]),
        canon_ip(z["id.resp_h"]),
        int(z["id.resp_p"]),
    )


def compare_zeek_conn(name: str, records: tuple[dict, ...]) -> Outcome:
    rows = load_oracle(name).zeek_conn
    flows: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("type") == "flow":
            flows[(r.get("proto"), *_key(r))].append(r)
    rows = [z for z in rows if _kept(name, "zeek_conn", _zeek_key(z))]
    out = Outcome("zeek_conn", total=len(rows), applicable=bool(rows), reference="zeek")
    for z in rows:
        key = (z["proto"], *_zeek_key(z))
        ours = flows.get(key)
        if not ours:
            flipped = (key[0], key[3], key[4], key[1], key[2])
            why = "with client and server swapped" if flows.get(flipped) else "none"
            out.problems.append(f"{key}: no flow of ours ({why})")
            continue
        r = ours.pop(0)
        want: dict[str, Any] = {"conn_state": z["conn_state"], "history": z["history"] or ""}
        got: dict[str, Any] = {"conn_state": r.get("state"), "history": r.get("history") or ""}
        missed = 0
        for side, d in _ZEEK_SIDES:
            st = r.get(d) or {}
            missed += int(st.get("missed_bytes") or 0)
            if z[f"{side}_bytes"] is not None:
                want[f"{side}_bytes"] = int(z[f"{side}_bytes"])
                got[f"{side}_bytes"] = int(st.get("bytes") or 0) + int(st.get("missed_bytes") or 0)
            want[f"{side}_pkts"] = int(z[f"{side}_pkts"])
            got[f"{side}_pkts"] = st.get("packets")
        want["missed_bytes"], got["missed_bytes"] = int(z["missed_bytes"] or 0), missed
        diff = {k: (v, got[k]) for k, v in want.items() if got[k] != v}
        if diff:
            out.problems.append(f"{key}: (zeek, ours) differ: {diff}")
        else:
            out.matched += 1
    return out


def compare_tls(name: str, records: tuple[dict, ...]) -> Outcome:
    """Each ClientHello (sender -> receiver, SNI, JA3) and ServerHello (JA3S)."""
    exp = Counter()
    for m in load_oracle(name).tls:
        a, b = (canon_ip(m["src"]), int(m["sport"])), (canon_ip(m["dst"]), int(m["dport"]))
        if m["type"] == "client_hello":
            exp[("client_hello", *_dir(a, b), m.get("sni"), m.get("ja3"))] += 1
        else:
            exp[("server_hello", *_dir(a, b), None, m.get("ja3s"))] += 1
    ours = Counter()
    for r in records:
        if r.get("type") != "tls":
            continue
        c, s = _ep(r.get("client")), _ep(r.get("server"))
        ch, sh = r.get("client_hello"), r.get("server_hello")
        if ch:
            ours[("client_hello", *_dir(c, s), ch.get("sni"), ch.get("ja3"))] += 1
        if sh:
            ours[("server_hello", *_dir(s, c), None, sh.get("ja3s"))] += 1
    return _compare_messages("tls", exp, ours)


NOT_DNS_PORTS = {5353: "mdns", 5355: "llmnr"}  # tshark dissects these as other protocols


def compare_dns(name: str, records: tuple[dict, ...]) -> Outcome:
    """Each DNS message: sender -> receiver, transport, id, query or response, name, type,
    rcode. mDNS and LLMNR (ports 5353, 5355) are left out: tshark dissects them as 'mdns' and
    'llmnr', so the dns oracle never lists them."""
    exp = Counter()
    for m in load_oracle(name).dns:
        a, b = (canon_ip(m["src"]), int(m["sport"])), (canon_ip(m["dst"]), int(m["dport"]))
        qname = (m.get("qname") or "").lower() or None
        k = (*_dir(a, b), m["transport"], m.get("id"), m["response"], qname, m.get("qtype"))
        exp[(*k, m.get("rcode") if m["response"] else None)] += 1
    ours = Counter()
    for r in records:
        if r.get("type") != "dns":
            continue
        c, s = _ep(r.get("client")), _ep(r.get("server"))
        if c[1] in NOT_DNS_PORTS or s[1] in NOT_DNS_PORTS:
            continue
        tags = set(r.get("tags") or [])
        qname = (r.get("query") or "").lower() or None
        base = (r.get("transport"), r.get("trans_id"))
        if "no_query" not in tags:
            ours[(*_dir(c, s), *base, False, qname, r.get("qtype"), None)] += 1
        if "unanswered" not in tags:
            ours[(*_dir(s, c), *base, True, qname, r.get("qtype"), r.get("rcode"))] += 1
    return _compare_messages("dns", exp, ours)


def _host(r: dict) -> str | None:
    for k, v in (r.get("request") or {}).get("headers") or []:
        if k.lower() == "host":
            v = v.strip().lower()
            return v[: v.index("]") + 1] if v.startswith("[") and "]" in v else v.split(":")[0]
    return None


def _version(v: Any) -> str | None:
    if v is None:
        return None
    v = str(v)
    return v if v.startswith("HTTP/") else f"HTTP/{v}"


_SV_FIELDS = {
    "http.url": lambda r: (r.get("request") or {}).get("uri"),
    "http.status": lambda r: (r.get("response") or {}).get("status"),
    "http.http_method": lambda r: (r.get("request") or {}).get("method"),
    "http.hostname": _host,
    "http.protocol": lambda r: _version((r.get("request") or {}).get("version")),
    "dest_port": lambda r: _ep(r.get("server"))[1],
    "src_port": lambda r: _ep(r.get("client"))[1],
}
# Ignored keys: event_type (always http here), tx_id (suricata's numbering), vlan[0].


def compare_sv_http(name: str, records: tuple[dict, ...]) -> Outcome:
    filters = _sv_http_filters(name)
    ours = _ours_http(records)
    out = Outcome("sv_http", total=len(filters), applicable=bool(filters), reference="suricata")
    for c in filters:
        want = {k: v for k, v in c["match"].items() if k in _SV_FIELDS}
        n = sum(1 for r in ours if all(_SV_FIELDS[k](r) == v for k, v in want.items()))
        if n == c["count"]:
            out.matched += 1
        else:
            out.problems.append(f"{want}: expected count {c['count']}, ours {n}")
    return out


COMPARE = {
    "requests": compare_requests,
    "responses": compare_responses,
    "bodies": compare_bodies,
    "streams": compare_streams,
    "zeek_conn": compare_zeek_conn,
    "tls": compare_tls,
    "dns": compare_dns,
    "sv_http": compare_sv_http,
}


def applicable(name: str, check: str) -> bool:
    """tls/dns/sv_http/zeek_conn only where the oracle has something; the others everywhere."""
    o = load_oracle(name)
    if check == "tls":
        return bool(o.tls)
    if check == "dns":
        return bool(o.dns)
    if check == "sv_http":
        return bool(_sv_http_filters(name))
    if check == "zeek_conn":
        return bool(o.zeek_conn)
    return True


def known(name: str, check: str) -> str | None:
    """Documented reason this capture/check differs, or None."""
    return KNOWN_DIFFERENCES.get(name, {}).get(check)


def compare(name: str, check: str, records: tuple[dict, ...] | None = None) -> Outcome:
    return COMPARE[check](name, replay(name) if records is None else records)


# --- the match table ---------------------------------------------------------------------------
def match_table(names: list[str] | None = None) -> str:
    """Markdown table: per capture and check, matched/total ('x' = differs, listed as known)."""
    names = names or captures()
    head = ["capture", *CHECKS, "notes"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    totals = Counter()
    for name in names:
        try:
            records = replay(name)
        except Exception as e:  # report, keep going
            rows.append(f"| `{name}` | replay failed: {type(e).__name__}: {e} |")
            totals["crash"] += 1
            continue
        cells, notes = [], []
        for check in CHECKS:
            if not applicable(name, check):
                cells.append("-")
                continue
            o = compare(name, check, records)
            why = known(name, check)
            mark = "" if o.ok else (" x" if why else " **FAIL**")
            totals["ok" if o.ok else ("known" if why else "fail")] += 1
            cells.append(f"{o.matched}/{o.total}{mark}")
            if o.ok and why:
                notes.append(f"{check}: matches despite known-difference entry")
            if excluded(name, check):
                notes.append(f"{check}: {len(excluded(name, check))} flow(s) excluded")
        rows.append(f"| `{name}` | " + " | ".join(cells) + " | " + "; ".join(notes) + " |")
    rows.append("")
    rows.append(
        f"checks: {totals['ok']} match, {totals['known']} known differences (x), "
        f"{totals['fail']} unexplained failures, {totals['crash']} replay crashes"
    )
    return "\n".join(rows)


def details(names: list[str]) -> str:
    """Every problem of every check, for the named captures."""
    lines = []
    for name in names:
        records = replay(name)
        for check in CHECKS:
            if applicable(name, check):
                o = compare(name, check, records)
                if not o.ok:
                    lines.append(f"{name}: {o.explain()}")
    return "\n".join(lines)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    print(match_table(args or None))
    if "-v" in sys.argv[1:]:
        print()
        print(details(args or captures()))
