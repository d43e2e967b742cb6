"""Broken input: damaged capture files, mutated fixtures, bad command-line values.

Contract (README "Using it"): a damaged capture gives one error line naming the file and the
offset on stderr, the records decoded before the damage on stdout (byte for byte what the
clean part alone gives), exit code 1, never a traceback; bad options give a message naming
the option or directory and exit code 2.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests import adversarial as adv
from tests import pcapgen as g

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "fixtures" / "pcaps").glob("*.pcap*"))
BASE = ROOT / "fixtures" / "pcaps" / "own_nginx_keepalive_multi.pcap"  # 9 records
PCAPNG = ROOT / "fixtures" / "pcaps" / "zeek__tcp__http-on-irc-port-missing-syn.pcapng"
# RocksDB's fsyncs dominate a small replay: state in memory when there is a tmpfs.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
VARIANTS = int(os.environ.get("WIRESTREAM_FUZZ_VARIANTS", "5"))  # per fixture


def cli(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, str(ROOT / "runner.py"), *map(str, args)]
    return subprocess.run(
        cmd, capture_output=True, timeout=timeout, cwd=ROOT, check=False, env=adv.scratch_env()
    )


def replay(path: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return cli("replay", path, "--log-format", "json", *extra)


def log_lines(stderr: bytes) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines()]


def capture_errors(stderr: bytes) -> list[str]:
    return [e["error"] for e in log_lines(stderr) if e.get("event") == "capture_error"]


def pcap_records(data: bytes) -> list[tuple[int, int]]:
    """(file offset, caplen) of each record of a classic little-endian µs pcap (own walk,
    independent of probe.capture)."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    out, pos = [], 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        out.append((pos, caplen))
        pos += 16 + caplen
    return out


def pcapng_blocks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, length) of each block of a little-endian pcapng file."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        out.append((pos, btype, blen))
        pos += blen
    return out


def assert_damaged(result, path: Path, offset: int, message: str, clean: bytes) -> None:
    """Exit 1, one error line naming file and offset, the clean part's records on stdout."""
    assert result.returncode == 1, result.stderr[-2000:]
    assert b"Traceback" not in result.stderr
    errors = capture_errors(result.stderr)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: offset {offset}: "), errors[0]
    assert message in errors[0]
    assert "\n" not in errors[0]
    assert result.stdout == clean


@pytest.fixture(scope="module")
def base() -> tuple[bytes, list[tuple[int, int]]]:
    data = BASE.read_bytes()
    return data, pcap_records(data)


def clean_output(tmp_path: Path, data: bytes) -> bytes:
    """stdout of a replay of `data`, which must be an undamaged capture."""
    path = tmp_path / "clean.pcap"
    path.write_bytes(data)
    result = replay(path)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


