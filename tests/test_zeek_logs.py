"""`replay --format zeek|zeek-json`: logs read back by zat (an independent Zeek log
reader) with Zeek's column names and types, compared with Zeek's own baseline logs shipped
with the fixtures, and the JSON form checked against the TSV one."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dpkt
import pandas as pd
import pytest
from zat.log_to_dataframe import LogToDataFrame

from tests.oracles import parse_zeek_log
from wirestream.runner import main
from wirestream.streams.replay import replay_records
from wirestream.streams.serde import dumps_record
from wirestream.streams.zeeklogs import fields_of, zeek_json_lines, zeek_rows, zeek_tsv

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
ORACLES = FIXTURES / "oracles"
# The captures with full Zeek baselines (a '#fields' header with the connection ids).
CONN_BASELINES = ["zeek__http__connect-with-header.pcap", "zeek__tcp__miss_end_data.pcap",
                  "zeek__tcp__http-on-irc-port-missing-syn.pcapng"]  # fmt: skip
HTTP_BASELINES = ["zeek__http__100-continue.pcap", "zeek__http__connect-with-header.pcap",
                  "zeek__http__get.pcap", "zeek__http__http-11-request-then-cruft.pcap",
                  "zeek__http__methods.pcap", "zeek__http__pipelined-requests.pcap"]  # fmt: skip
MIXED = ["zeek__http__get.pcap", "zeek__tls__tls1.2.pcap", "zeek__dns__long-connection.pcap",
         "sv__eve-overlap-payload-01__tcp-overlap.pcap", "zeek__dns__mdns.pcap"]  # fmt: skip


def run_zeek(tmp: Path, captures: list[str], fmt: str = "zeek") -> Path:
    out = tmp / fmt
    args = ["replay", *(str(FIXTURES / c) for c in captures), "--format", fmt, "-o", str(out)]
    assert main([*args, "--no-progress", "--log-level", "error"]) == 0
    return out


def header(path: Path) -> dict[str, list[str]]:
    return {
        line.split("\t")[0]: line.split("\t")[1:]
        for line in path.read_text().splitlines()
        if line.startswith("#") and not line.startswith("#separator")
    }


def zat_frame(path: Path) -> pd.DataFrame:
    return LogToDataFrame().create_dataframe(str(path), ts_index=False)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_zeek(tmp_path_factory.mktemp("zeek"), MIXED)


def test_zat_reads_every_log_with_zeeks_names_and_types(mixed: Path) -> None:
    assert sorted(p.name for p in mixed.iterdir()) == [
        "conn.log", "dns.log", "files.log", "http.log", "ssl.log", "weird.log", "x509.log",
    ]  # fmt: skip
    records = replay_records([str(FIXTURES / c) for c in MIXED])
    by_type = {"conn": "flow", "http": "http", "ssl": "tls", "dns": "dns", "weird": "anomaly"}
    for log in mixed.iterdir():
        path = log.stem
        frame = zat_frame(log)
        assert list(frame.columns) == [name for name, _, _ in fields_of(path)]
        if path not in by_type:  # x509, files: several rows per record (tests below)
            continue
        ours = [r for r in records if r["type"] == by_type[path]]
        assert len(frame) == len(ours) > 0
        assert list(frame["uid"]) == [r["uid"] for r in ours]
        # zat converted each column by its #types entry, as it does Zeek's logs.
        assert str(frame["ts"].dtype).startswith("datetime64")
        assert str(frame["id.orig_p"].dtype) == "UInt16"
        stamps = [pd.Timestamp(r["ts"], unit="s") for r in ours]
        assert all(
            abs(a - b) < pd.Timedelta(microseconds=1)
            for a, b in zip(frame["ts"], stamps, strict=True)
        )
    conn = zat_frame(mixed / "conn.log")
    flows = [r for r in records if r["type"] == "flow"]
    assert str(conn["orig_ip_bytes"].dtype) == "UInt64"
    assert str(conn["duration"].dtype).startswith("timedelta64")
    assert list(conn["orig_ip_bytes"]) == [f["client_to_server"]["ip_bytes"] for f in flows]
    assert list(conn["community_id"].astype(str)) == [f["community_id"] for f in flows]
    assert set(conn["proto"].astype(str)) == {"tcp", "udp", "icmp", "unknown_transport"}
    dns = zat_frame(mixed / "dns.log")
    assert (
        str(dns["rtt"].dtype).startswith("timedelta64")
        and dns["RD"].astype(str).isin(["T", "F"]).all()
    )


@pytest.mark.parametrize("capture", CONN_BASELINES)
def test_conn_log_matches_zeeks_baseline(tmp_path: Path, capture: str) -> None:
    baseline = ORACLES / capture / "zeek_baseline" / "conn.log"
    ours_path = run_zeek(tmp_path, [capture]) / "conn.log"
    theirs, ours = header(baseline), header(ours_path)
    n = len(theirs["#fields"])  # our extra columns (community_id, vlan) come after Zeek's
    assert ours["#fields"][:n] == theirs["#fields"] and ours["#types"][:n] == theirs["#types"]
    key = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")
    rows = {tuple(r[k] for k in key): r for r in parse_zeek_log(ours_path, need_ids=True)}
    compared = ["proto", "conn_state", "history", "missed_bytes", "orig_pkts", "orig_ip_bytes",
                "resp_pkts", "resp_ip_bytes", "orig_bytes", "resp_bytes", "ip_proto"]  # fmt: skip
    for zeek in parse_zeek_log(baseline, need_ids=True):
        mine = rows[tuple(zeek[k] for k in key)]
        assert {k: mine[k] for k in compared} == {k: zeek[k] for k in compared}


@pytest.mark.parametrize("capture", HTTP_BASELINES)
def test_http_log_matches_zeeks_baseline(tmp_path: Path, capture: str) -> None:
    baseline = ORACLES / capture / "zeek_baseline" / "http.log"
    ours_path = run_zeek(tmp_path, [capture]) / "http.log"
    theirs, ours = header(baseline), header(ours_path)
    assert ours["#fields"] == theirs["#fields"] and ours["#types"] == theirs["#types"]
    key = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "trans_depth")
    rows = {tuple(r[k] for k in key): r for r in parse_zeek_log(ours_path)}
    compared = ["method", "host", "uri", "referrer", "version", "user_agent", "origin",
                "request_body_len", "response_body_len", "status_code", "status_msg",
                "info_code", "info_msg"]  # fmt: skip
    compared_rows = 0
    for zeek in parse_zeek_log(baseline):
        mine = rows[tuple(zeek[k] for k in key)]
        if zeek["method"] is None or zeek["version"] == "0.9":
            # A request line without an HTTP version: Zeek reads the exchange as HTTP/0.9
            # (no method or no status line: the reply's headers count as body); our
            # decoder parses the status line the server sent. A decoder difference.
            continue
        assert {k: mine[k] for k in compared} == {k: zeek[k] for k in compared}
        compared_rows += 1
    assert compared_rows >= 1


def test_json_form_is_the_tsv_form_as_zeeks_json_writer_gives_it(
    mixed: Path, tmp_path: Path
) -> None:
    js = run_zeek(tmp_path, MIXED, "zeek-json")
    assert sorted(p.name for p in js.iterdir()) == sorted(p.name for p in mixed.iterdir())
    for log in mixed.iterdir():
        kinds = dict(zip(header(log)["#fields"], header(log)["#types"], strict=True))
        tsv = parse_zeek_log(log)
        lines = [json.loads(line) for line in (js / log.name).read_text().splitlines()]
        assert len(lines) == len(tsv)
        for row, obj in zip(tsv, lines, strict=True):
            assert set(obj) == {k for k, v in row.items() if v is not None}  # unset: absent
            for name, value in obj.items():
                kind = kinds[name]
                if kind.startswith(("set[", "vector[")):
                    assert isinstance(value, list)
                    assert ",".join(map(str, value)) == row[name] or kind.endswith("interval]")
                elif kind in ("time", "interval"):
                    assert f"{value:.6f}" == row[name]
                elif kind == "bool":
                    assert value is (row[name] == "T")
                elif kind in ("count", "port", "int"):
                    assert value == int(row[name])
                else:
                    assert value == row[name]


def test_output_is_reproducible_and_open_close_are_capture_times(
    mixed: Path, tmp_path: Path
) -> None:
    again = run_zeek(tmp_path, MIXED)
    for log in mixed.iterdir():
        assert (again / log.name).read_bytes() == log.read_bytes()
    stamps = []
    for capture in MIXED:  # the capture's own first and last packet times, read by dpkt
        with open(FIXTURES / capture, "rb") as fh:
            stamps += [ts for ts, _ in dpkt.pcap.Reader(fh)]
    fmt = "%Y-%m-%d-%H-%M-%S"
    head = header(mixed / "conn.log")
    assert head["#open"] == [time.strftime(fmt, time.gmtime(min(stamps)))]
    close = (mixed / "conn.log").read_text().splitlines()[-1].split("\t")
    assert close == ["#close", time.strftime(fmt, time.gmtime(max(stamps)))]


def test_escaping_of_separators_and_placeholders() -> None:
    record: dict[str, Any] = {
        "type": "anomaly", "uid": "C1", "ts": 1.5, "name": "-", "detail": "a\tb\nc",
        "client": {"ip": "10.0.0.1", "port": 1}, "server": {"ip": "10.0.0.2", "port": 2},
        "decoder": None,
    }  # fmt: skip
    ((path, values),) = zeek_rows(record)
    line = zeek_tsv(values, fields_of(path))
    assert line.split("\t") == [
        "1.500000", "C1", "10.0.0.1", "1", "10.0.0.2", "2", "\\x2d", "a\\x09b\\x0ac", "F", "-", "-",
    ]  # fmt: skip


def test_zeek_format_needs_a_directory() -> None:
    capture = str(FIXTURES / "zeek__http__get.pcap")
    assert main(["replay", capture, "--format", "zeek", "--log-level", "error"]) == 2


def test_pure_record_to_json_function_gives_the_file_lines(tmp_path: Path) -> None:
    """zeek_json_lines is what a Kafka writer would send (one topic per log path)."""
    js = run_zeek(tmp_path, MIXED, "zeek-json")
    by_path: dict[str, list[str]] = {}
    for record in replay_records([str(FIXTURES / c) for c in MIXED]):
        for path, line in zeek_json_lines(record):
            by_path.setdefault(path, []).append(line)
    assert sorted(by_path) == sorted(p.stem for p in js.iterdir())
    for path, lines in by_path.items():
        assert (js / f"{path}.log").read_text().splitlines() == lines


def test_zeek_topics_option_emits_the_json_log_lines_as_records(tmp_path: Path) -> None:
    """--zeek-topics: one `zeek-<log>` record per Zeek log line (Kafka: one topic per log),
    byte for byte the lines of --format zeek-json; the other records are unchanged and the
    task keeps its batch path (the extension watches records, not packets)."""
    from wirestream.streams.config import RuntimeConfig
    from wirestream.streams.replay import Replay
    from wirestream.streams.task import Task
    from wirestream.streams.zeektopics import configure

    config = RuntimeConfig()
    configure(config)
    assert not Task(0, config, [], lambda *a: None)._packet_extensions
    out: list[bytes] = []
    replay = Replay(config, out.append)
    summary = replay.run([str(FIXTURES / c) for c in MIXED])
    lines = b"".join(out).decode().splitlines()
    zeek = sorted(line for line in lines if not line.startswith('{"type":'))
    plain = [line for line in lines if line.startswith('{"type":')]
    js = run_zeek(tmp_path, MIXED, "zeek-json")
    expected = sorted(line for p in js.iterdir() for line in p.read_text().splitlines())
    assert zeek == expected
    assert plain == [serde_line(r) for r in replay_records([str(FIXTURES / c) for c in MIXED])]
    logs = {p.stem: len(p.read_text().splitlines()) for p in js.iterdir()}
    assert {t[5:]: n for t, n in summary.records.items() if t.startswith("zeek-")} == logs


def serde_line(record: dict[str, Any]) -> str:
    return dumps_record(record).decode()


# -- ssl.log, x509.log, files.log (issue 15's TLS and HTTP fields) --
# Zeek 6/7's own header lines for these logs (default scripts; ssl.log with local.zeek's
# validate-certs), as Zeek writes them: the reference our #fields/#types must equal.
ZEEK_HEADERS = {
    "ssl": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p version cipher curve server_name "
        "resumed last_alert next_protocol established ssl_history cert_chain_fps "
        "client_cert_chain_fps sni_matches_cert validation_status",
        "time string addr port addr port string string string string bool string string bool "
        "string vector[string] vector[string] bool string",
    ),
    "x509": (
        "ts fingerprint certificate.version certificate.serial certificate.subject "
        "certificate.issuer certificate.not_valid_before certificate.not_valid_after "
        "certificate.key_alg certificate.sig_alg certificate.key_type certificate.key_length "
        "certificate.exponent certificate.curve san.dns san.uri san.email san.ip "
        "basic_constraints.ca basic_constraints.path_len host_cert client_cert",
        "time string count string string string time time string string string count string "
        "string vector[string] vector[string] vector[string] vector[addr] bool count bool bool",
    ),
    "files": (
        "ts fuid uid id.orig_h id.orig_p id.resp_h id.resp_p source depth analyzers mime_type "
        "filename duration local_orig is_orig seen_bytes total_bytes missing_bytes "
        "overflow_bytes timedout parent_fuid md5 sha1 sha256 extracted extracted_cutoff "
        "extracted_size",
        "time string string addr port addr port string count set[string] string string "
        "interval bool bool count count count count bool string string string string string "
        "bool count",
    ),
}
CERT_CAPTURES = sorted(p.parent.name for p in ORACLES.glob("*/x509_tshark.jsonl"))
BODY_OPTIONS = ["-O", "http.md5=true", "-O", "http.sha1=true", "-O", "http.sniff_mime=true"]
# Captures where tshark's `--export-objects http` and our decoder see the same bodies;
# on the others each body we describe is still one tshark exported (test below).
SAME_BODIES = ["dpkt__examples__data__http.pcap", "own_echo_post_chunked_upload.pcap",
               "own_nginx_keepalive_multi.pcap", "tcpflow__tests__test-gzip.pcap",
               "zeek__http__get-gzip.pcap", "zeek__http__http-post-large.pcap",
               "zeek__http__pipelined-requests.pcap", "zeek__http__post.pcap"]  # fmt: skip


def oracle_rows(capture: str, name: str) -> list[dict[str, Any]]:
    path = ORACLES / capture / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_with(tmp: Path, captures: list[str], *extra: str) -> Path:
    out = tmp / "logs"
    args = ["replay", *(str(FIXTURES / c) for c in captures), "--format", "zeek", "-o", str(out)]
    assert main([*args, *extra, "--no-progress", "--log-level", "error"]) == 0
    return out


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_with(tmp_path_factory.mktemp("certs"), CERT_CAPTURES)


@pytest.fixture(scope="module")
def cert_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each certificate capture alone (they share CA certificates)."""
    tmp = tmp_path_factory.mktemp("cert_logs")
    return {c: run_with(tmp / c, [c]) for c in CERT_CAPTURES}


