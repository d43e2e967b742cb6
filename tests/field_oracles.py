"""Make the tshark oracles of the record fields added for issue 15 (HTTP convenience fields,
TLS server/certificate fields, DNS sections and EDNS), one file per capture and protocol:
fixtures/pcaps/oracles/<capture>/{http,tls,dns}_fields_tshark.jsonl.

`python -m tests.field_oracles [CAPTURE ...]` (needs tshark on PATH; made with 4.0.17 from
Debian 12). Tests read the files, never tshark: the expected values are tshark's, recorded.
Rows are tshark's own field values, per frame, in tshark's names; only frames carrying the
protocol are written, and a capture without any gets no file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
ORACLES = PCAPS / "oracles"
# The preferences of make_oracles.py's default run (shared/tools): bodies reassembled.
PREFS = ["-o", "tcp.desegment_tcp_streams:TRUE", "-o", "http.desegment_body:TRUE"]

COMMON = ["frame.number", "frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "udp.srcport"]
FIELDS = {
    "http": [
        *COMMON,
        "http.request",
        "http.response",
        "http.request.method",
        "http.host",
        "http.user_agent",
        "http.referer",
        "http.content_type",
        "http.time",
        "http.request_in",
        "tcp.segment.count",
    ],
    "tls": [
        *COMMON,
        "tls.handshake.type",
        "tls.handshake.version",
        "tls.handshake.ciphersuite",
        "tls.handshake.extensions_alpn_str",
        "tls.handshake.extensions.supported_version",
        "tls.alert_message.level",
        "tls.alert_message.desc",
        "tls.handshake.certificate",
        "x509ce.dNSName",
    ],
    "dns": [
        *COMMON,
        "dns.id",
        "dns.flags.response",
        "dns.flags.rcode",
        "dns.count.answers",
        "dns.count.auth_rr",
        "dns.count.add_rr",
        "dns.resp.name",
        "dns.resp.type",
        "dns.resp.class",
        "dns.resp.ttl",
        "dns.rr.udp_payload_size",
        "dns.resp.ext_rcode",
        "dns.resp.edns0_version",
        "dns.resp.z.do",
        "dns.opt.code",
        "dns.opt.len",
        "dns.opt.client.family",
        "dns.opt.client.netmask",
        "dns.opt.client.scope",
        "dns.opt.client.addr4",
        "dns.opt.client.addr6",
    ],
}
FILTERS = {"http": "http", "tls": "tls.handshake or tls.alert_message", "dns": "dns"}


def rows(pcap: Path, proto: str) -> list[dict[str, Any]]:
    cmd = ["tshark", "-n", "-r", str(pcap), *PREFS, "-Y", FILTERS[proto], "-T", "json"]
    for f in FIELDS[proto]:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    packets = json.loads(out or b"[]")
    return [p["_source"]["layers"] for p in packets]


def main(names: list[str]) -> None:
    pcaps = (
        [PCAPS / n for n in names]
        if names
        else sorted(p for p in PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))
    )
    for pcap in pcaps:
        for proto in FIELDS:
            got = rows(pcap, proto)
            path = ORACLES / pcap.name / f"{proto}_fields_tshark.jsonl"
            if not got:
                path.unlink(missing_ok=True)
                continue
            path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in got))
            print(f"{pcap.name}: {proto} {len(got)} frames", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
