"""One configuration source: every option of every command is a settings-dataclass field
(default and help written once), every command layers command line > WIRESTREAM_*
environment > TOML file > defaults, and exit codes come from one IntEnum."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wirestream import runner
from wirestream.enrich.settings import EnrichSettings, LookupSettings
from wirestream.streams.commands import Invocation
from wirestream.streams.exitcodes import ExitCode
from wirestream.streams.kafka_settings import RunSettings
from wirestream.streams.options import help_text, options_of
from wirestream.streams.replay_settings import ReplaySettings
from wirestream.streams.runtime_settings import RuntimeSettings
from wirestream.streams.settings_source import ConfigError

ROOT = Path(__file__).resolve().parent.parent
GOOD = ROOT / "fixtures" / "pcaps" / "zeek__http__get.pcap"
COMMANDS = ("replay", "probe", "run", "enrich")
# What each command needs besides the option under test.
BASE = {
    "replay": ["replay", "x.pcap"],
    "probe": ["probe", "x.pcap", "--bootstrap-servers", "b:1"],
    "run": ["run", "--bootstrap-servers", "b:1", "--application-id", "a"],
    "enrich": ["enrich", "--bootstrap-servers", "b:1", "--url", "http://h/{a}"],
}


def _parse(argv: list[str], env: dict[str, str] | None = None) -> Invocation:
    return runner.build_commands().parse(argv, env or {})


def _sources() -> list[Path]:
    """The modules of the installed `wirestream` (pyproject's packages and runner.py); the
    bench, fuzz and devkafka scripts have command lines of their own."""
    packages = ("probe", "reassembly", "decoders", "state", "streams", "stats", "enrich")
    return [ROOT / "runner.py", *(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))]


# --------------------------------------------------------------------- one source


def test_no_option_is_written_by_hand() -> None:
    """Options are generated from dataclass fields: the only add_argument calls naming an
    option string are the generator's and --config's; the rest are positionals."""
    allowed = {ROOT / "streams" / "options.py", ROOT / "streams" / "commands.py"}
    by_hand = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (
                isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
            ):
                continue
            names = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if names == ["--version"]:  # of the program, not of a command
                continue
            if any(str(n).startswith("-") for n in names) and path not in allowed:
                by_hand.append(f"{path.relative_to(ROOT)}:{node.lineno} {names}")
    assert by_hand == []
    # and the checker sees add_argument calls at all (replay's positional, --config)
    text = (ROOT / "streams" / "commands.py").read_text()
    assert '"--config"' in text and "add_argument(" in text


def test_every_option_comes_from_a_field_with_its_default_shown_once() -> None:
    commands = runner.build_commands()
    assert set(commands.names()) == set(COMMANDS)
    for name in COMMANDS:
        options = commands.options(name)
        assert len({o.name for o in options}) == len(options), name  # no field twice
        help_ = "".join(commands.parser_for(name).format_help().split())
        for opt in options:
            # the generated help is what --help prints (argparse may rewrap it)
            assert "".join(help_text(opt).replace("%%", "%").split()) in help_, opt.name
            shown = None if opt.spec.show is None else opt.spec.show(opt.default)
            if shown is not None and not opt.required:
                # the default is appended from the field; never also typed into the help
                assert "(default:" not in opt.spec.help, opt.name
                assert help_text(opt).endswith(f"(default: {shown})"), opt.name
    # a nested settings class (enrich's lookups) contributes its options too
    assert {o.name for o in commands.options("enrich")} >= {
        o.name for o in options_of(LookupSettings)
    }


def test_defaults_are_the_dataclasses_defaults() -> None:
    """No input at all gives exactly the settings classes' own defaults."""
    inv = _parse(BASE["run"])
    run = inv.get(RunSettings)
    assert run == RunSettings(bootstrap_servers="b:1", application_id="a")
    assert inv.get(RuntimeSettings) == RuntimeSettings()
    assert _parse(BASE["replay"]).get(ReplaySettings) == ReplaySettings()
    enrich = _parse(BASE["enrich"]).get(EnrichSettings)
    assert enrich == EnrichSettings(bootstrap_servers="b:1", url="http://h/{a}")
    assert enrich.lookup == LookupSettings()


# --------------------------------------------------------------------- layering

# (command, option, typed value, env value, file value, what each parses to, default)
LAYERS: list[tuple[str, str, str, str, Any, tuple[Any, Any, Any], Any]] = [
    ("replay", "commit_every", "7", "8", 9, (7, 8, 9), 50_000),
    ("probe", "partitions", "3", "4", 5, (3, 4, 5), 8),
    ("run", "commit_interval", "0.25", "2.5", 5, (0.25, 2.5, 5.0), 1.0),
    ("enrich", "max_in_flight", "11", "12", 13, (11, 12, 13), 100),
    ("enrich", "session_timeout_ms", "6001", "6002", 6003, (6001, 6002, 6003), 10_000),
]


def _value(inv: Invocation, name: str) -> Any:
    for settings in inv.settings.values():
        if hasattr(settings, name):
            return getattr(settings, name)
        if isinstance(settings, EnrichSettings) and hasattr(settings.lookup, name):
            return getattr(settings.lookup, name)
    raise KeyError(name)


@pytest.mark.parametrize(("command", "name", "cli", "env", "file", "parsed", "default"), LAYERS)
def test_cli_beats_env_beats_file_beats_default(
    tmp_path: Path,
    command: str,
    name: str,
    cli: str,
    env: str,
    file: Any,
    parsed: tuple[Any, Any, Any],
    default: Any,
) -> None:
    config = tmp_path / "ws.toml"
    config.write_text(f"[{command}]\n{name} = {file}\n")
    flag = "--" + name.replace("_", "-")
    variable = "WIRESTREAM_" + name.upper()
    layers = {"WIRESTREAM_CONFIG": str(config), variable: env}
    inv = _parse([*BASE[command], flag, cli], layers)
    assert (_value(inv, name), inv.sources[name]) == (parsed[0], "command line")
    inv = _parse(BASE[command], layers)
    assert (_value(inv, name), inv.sources[name]) == (parsed[1], "environment")
    inv = _parse([*BASE[command], "--config", str(config)], {})
    assert (_value(inv, name), inv.sources[name]) == (parsed[2], "config file")
    inv = _parse(BASE[command], {})
    assert (_value(inv, name), inv.sources[name]) == (default, "default")


def test_top_level_keys_reach_every_command_that_has_them(tmp_path: Path) -> None:
    config = tmp_path / "ws.toml"
    config.write_text(
        'log_level = "debug"\nmax_flows = 77\n[run]\nmax_flows = 88\n[replay]\npartitions = 2\n'
    )
    env = {"WIRESTREAM_CONFIG": str(config)}
    for command in COMMANDS:
        assert _value(_parse(BASE[command], env), "log_level") == "debug", command
    assert _value(_parse(BASE["replay"], env), "max_flows") == 77
    assert _value(_parse(BASE["run"], env), "max_flows") == 88  # the table wins
    assert _value(_parse(BASE["replay"], env), "partitions") == 2
    assert _value(_parse(BASE["probe"], env), "partitions") == 8  # [replay] stays there


def test_enrich_takes_its_settings_from_env_and_file(tmp_path: Path) -> None:
    config = tmp_path / "enrich.toml"
    config.write_text(
        '[enrich]\nurl = "http://assets/{server.ip}"\ncache-ttl = 0\nretries = 0\n'
        'output_topic = "out"\n'
    )
    inv = _parse(
        ["enrich"], {"WIRESTREAM_BOOTSTRAP_SERVERS": "k:9", "WIRESTREAM_CONFIG": str(config)}
    )
    settings = inv.get(EnrichSettings)
    assert settings.bootstrap_servers == "k:9" and settings.url == "http://assets/{server.ip}"
    assert settings.lookup.cache_ttl == 0.0 and settings.lookup.retries == 0
    assert settings.output_topic == "out" and settings.lookup.max_in_flight == 100
    with pytest.raises(ConfigError, match=r"--url is required \(or WIRESTREAM_URL"):
        _parse(["enrich"], {"WIRESTREAM_BOOTSTRAP_SERVERS": "k:9"})
    with pytest.raises(ConfigError, match="environment WIRESTREAM_MAX_IN_FLIGHT: expected"):
        _parse(BASE["enrich"], {"WIRESTREAM_MAX_IN_FLIGHT": "0"})
    config.write_text("[enrich]\nmax_in_fligth = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'max_in_fligth' in \\[enrich\\]"):
        _parse([*BASE["enrich"], "--config", str(config)])


def test_repeatable_and_flag_options_from_env_and_file(tmp_path: Path) -> None:
    config = tmp_path / "ws.toml"
    config.write_text('decoder_option = ["http.ports=80", "dns.ports=53"]\nstream_chunks = true\n')
    runtime = _parse([*BASE["replay"], "--config", str(config)]).get(RuntimeSettings)
    assert runtime.decoder_option == [("http", "ports", "80"), ("dns", "ports", "53")]
    assert runtime.stream_chunks is True
    runtime = _parse(BASE["replay"], {"WIRESTREAM_NO_VLAN_IN_FLOW_KEY": "yes"}).get(RuntimeSettings)
    assert runtime.no_vlan_in_flow_key is True
    with pytest.raises(ConfigError, match="WIRESTREAM_STREAM_CHUNKS: expected true or false"):
        _parse(BASE["replay"], {"WIRESTREAM_STREAM_CHUNKS": "maybe"})
    # seconds on the outside, nanoseconds inside, from every source alike
    typed = _parse([*BASE["replay"], "--tcp-idle-timeout", "2"]).get(RuntimeSettings)
    env = _parse(BASE["replay"], {"WIRESTREAM_TCP_IDLE_TIMEOUT": "2"}).get(RuntimeSettings)
    assert typed.tcp_idle_timeout == env.tcp_idle_timeout == 2_000_000_000


def _cli(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WIRESTREAM_")}
    cmd = [sys.executable, str(ROOT / "runner.py"), *map(str, args)]
    return subprocess.run(
        cmd, capture_output=True, timeout=60, cwd=ROOT, env=clean | env, check=False
    )


def test_replay_layers_end_to_end(tmp_path: Path) -> None:
    """The records show which source won: --decoders none drops the http records."""
    default = _cli("replay", GOOD, "--no-progress", env={})
    assert default.returncode == 0 and b'"type":"http"' in default.stdout
    from_env = _cli("replay", GOOD, "--no-progress", env={"WIRESTREAM_DECODERS": "none"})
    assert from_env.returncode == 0 and b'"type":"http"' not in from_env.stdout
    assert b'"type":"flow"' in from_env.stdout
    config = tmp_path / "ws.toml"
    config.write_text('[replay]\ndecoders = "none"\n')
    from_file = _cli("replay", GOOD, "--no-progress", "--config", config, env={})
    assert from_file.stdout == from_env.stdout
    cli_wins = _cli(
        "replay", GOOD, "--no-progress", "--decoders", "all", env={"WIRESTREAM_DECODERS": "none"}
    )
    assert cli_wins.stdout == default.stdout


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (BASE["replay"], {"WIRESTREAM_MAX_FLOWS": "-1"}, "environment WIRESTREAM_MAX_FLOWS"),
        (BASE["enrich"], {"WIRESTREAM_TIMEOUT": "soon"}, "environment WIRESTREAM_TIMEOUT"),
        (["probe", "x.pcap"], {}, "--bootstrap-servers is required"),
        (BASE["probe"], {"WIRESTREAM_PARTITIONS": "0"}, "WIRESTREAM_PARTITIONS"),
    ],
)
def test_bad_settings_exit_2_naming_their_source(
    argv: list[str], env: dict[str, str], says: str
) -> None:
    done = _cli(*argv, env=env)
    assert done.returncode == ExitCode.USAGE == 2, done.stderr[-500:]
    err = done.stderr.decode()
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f"wirestream {argv[0]}: error: ")