@pytest.fixture(scope="module")
def bodies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bodies")
    extract = tmp / "extracted"
    return run_with(tmp, SAME_BODIES, *BODY_OPTIONS, "--extract-files", str(extract))


def test_new_logs_have_zeeks_header_and_load_in_zat(certs: Path, bodies: Path) -> None:
    for log in (certs / "ssl.log", certs / "x509.log", bodies / "files.log"):
        names, kinds = ZEEK_HEADERS[log.stem]
        head = header(log)
        assert head["#fields"] == names.split() and head["#types"] == kinds.split()
        frame = zat_frame(log)
        assert list(frame.columns) == names.split() and len(frame) > 0
    x509 = zat_frame(certs / "x509.log")
    assert str(x509["certificate.not_valid_before"].dtype).startswith("datetime64")
    assert str(x509["certificate.key_length"].dtype) == "UInt64"
    files = zat_frame(bodies / "files.log")
    assert str(files["seen_bytes"].dtype) == "UInt64"


@pytest.mark.parametrize("capture", CERT_CAPTURES)
def test_x509_log_and_chain_fingerprints_match_tshark(
    cert_logs: dict[str, Path], capture: str
) -> None:
    from tests.test_tls_fields import _rfc4514, _utc

    want = oracle_rows(capture, "x509_tshark.jsonl")
    certs = cert_logs[capture]
    rows = parse_zeek_log(certs / "x509.log")
    assert sorted(r["fingerprint"] for r in rows) == sorted(w["sha256"] for w in want)
    by_fp = {r["fingerprint"]: r for r in rows}
    for w in want:
        row = by_fp[w["sha256"]]
        assert int(row["certificate.serial"], 16) == int(w["serial"], 16)
        validity = [row["certificate.not_valid_before"], row["certificate.not_valid_after"]]
        assert [float(v) for v in validity] == [_utc(t) for t in w["validity"]]
        assert row["san.dns"] == (",".join(w["san_dns"]) or None)  # Zeek: unset when none
        for ours, theirs in ((row["certificate.subject"], w["subject"]),
                             (row["certificate.issuer"], w["issuer"])):  # fmt: skip
            expected = _rfc4514(theirs)
            if expected is not None:  # tshark cuts long labels: its text starts ours
                assert ours.startswith(expected) and (len(theirs) >= 200 or ours == expected)
        assert row["client_cert"] == "F"  # tshark's rows are the server's certificates
    # ssl.log: each Certificate message's chain, in order; host_cert on its first only
    frames: dict[int, list[str]] = {}
    for w in want:
        frames.setdefault(int(w["frame"]), []).append(w["sha256"])
    chains = [chain for _, chain in sorted(frames.items())]
    ssl = [r for r in parse_zeek_log(certs / "ssl.log") if r["cert_chain_fps"]]
    assert [r["cert_chain_fps"].split(",") for r in ssl] == chains
    assert all(r["client_cert_chain_fps"] == "" for r in ssl)  # (empty): none sent
    assert {by_fp[c[0]]["host_cert"] for c in chains} == {"T"}
    assert {by_fp[fp]["host_cert"] for c in chains for fp in c[1:]} <= {"F"}


