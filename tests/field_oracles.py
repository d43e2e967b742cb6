"""Make the tshark oracles of the record fields added for issue 15 (HTTP convenience fields,
TLS server/certificate fields, DNS sections and EDNS), one file per capture and protocol:
fixtures/pcaps/oracles/<capture>/{http,tls,dns}_fields_tshark.jsonl.

`python -m tests.field_oracles [CAPTURE ...]` (needs tshark on PATH; made with 4.0.17 from
Debian 12). Tests read the files, never tshark: the expected values are tshark's, recorded.
Rows are tshark's own field values, per frame, in tshark's names; only frames carrying the
protocol are written, and a capture without any gets no file. Certificates go to
x509_tshark.jsonl, one row per certificate (from tshark's PDML: the RDN texts are only there).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
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
        "tls.record.content_type",
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


def _rdn_text(field: ET.Element | None) -> str | None:
    """tshark's one-line RDN sequence: `N items (id-at-commonName=...,...)` -> the part in
    parentheses (tshark lists the RDNs most specific first, as RFC 4514)."""
    if field is None:
        return None
    seq = next((f for f in field.iter("field") if f.get("name", "").endswith("rdnSequence")), None)
    if seq is None:
        return None
    show = seq.get("showname", "")
    return show[show.index("(") + 1 : -1] if "(" in show else ""


def x509_rows(pcap: Path) -> list[dict[str, Any]]:
    """One row per certificate tshark dissects in a Certificate message: frame, sha256 of
    the DER, serial (hex as tshark shows it), issuer and subject text, the validity times
    and the SAN dNSNames."""
    cmd = ["tshark", "-n", "-r", str(pcap), *PREFS, "-Y", "tls.handshake.certificate"]
    out = subprocess.run([*cmd, "-T", "pdml"], capture_output=True, check=True).stdout
    rows = []
    for packet in ET.fromstring(out or b"<pdml/>").iter("packet"):
        frame = next(
            (f.get("show") for f in packet.iter("field") if f.get("name") == "frame.number"), None
        )
        for cert in packet.iter("field"):
            if cert.get("name") != "tls.handshake.certificate":
                continue
            fields = {f.get("name"): f for f in cert.iter("field")}
            times = [f.get("show") for f in cert.iter("field") if f.get("name") == "x509af.utcTime"]
            times += [
                f.get("show")
                for f in cert.iter("field")
                if f.get("name") == "x509af.generalizedTime"
            ]
            rows.append(
                {
                    "frame": frame,
                    "sha256": hashlib.sha256(bytes.fromhex(cert.get("value", ""))).hexdigest(),
                    "serial": fields["x509af.serialNumber"].get("value")
                    if "x509af.serialNumber" in fields
                    else None,
                    "issuer": _rdn_text(fields.get("x509af.issuer")),
                    "subject": _rdn_text(fields.get("x509af.subject")),
                    "validity": times,
                    "san_dns": [
                        f.get("show")
                        for f in cert.iter("field")
                        if f.get("name") == "x509ce.dNSName"
                    ],
                }
            )
    return rows


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
        certs = x509_rows(pcap)
        path = ORACLES / pcap.name / "x509_tshark.jsonl"
        if certs:
            path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in certs))
            print(f"{pcap.name}: x509 {len(certs)} certificates", file=sys.stderr)
        else:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1:])
