"""tshark's view of the TLS hellos in a capture, as the oracle of tests/test_starttls.py.

One JSON line per ClientHello/ServerHello that tshark dissects (tshark follows STARTTLS for
the protocols it knows on their ports): endpoints, the hello fields, and two capture times:
`ts`, the frame where tshark completed the hello, and `ts_first`, the frame of its first TCP
segment (what our records' `ts` is: when the hello started to arrive).

    python3 tools/starttls_oracle.py CAPTURE OUTPUT.jsonl [tshark -d option ...]
"""

from __future__ import annotations

import json
import subprocess
import sys

FIELDS = {
    "frame.time_epoch": "ts",
    "ip.src": "src",
    "tcp.srcport": "sport",
    "ip.dst": "dst",
    "tcp.dstport": "dport",
    "tls.handshake.type": "handshake_types",
    "tls.handshake.version": "version",
    "tls.handshake.extensions_server_name": "sni",
    "tls.handshake.ciphersuite": "cipher_suites",
    "tls.handshake.extensions.supported_version": "supported_versions",
    "tls.handshake.extensions_alpn_str": "alpn",
    "tls.handshake.ja3": "ja3",
    "tls.handshake.ja3s": "ja3s",
    "tcp.segment": "segments",
}


def hellos(capture: str, extra: list[str]) -> list[dict]:
    cmd = [
        "tshark",
        "-r",
        capture,
        *extra,
        "-Y",
        "tls.handshake.type == 1 || tls.handshake.type == 2",
        "-T",
        "json",
    ]
    for f in FIELDS:
        cmd += ["-e", f]
    frames = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout or b"[]")
    times_cmd = ["tshark", "-r", capture, "-T", "fields", "-e", "frame.number", "-e",
                 "frame.time_epoch"]  # fmt: skip
    times = dict(
        line.split("\t")
        for line in subprocess.run(
            times_cmd, check=True, capture_output=True, text=True
        ).stdout.splitlines()
    )
    out = []
    for frame in frames:
        layers = frame["_source"]["layers"]
        v = {name: layers.get(field, []) for field, name in FIELDS.items()}
        kind = "client_hello" if "1" in v["handshake_types"] else "server_hello"
        out.append(
            {
                "type": kind,
                "ts": v["ts"][0],
                "ts_first": times[min(v["segments"], key=int)] if v["segments"] else v["ts"][0],
                "src": v["src"][0],
                "sport": int(v["sport"][0]),
                "dst": v["dst"][0],
                "dport": int(v["dport"][0]),
                "version": v["version"][0] if v["version"] else None,
                "sni": v["sni"][0] if v["sni"] else None,
                "cipher_suites": [int(x, 16) for x in v["cipher_suites"]],
                "supported_versions": v["supported_versions"],
                "alpn": v["alpn"],
                "ja3": v["ja3"][0] if v["ja3"] else None,
                "ja3s": v["ja3s"][0] if v["ja3s"] else None,
            }
        )
    return out


def main() -> None:
    capture, output, *extra = sys.argv[1:]
    with open(output, "w") as f:
        for hello in hellos(capture, extra):
            f.write(json.dumps(hello, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