def test_ssl_log_negotiated_parameters_match_tshark(tmp_path: Path) -> None:
    from tests.test_tls_fields import TLS_CAPTURES, _server_hellos

    for capture in TLS_CAPTURES:
        out = run_with(tmp_path / capture, [capture])
        got = Counter(
            (r["id.resp_h"], int(r["id.resp_p"]), r["version"], r["cipher"], r["next_protocol"])
            for r in parse_zeek_log(out / "ssl.log")
            if r["version"] is not None
        )
        want = _server_hellos(capture)
        if capture == "zeek__tls__hrr.pcap":  # tshark misses the second ServerHello
            assert not (want - got) and sum((got - want).values()) == 1
        else:
            assert got == want, capture
        if (
            not oracle_rows(capture, "x509_tshark.jsonl")
            if (ORACLES / capture / "x509_tshark.jsonl").exists()
            else True
        ):
            assert not (out / "x509.log").exists()  # no clear certificate: no x509.log


def test_ssl_log_last_alert_and_unset_chain() -> None:
    """last_alert is the last plaintext alert's name; no certificate: the fps unset."""
    record: dict[str, Any] = {
        "type": "tls", "uid": "C1", "ts": 1.0, "client": {"ip": "10.0.0.1", "port": 1},
        "server": {"ip": "10.0.0.2", "port": 443}, "version": "TLSv12", "alpn": "h2",
        "alerts": [{"description_name": "unexpected_message"},
                   {"description_name": "handshake_failure"}],
        "server_certificates": [], "client_certificates": [], "resumed": False,
        "established": False,
    }  # fmt: skip
    rows = dict(zeek_rows(record))
    assert set(rows) == {"ssl"}  # no certificate: no x509 row
    ssl = dict(zip([n for n, _, _ in fields_of("ssl")], rows["ssl"], strict=True))
    assert ssl["last_alert"] == "handshake_failure" and ssl["next_protocol"] == "h2"
    assert ssl["cert_chain_fps"] is None and ssl["client_cert_chain_fps"] is None