# ------------------------------------------------------------------ damaged pcap files
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cut_in_record_data", "truncated record (caplen"),
        ("cut_in_record_header", "truncated record header"),
        ("zero_caplen", "bad record length 0"),
        ("oversized_caplen", "bad record length 262145"),
        ("huge_caplen", "bad record length 4294967295"),
    ],
)
def test_damaged_pcap(tmp_path, base, case, message):
    data, records = base
    k = len(records) // 2
    off, caplen = records[k]
    if case == "cut_in_record_data":
        broken = data[: off + 16 + caplen // 2]
    elif case == "cut_in_record_header":
        broken = data[: off + 7]
    else:
        value = {"zero_caplen": 0, "oversized_caplen": 256 * 1024 + 1}.get(case, 0xFFFFFFFF)
        broken = data[: off + 8] + struct.pack("<I", value) + data[off + 12 :]
    path = tmp_path / f"{case}.pcap"
    path.write_bytes(broken)
    clean = clean_output(tmp_path, data[:off])
    assert clean  # records came before the damage
    assert_damaged(replay(path), path, off, message, clean)


def test_trailing_garbage_keeps_every_record(tmp_path, base):
    data, _ = base
    path = tmp_path / "garbage.pcap"
    path.write_bytes(data + b"\x01\x02\x03\x04\x05")
    assert_damaged(
        replay(path), path, len(data), "truncated record header", clean_output(tmp_path, data)
    )


@pytest.mark.parametrize(
    ("name", "content", "offset", "message"),
    [
        ("empty.pcap", b"", 0, "empty file"),
        ("text.pcap", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, "not a pcap or pcapng"),
        (
            "short_header.pcap",
            b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00",
            9,
            "truncated pcap file header",
        ),
        (
            "version.pcap",
            b"\xd4\xc3\xb2\xa1\x09\x00\x04\x00" + bytes(16),
            4,
            "unsupported pcap version",
        ),
        ("pcapng_garbage.pcapng", b"\x0a\x0d\x0d\x0a" + b"\xff" * 40, 0, "byte-order magic"),
        ("elf.pcap", b"\x7fELF\x02\x01\x01" + bytes(100), 0, "not a pcap or pcapng"),
    ],
)
def test_not_a_capture(tmp_path, name, content, offset, message):
    path = tmp_path / name
    path.write_bytes(content)
    assert_damaged(replay(path), path, offset, message, b"")


def test_gzipped_capture_and_missing_file_and_directory(tmp_path):
    gz = tmp_path / "capture.pcap.gz"
    gz.write_bytes(gzip.compress(BASE.read_bytes()))
    assert_damaged(replay(gz), gz, 0, "not a pcap or pcapng file (magic 0x1f8b", b"")
    missing = tmp_path / "missing.pcap"
    assert_damaged(replay(missing), missing, 0, "cannot open", b"")
    assert_damaged(replay(tmp_path), tmp_path, 0, "cannot open", b"")


def test_damaged_file_does_not_stop_the_next_one(tmp_path, base):
    data, records = base
    off = records[3][0]
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(data[: off + 5])
    good = ROOT / "fixtures" / "pcaps" / "zeek__http__get.pcap"
    result = cli("replay", bad, good, "--log-format", "json")
    assert result.returncode == 1
    assert len(capture_errors(result.stderr)) == 1
    uris = [r["request"]["uri"] for r in map(json.loads, result.stdout.splitlines())
            if r["type"] == "http" and r["request"]]  # fmt: skip
    assert "/download/CHANGES.bro-aux.txt" in uris  # zeek__http__get.pcap's request


def test_console_log_error_is_one_line(tmp_path, base):
    data, records = base
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: records[2][0] + 3])
    result = cli("replay", path, "--log-format", "console")
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.decode().splitlines() if "error" in ln.split("]")[0]]
    assert len(lines) == 1
    assert str(path) in lines[0] and f"offset {records[2][0]}" in lines[0]


