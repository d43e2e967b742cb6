"""What a newcomer trips over first: stdin, --version, an input named as the output,
options that would do nothing, a misspelt decoder, and decoder options typed by the
decoder's defaults (float, bool, str, ports) and merged with them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.flowgen import Conversation
from tests.pcapgen import write_pcap
from wirestream.decoders.options import OptionError, convert, defaults, merged
from wirestream.decoders.registry import UnknownDecoderError, available, check_options, select
from wirestream.streams.config import RuntimeConfig
from wirestream.streams.replay import replay_records

ROOT = Path(__file__).resolve().parent.parent
GOOD = ROOT / "fixtures" / "pcaps" / "zeek__http__get.pcap"


def cli(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, str(ROOT / "runner.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, input=stdin, timeout=60, cwd=ROOT, check=False)


def test_replay_dash_reads_stdin() -> None:
    from_file = cli("replay", GOOD, "--no-progress")
    from_stdin = cli("replay", "-", "--no-progress", stdin=GOOD.read_bytes())
    assert from_stdin.returncode == 0, from_stdin.stderr[-500:]
    assert from_stdin.stdout == from_file.stdout and b'"type":"http"' in from_stdin.stdout


def test_version() -> None:
    from importlib.metadata import version

    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"wirestream {version('wirestream')}"


def test_output_naming_an_input_is_refused_before_truncating(tmp_path: Path) -> None:
    capture = tmp_path / "in.pcap"
    shutil.copy(GOOD, capture)
    for output in (capture, tmp_path / "." / "in.pcap"):
        result = cli("replay", GOOD, capture, "-o", output)
        assert result.returncode == 2
        assert b"is an input capture" in result.stderr and b"Traceback" not in result.stderr
        assert capture.read_bytes() == GOOD.read_bytes()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--workers", "4", "--partitions", "2"], "--partitions >= 4"),
        (["--window-hop", "5"], "--window-hop does nothing without --window-stats"),
        (["--window-grace", "5"], "--window-grace does nothing without --window-stats"),
        (["--decoders", "http", "-O", "tls.ports=443"], "'tls' is not selected"),
        (["--decoders", "none", "-O", "http.max_headers=5"], "'http' is not selected"),
        (["-O", "tls.max_headers=5"], "its options: ports"),
        (["-O", "http.max_headers=1.5"], "expected an integer"),
        (["-O", "http.ports=80,http"], "comma-separated list of ports"),
        (["-O", "http.ports=70000"], "out of range"),
        (["--decoders", "htp"], "registered decoders: "),
        (["-", "--workers", "2", "--partitions", "2"], "cannot be read by several --workers"),
        (["-", "-"], "can be read only once"),
    ],
)
def test_refused_with_one_line(args: list[str], says: str) -> None:
    result = cli("replay", GOOD, *args)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines
    assert "usage:" not in lines[0] and result.stdout == b""


def test_a_bad_decoder_name_lists_the_valid_ones() -> None:
    (line,) = cli("replay", GOOD, "--decoders", "http,nosuch").stderr.decode().splitlines()
    assert line.endswith("registered decoders: " + ", ".join(available()))


def linecount_capture(tmp_path: Path, dport: int = 7777, greeting: bytes = b"LINECOUNT") -> Path:
    conv = Conversation(dport=dport).handshake()
    conv.send(True, greeting + b" a\nb\nc\n").send(False, b"ok\n")
    conv.send(True, b"x" * 3000, drop={1}).close()
    return write_pcap(tmp_path / "lines.pcap", conv.frames)


def test_a_float_a_string_and_a_bool_option_reach_the_decoder(tmp_path: Path) -> None:
    out = cli(
        "replay",
        linecount_capture(tmp_path),
        "--decoders",
        "linecount",
        "-O",
        "linecount.weight=0.5",
        "-O",
        "linecount.tag=lab",
        "-O",
        "linecount.count_gaps=false",
    )
    assert out.returncode == 0, out.stderr[-500:]
    (record,) = [line for line in out.stdout.splitlines() if b'"type":"linecount"' in line]
    # 3 client lines (+0 in the x's) and 1 server line, at half weight; the gap not counted
    assert b'"weighted_lines":2.0' in record and b'"tag":"lab"' in record
    assert b'"gaps":0' in record


def test_the_options_dict_holds_every_default(tmp_path: Path) -> None:
    (cls,) = select(["linecount"])
    assert merged(cls, {"tag": "x"}) == {"ports": [], "weight": 1.0, "tag": "x", "count_gaps": True}
    assert defaults(cls)["weight"] == cls.option_defaults["weight"]
    config = RuntimeConfig(decoders=["linecount"])
    (record,) = [
        r for r in replay_records([str(linecount_capture(tmp_path))], config=config)
        if r["type"] == "linecount"
    ]  # fmt: skip
    assert (record["weighted_lines"], record["tag"], record["gaps"]) == (4.0, "", 1)


def test_ports_are_an_option_of_every_decoder(tmp_path: Path) -> None:
    """A flow the probe does not recognise is attached by the configured port fallback."""
    capture = linecount_capture(tmp_path, dport=7000, greeting=b"HELLO")
    config = RuntimeConfig(decoders=["linecount"])
    assert not [
        r for r in replay_records([str(capture)], config=config) if r["type"] == "linecount"
    ]
    config.decoder_options = check_options({"linecount": {"ports": "7000,7001"}}, ["linecount"])
    assert config.decoder_options == {"linecount": {"ports": [7000, 7001]}}
    records = replay_records([str(capture)], config=config)
    (record,) = [r for r in records if r["type"] == "linecount"]
    (flow,) = [r for r in records if r["type"] == "flow"]
    assert flow["service"] == "linecount" and record["client_lines"] == 3


@pytest.mark.parametrize(
    ("option", "value", "typed"),
    [
        ("weight", "0.5", 0.5),
        ("weight", "2", 2.0),
        ("weight", 3, 3.0),
        ("count_gaps", "no", False),
        ("count_gaps", "TRUE", True),
        ("tag", "7", "7"),
        ("ports", "80, 8080,80", [80, 8080]),
        ("ports", [443], [443]),
        ("ports", "", []),
    ],
)
def test_values_are_typed_by_the_default(option: str, value: object, typed: object) -> None:
    (cls,) = select(["linecount"])
    assert convert(cls, option, value) == typed
    assert type(convert(cls, option, value)) is type(typed)


@pytest.mark.parametrize(
    ("option", "value"),
    [("weight", "half"), ("weight", True), ("count_gaps", "maybe"), ("ports", "-1"), ("nope", "1")],
)
def test_bad_values_are_refused(option: str, value: object) -> None:
    (cls,) = select(["linecount"])
    with pytest.raises(OptionError, match=f"linecount.{option}"):
        convert(cls, option, value)
    with pytest.raises(UnknownDecoderError):
        check_options({"linecount": {option: value}})


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_installs_the_runtime_only(tmp_path: Path) -> None:
    """`make -n` prints what each target would run in a fresh venv: `run` installs the
    distribution without its [test] extra or the test-only plugin; `test` adds them."""

    def planned(target: str) -> list[str]:
        result = subprocess.run(
            ["make", "-n", target, f"VENV={tmp_path / 'venv'}"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return [line for line in result.stdout.splitlines() if "pip install" in line]

    run_installs = planned("run")
    assert run_installs
    assert all("[test]" not in c and "tests/plugins" not in c for c in run_installs)
    assert any(c.endswith("install --quiet -e .") for c in run_installs)
    test_installs = planned("test")
    assert any("'.[test]'" in c and "tests/plugins" in c for c in test_installs)


def test_no_machine_paths_in_the_repository() -> None:
    """Tests read fixtures/pcaps; docs and benchmarks name paths relative to the repository
    (or ../shared), never one machine's absolute paths."""
    machine = ("/" + "work/", "/" + "tmp/pcap")  # split: this file must not match itself
    found = []
    for folder in ("tests", "docs", "bench", "fixtures/pcaps", "decoders", "probe", "streams"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".md", ".toml", ".sh") or not path.is_file():
                continue
            text = path.read_text(errors="replace")
            found += [f"{path.relative_to(ROOT)}: {m}" for m in machine if m in text]
    assert found == []