def test_debug_log_says_where_settings_came_from() -> None:
    done = _cli(
        "replay", GOOD, "--no-progress", "--log-level", "debug", "--log-format", "json",
        env={"WIRESTREAM_MAX_FLOWS": "500"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-500:]
    (event,) = [
        json.loads(line) for line in done.stderr.decode().splitlines() if '"settings"' in line
    ]
    assert event["command"] == "replay"
    assert event["sources"] == {
        "max_flows": "environment",
        "log_level": "command line",
        "log_format": "command line",
        "no_progress": "command line",
    }


def test_bad_config_file_value_names_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[replay]\noverlap_policy = "freebsd"\n')
    done = _cli(*BASE["replay"], "--config", config, env={})
    assert done.returncode == 2
    assert f"config file {config}: overlap_policy: invalid choice" in done.stderr.decode()


# --------------------------------------------------------------------- exit codes


def test_exit_codes_are_one_enum_with_the_documented_numbers() -> None:
    assert [int(ExitCode.OK), ExitCode.INPUT_ERROR, ExitCode.USAGE, ExitCode.BROKER] == [0, 1, 2, 3]
    assert ExitCode.ERROR is ExitCode.INPUT_ERROR
    literal = re.compile(r"^\s*EXIT_\w+(\s*,\s*EXIT_\w+)*\s*=\s*[-\d(]", re.MULTILINE)
    redefined = [str(p.relative_to(ROOT)) for p in _sources() if literal.search(p.read_text())]
    assert redefined == []
    docs = (ROOT / "docs" / "kafka-mode.md").read_text()
    assert "3 broker unreachable or lost for too long" in docs
    assert "2 usage" in docs and "1 unexpected" in docs