# ------------------------------------------------------------------ damaged pcapng files
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cut_in_block", "truncated block"),
        ("bad_block_length", "bad block length"),
        ("trailer_mismatch", "trailer length does not match"),
        ("undefined_interface", "undefined interface"),
    ],
)
def test_damaged_pcapng(tmp_path, case, message):
    data = PCAPNG.read_bytes()
    epbs = [(o, n) for o, t, n in pcapng_blocks(data) if t == 6]
    off, blen = epbs[len(epbs) // 2]
    if case == "cut_in_block":
        broken = data[: off + blen // 2]
    elif case == "bad_block_length":
        broken = data[: off + 4] + struct.pack("<I", 13) + data[off + 8 :]
    elif case == "trailer_mismatch":
        broken = data[: off + blen - 4] + struct.pack("<I", blen + 4) + data[off + blen :]
    else:
        broken = data[: off + 8] + struct.pack("<I", 7) + data[off + 12 :]
    path = tmp_path / f"{case}.pcapng"
    path.write_bytes(broken)
    clean_path = tmp_path / "clean.pcapng"
    clean_path.write_bytes(data[:off])
    clean = replay(clean_path)
    assert clean.returncode == 0
    assert_damaged(replay(path), path, off, message, clean.stdout)


# ------------------------------------------------------------------ unknown link types
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_unknown_link_type(tmp_path, fmt):
    frames = [(adv.T0 + i, g.ether(g.ipv4(g.tcp(payload=b"x" * 10)))) for i in range(3)]
    path = tmp_path / f"user0.{fmt}"
    if fmt == "pcap":
        g.write_pcap(path, frames, linktype=147)
    else:
        g.write_pcapng(path, [(0, t, f) for t, f in frames], interfaces=((147, None),))
    result = replay(path)
    assert b"Traceback" not in result.stderr
    assert result.returncode == 1
    (error,) = capture_errors(result.stderr)
    assert error.startswith(f"{path}: offset ") and "link type" in error


def test_unknown_link_type_never_crashes(tmp_path):
    frames = [(adv.T0 + i, g.ether(g.ipv4(g.tcp(payload=b"x" * 10)))) for i in range(3)]
    path = g.write_pcap(tmp_path / "user0.pcap", frames, linktype=147)
    result = replay(path)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    summary = log_lines(result.stderr)[-1]
    assert summary["capture_errors"] == 1 and summary["packets"] == 0


# ------------------------------------------------------------------ mutated fixtures
def _variants(data: bytes, seed: str, count: int) -> list[tuple[str, bytes]]:
    """Deterministic damaged copies: byte flips anywhere, flips in headers, truncation,
    flips + truncation, a spliced range (shifts every later record)."""
    rng = random.Random(seed)
    out = []
    for k in range(count):
        buf = bytearray(data)
        kind = ("flip", "flip_head", "truncate", "flip_truncate", "splice")[k % 5]
        if kind in ("flip", "flip_truncate"):
            for _ in range(rng.randint(1, 16)):
                buf[rng.randrange(24, len(buf))] ^= rng.randint(1, 255)
        if kind == "flip_head":
            for _ in range(rng.randint(1, 3)):
                buf[rng.randrange(0, min(64, len(buf)))] ^= 1 << rng.randrange(8)
        if kind in ("truncate", "flip_truncate"):
            del buf[rng.randrange(1, len(buf)) :]
        if kind == "splice":
            a = rng.randrange(24, len(buf))
            b = min(len(buf), a + rng.randint(1, 3000))
            buf[a:b] = buf[a:b] * rng.randint(0, 2)
        out.append((f"{kind}{k}", bytes(buf)))
    return out


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_mutated_fixture_replays_cleanly(tmp_path, fixture):
    """In process (fast): nothing escapes Replay.run, errors are one line with file and
    offset, no decoder ever raises, time bounded."""
    from wirestream.streams.replay import Replay, RuntimeConfig

    error_re = re.compile(r"^(?P<path>.+): offset (?P<offset>\d+): [^\n]+$")
    for label, data in _variants(fixture.read_bytes(), fixture.name, VARIANTS):
        path = tmp_path / f"{label}-{fixture.name}"
        path.write_bytes(data)
        lines: list[bytes] = []
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=SCRATCH) as state_dir:
            summary = Replay(RuntimeConfig(), lines.append, state_dir).run([str(path)])
        assert time.perf_counter() - started < 20, label
        assert len(summary.errors) <= 1, (label, summary.errors)
        for error in summary.errors:
            m = error_re.match(error)
            assert m and m["path"] == str(path) and int(m["offset"]) <= len(data), error
        for line in lines:
            record = json.loads(line)
            assert record["type"] and record["id"].startswith(record["uid"])
            if record["type"] == "anomaly":
                assert record["name"] != "decoder_error", (label, record["detail"])


def test_mutated_fixtures_through_the_cli(tmp_path):
    """A sample through the real CLI in a child: exit 0 or 1 as the summary says, never a
    traceback, peak RSS and time bounded."""
    picks = [p for p in FIXTURES if p.stat().st_size > 60_000][:6]
    for fixture in picks:
        for label, data in _variants(fixture.read_bytes(), "cli" + fixture.name, 2):
            path = tmp_path / f"{label}-{fixture.name}"
            path.write_bytes(data)
            run = adv.replay_child(path, timeout=60, env=adv.scratch_env())
            assert run.exit in (0, 1), (path.name, run.stderr[-2000:])
            assert b"Traceback" not in run.stderr
            assert len(capture_errors(run.stderr)) == run.exit
            assert run.peak_rss_mib < 300 and run.seconds < 30


# ------------------------------------------------------------------ bad command-line values
GOOD = ROOT / "fixtures" / "pcaps" / "zeek__http__get.pcap"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--max-flows", "-1"], "--max-flows"),
        (["--max-flows", "0"], "--max-flows"),
        (["--max-flows", "many"], "--max-flows"),
        (["--max-parked-bytes", "-5"], "--max-parked-bytes"),
        (["--partitions", "0"], "--partitions"),
        (["--workers", "-2"], "--workers"),
        (["--tcp-idle-timeout", "-3"], "--tcp-idle-timeout"),
        (["--udp-idle-timeout", "0"], "--udp-idle-timeout"),
        (["--tcp-idle-timeout", "nan"], "--tcp-idle-timeout"),
        (["--reorder-window", "soon"], "--reorder-window"),
        (["--decoders", "http,nosuch"], "nosuch"),
        (["--overlap-policy", "freebsd"], "--overlap-policy"),
        (["-O", "http.no-equals-sign"], "-O"),
        (["--log-format", "xml"], "--log-format"),
    ],
)
def test_bad_option_is_a_usage_error(args, names):
    result = cli("replay", GOOD, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert b"Traceback" not in result.stderr
    assert names.encode() in result.stderr
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--reorder-window", "-1"], "--reorder-window"),
        (["--reorder-window", "nan"], "--reorder-window"),
        (["--reorder-window", "inf"], "--reorder-window"),
        (["--tcp-idle-timeout", "inf"], "--tcp-idle-timeout"),
        (["--udp-idle-timeout", "inf"], "--udp-idle-timeout"),
        (["-O", "http.max_pending=abc"], "max_pending"),
        (["-O", "http.no_such_option=1"], "no_such_option"),
        (["-O", "nosuch.option=1"], "nosuch"),
    ],
)
def test_bad_option_values_are_refused(args, names):
    result = cli("replay", GOOD, *args)
    assert b"Traceback" not in result.stderr
    assert result.returncode == 2
    assert names.encode() in result.stderr