@pytest.mark.parametrize("capture", SAME_BODIES)
def test_files_log_matches_tshark_exported_objects(bodies: Path, capture: str) -> None:
    import hashlib

    want = oracle_rows(capture, "objects_tshark.jsonl")
    sha = {w["sha256"] for w in want}
    rows = [r for r in parse_zeek_log(bodies / "files.log") if r["sha256"] in sha]
    assert Counter((r["sha256"], int(r["seen_bytes"])) for r in rows) >= Counter(
        (w["sha256"], w["size"]) for w in want
    )
    extracted = bodies.parent / "extracted"
    for r in rows:  # the opt-in hashes are those of the bytes tshark exported
        data = (extracted / r["extracted"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        assert hashlib.md5(data).hexdigest() == r["md5"]
        assert hashlib.sha1(data).hexdigest() == r["sha1"]
        assert set(r["analyzers"].split(",")) == {"EXTRACT", "MD5", "SHA1", "SHA256"}
        assert int(r["extracted_size"]) == len(data) and r["source"] == "HTTP"


def test_every_body_we_describe_is_one_tshark_exported(tmp_path: Path) -> None:
    captures = [
        p.parent.name
        for p in sorted(ORACLES.glob("*/objects_tshark.jsonl"))
        if p.read_text().strip() and p.parent.name != "sv__http-gap-beyond-body__input.pcap"
    ]
    # (gap-beyond-body: tshark reads 169 body bytes past the gap where we end at 12)
    out = run_with(tmp_path, captures)
    want = Counter((w["sha256"], w["size"]) for c in captures
                   for w in oracle_rows(c, "objects_tshark.jsonl"))  # fmt: skip
    rows = parse_zeek_log(out / "files.log")
    intact = Counter((r["sha256"], int(r["seen_bytes"])) for r in rows if r["sha256"])
    assert not intact - want and sum(intact.values()) >= 300
    assert all(int(r["missing_bytes"]) > 0 for r in rows if not r["sha256"])


def test_http_log_fuids_point_at_files_rows(bodies: Path) -> None:
    files = {r["fuid"]: r for r in parse_zeek_log(bodies / "files.log")}
    seen = 0
    for row in parse_zeek_log(bodies / "http.log"):
        for column, is_orig in (("orig_fuids", "T"), ("resp_fuids", "F")):
            for fid in (row[column] or "").split(",") if row[column] else []:
                f = files[fid]
                assert (f["uid"], f["is_orig"]) == (row["uid"], is_orig)
                kind = "orig_mime_types" if is_orig == "T" else "resp_mime_types"
                assert row[kind] == f["mime_type"]
                seen += 1
    assert seen == len(files) > 0


def test_jpeg_bodies_sniffed_as_jpeg(tmp_path: Path) -> None:
    """mime_type is the sniffed type: the JPEGs tshark exported (by name) are image/jpeg."""
    capture = "tcpflow__samplePcaps__jpegs.cap"
    out = run_with(tmp_path, [capture], *BODY_OPTIONS)
    jpegs = {w["sha256"] for w in oracle_rows(capture, "objects_tshark.jsonl")
             if w["filename"].lower().endswith((".jpg", ".jpeg"))}  # fmt: skip
    rows = [r for r in parse_zeek_log(out / "files.log") if r["sha256"] in jpegs]
    assert len(rows) >= 3 and {r["mime_type"] for r in rows} == {"image/jpeg"}
    plain = run_with(tmp_path / "plain", [capture])
    assert {r["mime_type"] for r in parse_zeek_log(plain / "files.log")} == {None}


def test_no_files_or_x509_log_without_them_and_reproducible(tmp_path: Path) -> None:
    out = run_with(tmp_path / "a", ["zeek__tls__tls13-ech.pcap", "zeek__dns-edns-ecs.pcap"])
    assert sorted(p.name for p in out.iterdir()) == ["conn.log", "dns.log", "ssl.log"]
    first = run_with(tmp_path / "b", [*CERT_CAPTURES, *SAME_BODIES], *BODY_OPTIONS)
    again = run_with(tmp_path / "c", [*CERT_CAPTURES, *SAME_BODIES], *BODY_OPTIONS)
    assert sorted(p.name for p in first.iterdir()) == sorted(p.name for p in again.iterdir())
    assert {"files.log", "x509.log"} <= {p.name for p in first.iterdir()}
    for log in first.iterdir():
        assert (again / log.name).read_bytes() == log.read_bytes()


def _http_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "http", "id": "C1:http:1", "uid": "C1", "ts": 2.0,
        "client": {"ip": "10.0.0.1", "port": 1}, "server": {"ip": "10.0.0.2", "port": 80},
        "trans_depth": 1, "filename": "a.txt",
        "request": {"method": "POST", "uri": "/", "version": "HTTP/1.1", "body_len": 3,
                    "body_sha256": "r" * 64,
                    "headers": [["Content-Length", "3"],
                                ["Content-Disposition", 'attachment; filename="a.txt"']]},
        "response": {"status": 200, "reason": "OK", "version": "HTTP/1.1", "body_len": 9,
                     "body_sha256": "s" * 64, "decoded_body_len": 20,
                     "decoded_body_sha256": "d" * 64, "informational": [],
                     "headers": [["Content-Length", "9"], ["Content-Encoding", "gzip"]]},
    }  # fmt: skip
    record.update(changes)
    return record


def _files_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    names = [n for n, _, _ in fields_of("files")]
    return [dict(zip(names, v, strict=True)) for p, v in zeek_rows(record) if p == "files"]


def test_files_rows_follow_zeeks_rules_for_sides_sizes_and_gaps() -> None:
    orig, resp = _files_rows(_http_record())
    assert (orig["is_orig"], resp["is_orig"]) == (True, False)
    assert orig["filename"] == "a.txt" and resp["filename"] is None  # the header's side
    assert (orig["seen_bytes"], orig["total_bytes"], orig["sha256"]) == (3, 3, "r" * 64)
    # Content-Encoding: the decoded content is the file; its size is not announced
    assert (resp["seen_bytes"], resp["total_bytes"], resp["sha256"]) == (20, None, "d" * 64)
    assert orig["fuid"] != resp["fuid"] and orig["fuid"] == _files_rows(_http_record())[0]["fuid"]
    gap = _http_record()
    gap["request"] = {**gap["request"], "missed_bytes": 2}
    assert _files_rows(gap)[0]["sha256"] is None and _files_rows(gap)[0]["missing_bytes"] == 2
    empty = _http_record()
    empty["request"] = {**empty["request"], "body_len": 0}
    assert [r["is_orig"] for r in _files_rows(empty)] == [False]  # no content: no file
    ((_, http),) = [(p, v) for p, v in zeek_rows(empty) if p == "http"]
    row = dict(zip([n for n, _, _ in fields_of("http")], http, strict=True))
    assert row["orig_fuids"] is None and row["resp_fuids"] == [resp["fuid"]]
    assert row["orig_filenames"] is None  # the name belongs to a file: none without body
    names = [n for n, _, _ in fields_of("http")]
    full = dict(zip(names, next(zeek_rows(_http_record()))[1], strict=True))
    assert full["orig_filenames"] == ["a.txt"] and full["resp_filenames"] is None
