"""wirestream command line: `replay` captures embedded (no broker), `probe` and `run` for
the Kafka mode. `python runner.py --help` or `wirestream --help`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wirestream.streams.commands import Commands, Invocation
from wirestream.streams.exitcodes import ExitCode, UsageError
from wirestream.streams.logs import LogSettings
from wirestream.streams.replay_settings import ReplaySettings
from wirestream.streams.runtime_settings import RuntimeSettings


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wirestream")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_commands() -> Commands:
    """Every command with the settings classes its options are generated from."""
    parser = argparse.ArgumentParser(
        prog="wirestream",
        description="TCP reassembly and protocol decoding, embedded (replay) or as a Kafka "
        "consumer group. Every option can also be set as WIRESTREAM_<OPTION> in the "
        "environment or in a TOML file (--config); the command line wins.",
    )
    parser.add_argument("--version", action="version", version=f"wirestream {_version()}")
    commands = Commands(parser)
    commands.add(
        "replay",
        (ReplaySettings, RuntimeSettings, LogSettings),
        cmd_replay,
        positionals=lambda p: p.add_argument(
            "pcaps", nargs="+", metavar="PCAP", help="capture files (pcap or pcapng); '-' = stdin"
        ),
        help="replay captures in this process (no broker) and print decoded records",
        description="Replay pcap/pcapng captures through reassembly and the decoders; print "
        "one JSON record per line (http, flow, anomaly, ...). A summary goes to stderr.",
    )
    try:
        from wirestream.streams import kafka_cli
    except ImportError:
        kafka_cli = None  # type: ignore[assignment]
    if kafka_cli is not None:
        kafka_cli.add_commands(commands)
    try:
        from wirestream.enrich import cli as enrich_cli
    except ImportError:
        enrich_cli = None  # type: ignore[assignment]
    if enrich_cli is not None:
        enrich_cli.add_commands(commands)
    return commands


def build_parser() -> argparse.ArgumentParser:
    return build_commands().parser


def cmd_replay(inv: Invocation) -> int:
    import structlog

    from wirestream.state.store import StoreError
    from wirestream.streams.replay import Replay

    log = structlog.get_logger("wirestream")
    args = inv.get(ReplaySettings)
    pcaps = inv.args.pcaps
    _check_replay_args(args, pcaps)
    config = inv.get(RuntimeSettings).to_config(partitions=args.partitions)
    config.commit_every_packets = args.commit_every
    if args.extract_files is not None:
        config.extract_dir = args.extract_files
        config.extract_max_bytes = args.extract_max_bytes
        config.extract_max_files = args.extract_max_files
        # The HTTP decoder stops buffering a body past the bound (unless -O says otherwise).
        http = config.decoder_options.setdefault("http", {})
        http.setdefault("extract_max_bytes", args.extract_max_bytes)
    zeek = None
    if args.format != "json":
        from wirestream.streams.zeekwriter import ZeekLogWriter

        if args.output == "-":
            log.error("zeek_format_needs_a_directory", hint="-o DIR")
            return ExitCode.USAGE
        try:
            zeek = ZeekLogWriter(args.output, use_json=args.format == "zeek-json")
        except OSError as exc:
            log.error("cannot_open_output", path=args.output, error=exc.strerror)
            return ExitCode.USAGE
        out = zeek
        close = False
    elif args.output == "-":
        out = sys.stdout.buffer
        close = False
    else:
        try:
            out = open(args.output, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            log.error("cannot_open_output", path=args.output, error=exc.strerror)
            return ExitCode.USAGE
        close = True
    try:
        replay = Replay(
            config,
            out.write,
            state_dir=args.state_dir,
            progress=not args.no_progress and sys.stderr.isatty(),
            workers=args.workers,
        )
        summary = replay.run(pcaps)
    except StoreError as exc:
        log.error("state_store_error", error=str(exc))
        return ExitCode.USAGE
    except BrokenPipeError:
        return ExitCode.OK
    finally:
        if zeek is not None:
            zeek.close()
        elif close:
            out.close()
        else:
            try:
                out.flush()
            except BrokenPipeError:
                pass
    log.info("replay_finished", **summary.as_log())
    return ExitCode.INPUT_ERROR if summary.errors else ExitCode.OK


def _check_replay_args(args: ReplaySettings, pcaps: list[str]) -> None:
    """Refuse what would do nothing or destroy an input, before anything is opened."""
    if args.workers > args.partitions:
        raise UsageError(
            f"--workers {args.workers} needs --partitions >= {args.workers} (each worker "
            f"owns whole partitions; --partitions {args.partitions} would leave "
            f"{args.workers - args.partitions} workers idle)"
        )
    stdin = pcaps.count("-")
    if stdin > 1:
        raise UsageError("'-' (stdin) can be read only once")
    if stdin and args.workers > 1:
        raise UsageError("'-' (stdin) cannot be read by several --workers; use a file")
    if args.output != "-":
        for pcap in pcaps:
            if pcap != "-" and _same_file(pcap, args.output):
                raise UsageError(f"-o {args.output} is an input capture; refusing to overwrite it")


def _same_file(a: str, b: str) -> bool:
    import os

    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare the names
        return os.path.realpath(a) == os.path.realpath(b)


def _log_sources(inv: Invocation) -> None:
    """At debug level, which settings did not come from their defaults, and from where:
    the answer to "why does it use that value" with three sources in play."""
    import structlog

    chosen = {name: src for name, src in inv.sources.items() if src != "default"}
    structlog.get_logger("wirestream").debug("settings", command=inv.command, sources=chosen)


def main(argv: Sequence[str] | None = None) -> int:
    from wirestream.decoders.registry import UnknownDecoderError
    from wirestream.streams.logs import configure_logging

    commands = build_commands()
    args = commands.parser.parse_args(argv)
    try:
        inv = commands.layer(args)
        logs = inv.get(LogSettings)
        configure_logging(logs.log_format, logs.log_level)
        _log_sources(inv)
        return int(commands.run(inv))
    except (UnknownDecoderError, UsageError) as exc:
        # one line naming what is valid (for settings: where the value came from); the
        # usage would bury it
        print(f"wirestream {args.command}: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