def test_unwritable_output(tmp_path):
    for target in (tmp_path / "no" / "such" / "dir" / "out.jsonl", tmp_path):
        result = replay(GOOD, "--output", str(target))
        assert result.returncode == 2 and b"Traceback" not in result.stderr
        (error,) = [e for e in log_lines(result.stderr) if e["level"] == "error"]
        assert error["event"] == "cannot_open_output" and error["path"] == str(target)


def test_unwritable_state_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = replay(GOOD, "--state-dir", str(blocker / "state"))
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    (error,) = [e for e in log_lines(result.stderr) if e["level"] == "error"]
    assert str(blocker / "state") in error["error"] and "--state-dir" in error["error"]


def test_state_dir_locked_by_another_replay(tmp_path):
    """Two wirestream processes on one --state-dir: the first holds RocksDB's lock while it
    waits for its input (a FIFO); the second must refuse with exit 2, naming the directory."""
    state, fifo = tmp_path / "state", tmp_path / "input.fifo"
    os.mkfifo(fifo)
    first = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "runner.py"),
            "replay",
            str(fifo),
            "--state-dir",
            str(state),
            "--log-format",
            "json",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (state / "flows-0" / "LOCK").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        second = replay(GOOD, "--state-dir", str(state))
        assert second.returncode == 2 and b"Traceback" not in second.stderr
        (error,) = [e for e in log_lines(second.stderr) if e["level"] == "error"]
        assert str(state) in error["error"] and "another wirestream process" in error["error"]
        with open(fifo, "wb") as f:  # let the first one finish normally
            f.write(GOOD.read_bytes())
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err[-2000:]
    assert b'"type":"http"' in out
